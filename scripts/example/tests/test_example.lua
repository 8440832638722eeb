-- The example app's own tests, through apptest (no socket):
--   luahost test --app scripts/example scripts/example/tests
local lu = require "luaunit"
local apptest = require "apptest"

local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local function add_note(text)
  local status, headers, body = apptest.request {
    method = "POST", path = "/notes", headers = FORM, body = "text=" .. text }
  lu.assertEquals(status, 201, body)
  return headers.location, body
end

TestGreeting = {}

function TestGreeting:test_hello_with_name()
  local status, _, body = apptest.request { path = "/?name=ada" }
  lu.assertEquals(status, 200)
  lu.assertStrContains(body, "hello, ada\n")
end

function TestGreeting:test_only_the_root()
  lu.assertEquals((apptest.request { path = "/nowhere" }), 404)
end

TestNotes = {}   -- routes with methods and captures, a form

function TestNotes:test_create_then_read_by_capture()
  local location, body = add_note("buy+milk%21")
  lu.assertStrMatches(location, "/notes/%d+")
  lu.assertStrContains(body, "created note ")
  local status, _, text = apptest.request { path = location }
  lu.assertEquals(status, 200)
  lu.assertEquals(text, "buy milk!\n")
  local _, _, all = apptest.request { path = "/notes" }
  lu.assertStrContains(all, location:match("%d+$") .. ": buy milk!\n")
end

function TestNotes:test_delete_is_204_without_body_or_type()
  local location = add_note("temporary")
  local status, headers, body = apptest.request { method = "DELETE", path = location }
  lu.assertEquals(status, 204)
  lu.assertEquals(body, "")
  lu.assertNil(headers["content-type"])
  lu.assertEquals((apptest.request { path = location }), 404)
end

function TestNotes:test_other_methods_get_405_with_allow()
  local status, headers = apptest.request { method = "PUT", path = "/notes/1" }
  lu.assertEquals(status, 405)
  lu.assertEquals(headers.allow, "GET, HEAD, DELETE")
  status, headers = apptest.request { method = "DELETE", path = "/notes" }
  lu.assertEquals(status, 405)
  lu.assertEquals(headers.allow, "GET, HEAD, POST")
end

function TestNotes:test_multipart_form_works_too()
  local body = "--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nfrom a multipart form" ..
               "\r\n--XyZ--\r\n"
  local status, headers = apptest.request {
    method = "POST", path = "/notes", body = body,
    headers = { ["Content-Type"] = "multipart/form-data; boundary=XyZ" } }
  lu.assertEquals(status, 201)
  lu.assertEquals(select(3, apptest.request { path = headers.location }), "from a multipart form\n")
end

function TestNotes:test_missing_field_and_malformed_body()
  lu.assertEquals((apptest.request { method = "POST", path = "/notes", headers = FORM,
                                     body = "other=1" }), 400)
  local status, _, body = apptest.request {
    method = "POST", path = "/notes", body = "--XyZ\r\nContent-Disposition: form-data; name=text",
    headers = { ["Content-Type"] = "multipart/form-data; boundary=XyZ" } }
  lu.assertEquals(status, 400)
  lu.assertStrContains(body, "multipart")
end

function TestNotes:test_form_page()
  local status, headers, body = apptest.request { path = "/form" }
  lu.assertEquals(status, 200)
  lu.assertEquals(headers["content-type"], "text/html; charset=utf-8")
  lu.assertStrContains(body, 'enctype="multipart/form-data"')
end

TestUpload = {}

function TestUpload:test_files_and_fields()
  local body = table.concat {
    "--b\r\n", 'Content-Disposition: form-data; name="comment"\r\n\r\n', "two files\r\n",
    "--b\r\n", 'Content-Disposition: form-data; name="files"; filename="a.txt"\r\n',
    "Content-Type: text/plain\r\n\r\n", "hello world\r\n",
    "--b\r\n", 'Content-Disposition: form-data; name="files"; filename="b.bin"\r\n',
    "Content-Type: application/octet-stream\r\n\r\n", "\0\1\2\r\n",
    "--b--\r\n" }
  local status, _, out = apptest.request {
    method = "POST", path = "/upload", body = body,
    headers = { ["Content-Type"] = "multipart/form-data; boundary=b" } }
  lu.assertEquals(status, 200)
  lu.assertEquals(out, "files: a.txt, text/plain, 11 bytes\n" ..
                       "files: b.bin, application/octet-stream, 3 bytes\n" ..
                       "comment = two files\n")
end

function TestUpload:test_no_file_is_400()
  lu.assertEquals((apptest.request { method = "POST", path = "/upload", headers = FORM,
                                     body = "a=1" }), 400)
end

TestPrefs = {}   -- cookies

function TestPrefs:test_post_sets_two_cookies()
  local status, headers = apptest.request { method = "POST", path = "/prefs", headers = FORM,
                                            body = "theme=dark" }
  lu.assertEquals(status, 303)
  lu.assertEquals(headers.location, "/prefs")
  lu.assertEquals(headers["set-cookie"], { "theme=dark; Path=/; SameSite=Lax",
                                           "seen=1; Path=/; Max-Age=86400" })
end

function TestPrefs:test_get_reads_the_cookie()
  lu.assertEquals(select(3, apptest.request { path = "/prefs" }), "theme: light\n")
  lu.assertEquals(select(3, apptest.request { path = "/prefs",
                                              headers = { Cookie = "seen=1; theme=dark" } }),
                  "theme: dark\n")
end

function TestPrefs:test_bad_theme()
  lu.assertEquals((apptest.request { method = "POST", path = "/prefs", headers = FORM,
                                     body = "theme=neon" }), 400)
end
