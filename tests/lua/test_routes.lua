-- Writing apps (SPEC §12) through apptest: methods and 405, captures,
-- forms, uploads, cookies, repeated headers, 204/304/HEAD.
-- luahost test --app tests/lua/routes_app tests/lua/test_routes.lua
local lu = require "luaunit"
local apptest = require "apptest"
local runtime = require "runtime"

local function multipart(boundary, parts)
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. boundary .. "\r\n"
    local disp = 'Content-Disposition: form-data; name="' .. p.name .. '"'
    if p.filename then disp = disp .. '; filename="' .. p.filename .. '"' end
    out[#out + 1] = disp .. "\r\n"
    if p.type then out[#out + 1] = "Content-Type: " .. p.type .. "\r\n" end
    out[#out + 1] = "\r\n" .. p.body .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out)
end

local function post(path, ctype, body)
  return apptest.request { method = "POST", path = path, headers = { ["Content-Type"] = ctype },
                           body = body }
end

TestMethods = {}

function TestMethods:test_listed_method_reaches_the_handler()
  local status, _, body = apptest.request { method = "DELETE", path = "/items/7" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "DELETE item 7 (1 capture)")
end

function TestMethods:test_other_method_is_405_with_allow()
  local status, headers, body = apptest.request { method = "POST", path = "/items/7" }
  lu.assertEquals(status, 405)
  lu.assertEquals(headers.allow, "GET, HEAD, PUT, DELETE")
  lu.assertEquals(body, "method not allowed\n")
end

function TestMethods:test_methods_are_upper_cased_from_app_lua()
  -- the route lists "get": GET and HEAD reach it; a request whose method
  -- is lower-case "get" is malformed (methods are case-sensitive), as serve says
  lu.assertEquals((apptest.request { method = "GET", path = "/items" }), 200)
  lu.assertEquals((apptest.request { method = "HEAD", path = "/items" }), 200)
  local status, headers = apptest.request { method = "PATCH", path = "/items" }
  lu.assertEquals(status, 405)
  lu.assertEquals(headers.allow, "GET, HEAD, POST")
  lu.assertEquals((apptest.request { method = "get", path = "/items" }), 400)
end

function TestMethods:test_head_where_get_is_listed()
  local status, headers, body = apptest.request { method = "HEAD", path = "/items/3" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "")
  lu.assertEquals(headers["content-type"], "text/plain; charset=utf-8")
end

function TestMethods:test_allow_lists_every_route_that_matched_the_path()
  local status, headers = apptest.request { method = "DELETE", path = "/both" }
  lu.assertEquals(status, 405)
  lu.assertEquals(headers.allow, "PUT, PATCH, GET, HEAD")
end

function TestMethods:test_first_route_taking_the_method_wins()
  lu.assertEquals(select(3, apptest.request { method = "PUT", path = "/both" }),
                  "PUT item nil (0 captures)")
  lu.assertEquals(select(3, apptest.request { method = "PATCH", path = "/both" }), "PATCH []")
end

function TestMethods:test_unmatched_path_is_still_404()
  lu.assertEquals((apptest.request { method = "POST", path = "/nowhere" }), 404)
end

function TestMethods:test_static_route_with_methods()
  lu.assertEquals(select(3, apptest.request { path = "/static/hello.txt" }), "static file\n")
  local status, headers = apptest.request { method = "POST", path = "/static/hello.txt" }
  lu.assertEquals(status, 405)
  lu.assertEquals(headers.allow, "GET, HEAD")
end

TestCaptures = {}

function TestCaptures:test_string_captures_in_order()
  lu.assertEquals(select(3, apptest.request { path = "/files/a.b.txt" }),
                  "GET [string:a.b,string:txt]")
end

function TestCaptures:test_position_captures_are_integers()
  lu.assertEquals(select(3, apptest.request { path = "/pos/x" }), "GET [integer:6,integer:7]")
end

function TestCaptures:test_no_captures_is_an_empty_table()
  lu.assertEquals(select(3, apptest.request { path = "/plain" }), "GET []")
  lu.assertEquals(select(3, apptest.request { path = "/literal/x/y" }), "GET []")
end

TestForms = {}

function TestForms:test_urlencoded_fields_decoded_last_wins()
  local status, _, body = post("/form", "application/x-www-form-urlencoded",
                               "title=hello+world&tag=a%26b&tag=last&empty=&flag")
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "empty=\nflag=\ntag=last\ntitle=hello world\nfiles=0")
end

function TestForms:test_content_type_with_charset()
  local _, _, body = post("/form", "application/x-www-form-urlencoded; charset=UTF-8", "a=1")
  lu.assertEquals(body, "a=1\nfiles=0")
end

function TestForms:test_other_body_gives_empty_form()
  local _, _, body = post("/form", "application/json", '{"a":1}')
  lu.assertEquals(body, "files=0")
  lu.assertEquals(select(3, apptest.request { path = "/form" }), "files=0")
end

function TestForms:test_multipart_fields_and_files()
  local body = multipart("----WebKitFormBoundary7MA4YWxkTrZu0gW", {
    { name = "title", body = "hello" },
    { name = "doc", filename = "notes.txt", type = "text/plain", body = "line 1\r\nline 2\r\n" },
    { name = "bin", filename = "x.bin", type = "application/octet-stream", body = "\0\1\2\255" },
    { name = "raw", filename = "untyped", body = "r" },
  })
  local status, headers, out = post("/upload",
    "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", body)
  lu.assertEquals(status, 201)
  lu.assertEquals(headers["content-type"], "text/plain")
  lu.assertEquals(out, "doc|notes.txt|text/plain|16|line 1\r\nline 2\r\n\n" ..
                       "bin|x.bin|application/octet-stream|4|\0\1\2\255\n" ..
                       "raw|untyped|text/plain|1|r\n" ..
                       "field title=hello")
end

function TestForms:test_multipart_fields_in_req_form()
  local body = multipart("b", { { name = "a", body = "1" }, { name = "a", body = "2" },
                                { name = "f", filename = "f.txt", body = "x" } })
  lu.assertEquals(select(3, post("/form", 'multipart/form-data; boundary="b"', body)),
                  "a=2\nfiles=1")
end

function TestForms:test_unclosed_boundary_is_400()
  local status, _, body = post("/upload", "multipart/form-data; boundary=b",
                               '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nforever')
  lu.assertEquals(status, 400)
  lu.assertStrContains(body, "multipart boundary never closed")
  lu.assertNotStrContains(body, "traceback")
end

function TestForms:test_part_without_headers_is_400()
  local status, _, body = post("/upload", "multipart/form-data; boundary=b",
                               "--b\r\n\r\nbody\r\n--b--\r\n")
  lu.assertEquals(status, 400)
  lu.assertStrContains(body, "multipart part without headers")
end

function TestForms:test_missing_boundary_is_400()
  local status, _, body = post("/upload", "multipart/form-data", "--b--")
  lu.assertEquals(status, 400)
  lu.assertStrContains(body, "boundary")
end

function TestForms:test_too_many_parts_is_413()
  local parts = {}
  for i = 1, 1001 do parts[i] = { name = "p" .. i, body = tostring(i) } end
  local status, _, body = post("/upload", "multipart/form-data; boundary=b", multipart("b", parts))
  lu.assertEquals(status, 413)
  lu.assertStrContains(body, "too many multipart parts")
  parts[1001] = nil
  lu.assertEquals((post("/form", "multipart/form-data; boundary=b", multipart("b", parts))), 200)
end

function TestForms:test_part_header_block_over_64k_is_400()
  local body = '--b\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ' ..
               string.rep("x", 70000) .. "\r\n\r\nv\r\n--b--"
  local status, _, out = post("/upload", "multipart/form-data; boundary=b", body)
  lu.assertEquals(status, 400)
  lu.assertStrContains(out, "64 KiB")
end

function TestForms:test_handler_can_catch_the_error()
  local status, _, body = post("/catch", "multipart/form-data; boundary=b", "--b\r\n\r\nx\r\n--b--")
  lu.assertEquals(status, 422)
  lu.assertEquals(body, "caught true 400 runtime.FormError: multipart part without headers")
end

function TestForms:test_later_requests_still_served()
  for _ = 1, 3 do post("/upload", "multipart/form-data; boundary=b", "--b\r\n") end
  lu.assertEquals(select(3, post("/form", "application/x-www-form-urlencoded", "ok=1")),
                  "ok=1\nfiles=0")
end

function TestForms:test_form_error_class_is_exposed()
  lu.assertEquals(tostring(runtime.FormError("m")), "runtime.FormError: m")
end

TestCookies = {}

function TestCookies:test_cookie_header_parsed_last_wins()
  local _, _, body = apptest.request {
    path = "/cookies", headers = { Cookie = ' sid=abc; theme="dark"; flag; =x; sid=last; e=' } }
  lu.assertEquals(body, "e=;sid=last;theme=dark;")
end

function TestCookies:test_no_cookie_header()
  lu.assertEquals(select(3, apptest.request { path = "/cookies" }), "")
end

TestHeaders = {}

function TestHeaders:test_array_values_are_repeated_headers()
  local status, headers, body = apptest.request { path = "/multi" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "multi")
  lu.assertEquals(headers["set-cookie"], { "a=1; Path=/", "b=2" })
  lu.assertEquals(headers["x-list"], { "one", "3" })   -- the CR/LF item was dropped
  lu.assertEquals(headers["x-single"], "only")
  lu.assertNil(headers["x-empty"])
end

function TestHeaders:test_set_cookie_per_name()
  local _, headers = apptest.request { path = "/cookies?set=a,b,c" }
  lu.assertEquals(headers["set-cookie"], { "a=1; Path=/", "b=1; Path=/", "c=1; Path=/" })
end

TestCopy = {}

function TestCopy:test_req_crosses_a_queue_as_a_plain_table()
  local status, _, body = apptest.request {
    method = "POST", path = "/copy/abc", headers = { Cookie = "k=v",
    ["Content-Type"] = "application/x-www-form-urlencoded" }, body = "a=1" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "nil /copy/abc abc v nil 1")
end

TestFraming = {}

function TestFraming:test_204_and_304_have_no_body_or_type()
  for _, code in ipairs { 204, 304 } do
    for _, q in ipairs { "", "?type=1" } do
      local status, headers, body = apptest.request { path = "/status/" .. code .. q }
      lu.assertEquals(status, code)
      lu.assertEquals(body, "")
      lu.assertNil(headers["content-type"])
      lu.assertEquals(headers["x-status"], tostring(code))
    end
  end
end

function TestFraming:test_200_keeps_its_type()
  local _, headers, body = apptest.request { path = "/status/200?type=1" }
  lu.assertEquals(headers["content-type"], "application/json")
  lu.assertEquals(body, "a body that must not be sent")
end

function TestFraming:test_head_has_no_body()
  local status, headers, body = apptest.request { method = "HEAD", path = "/status/200" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "")
  lu.assertEquals(headers["x-status"], "200")
end
