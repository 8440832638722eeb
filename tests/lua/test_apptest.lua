-- apptest: the app's handlers without a socket (luahost test --app tests/lua/app).
local lu = require "luaunit"
local apptest = require "apptest"
local runtime = require "runtime"

TestAppTest = {}

function TestAppTest:test_request_fields_reach_the_handler()
  local status, headers, body = apptest.request {
    method = "POST", path = "/echo?a=1&a=2&b=x%20y", headers = { ["X-Test"] = "v" }, body = "data",
  }
  lu.assertEquals(status, 200)
  lu.assertEquals(headers["content-type"], "text/plain; charset=utf-8")
  lu.assertEquals(body, "POST /echo q=a=1&a=2&b=x%20y a=2 h=v body=data rid=true")
end

function TestAppTest:test_routing_does_not_use_the_global_string_find()
  local find = string.find
  string.find = function() return nil end   -- app code may do anything to it
  local ok, status, _, body = pcall(apptest.request, { path = "/users/42" })
  string.find = find
  lu.assertTrue(ok, status)
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "user 42")
end

function TestAppTest:test_sixteen_response_headers_and_the_default_type()
  local status, headers, body = apptest.request { path = "/16headers" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "many")
  for i = 1, 16 do lu.assertEquals(headers["x-h" .. i], tostring(i)) end
  lu.assertEquals(headers["content-type"], "text/plain; charset=utf-8")
end

function TestAppTest:test_many_headers_lower_cased()
  local headers = { ["X-Test"] = "last" }
  for i = 1, 300 do headers["X-Extra-" .. i] = tostring(i) end
  local status, _, body = apptest.request { path = "/echo", headers = headers }
  lu.assertEquals(status, 200)
  lu.assertStrContains(body, "h=last")
end

function TestAppTest:test_first_matching_route_wins()
  -- "/users/42" matches both "^/users/(%d+)$" and the later "^/": the
  -- first one listed answers; a path only "^/" matches goes on to main
  local status, _, body = apptest.request { path = "/users/42" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "user 42")
  status, _, body = apptest.request { path = "/users/x42" }
  lu.assertEquals(status, 200)
  lu.assertStrContains(body, "GET /users/x42 q=")
end

function TestAppTest:test_status_headers_body_form()
  local status, headers, body = apptest.request { path = "/headers" }
  lu.assertEquals(status, 201)
  lu.assertEquals(headers["x-custom"], "yes")
  lu.assertEquals(headers["content-type"], "application/json")
  lu.assertEquals(body, "{}")
end

function TestAppTest:test_handler_error_is_500_with_request_id()
  local status, _, body = apptest.request { path = "/fail" }
  lu.assertEquals(status, 500)
  lu.assertStrContains(body, "request id: ")
end

-- SPEC §2: apptest applies serve's limits and headers (max_body = 64k
-- in tests/lua/app; a header block over 64 KiB)
function TestAppTest:test_limits_and_host_headers_as_serve()
  local status, headers, body = apptest.request { method = "POST", path = "/echo", body = ("x"):rep(65 * 1024) }
  lu.assertEquals({ status, body }, { 413, "request body too large\n" })
  lu.assertEquals(headers["content-type"], "text/plain; charset=utf-8")
  lu.assertNotNil(headers["x-request-id"])
  status, _, body = apptest.request { path = "/echo", headers = { ["x-big"] = ("h"):rep(65 * 1024) } }
  lu.assertEquals({ status, body }, { 431, "request header block too large\n" })
  status = apptest.request { method = "POST", path = "/echo", body = ("x"):rep(64 * 1024) }
  lu.assertEquals(status, 200)
  -- what serve's parser refuses is 400 here too
  for _, bad in ipairs({ { method = "get" }, { method = "G ET" }, { method = "FOO" },
                         { path = "/echo\r\nX: y" }, { path = "/e cho" },
                         { headers = { ["x-a"] = "a\r\nb" } }, { headers = { ["bad name"] = "v" } } }) do
    bad.path = bad.path or "/echo"
    status, _, body = apptest.request(bad)
    lu.assertEquals({ status, body }, { 400, "malformed request\n" }, bad.method or bad.path)
  end
  -- every answer names its request, as serve's x-request-id does
  local ids = {}
  for _ = 1, 2 do
    status, headers, body = apptest.request { path = "/fail" }
    lu.assertEquals(status, 500)
    lu.assertStrContains(body, headers["x-request-id"])
    lu.assertEquals(headers["content-length"], tostring(#body))
    ids[#ids + 1] = headers["x-request-id"]
  end
  lu.assertNotEquals(ids[1], ids[2])
end

function TestAppTest:test_invalid_status_is_500()
  local status = apptest.request { path = "/bad-status" }
  lu.assertEquals(status, 500)
end

function TestAppTest:test_sleep_inside_a_request()
  local status, _, body = apptest.request { path = "/sleep" }
  lu.assertEquals(status, 200)
  lu.assertEquals(body, "slept true")
end

-- Which error each 500 was is read from the log by the end-to-end test
-- test_cli.AppTestLimits; here: the answer, its timing and what remains.
function TestAppTest:test_deadline_answers_500_and_app_keeps_working()
  local t0 = runtime.monotonic()
  local status = apptest.request { path = "/spin" }
  local took = runtime.monotonic() - t0
  lu.assertEquals(status, 500)
  -- /spin can only end at the 1 s request_deadline of tests/lua/app
  lu.assertTrue(took >= 0.9, "answered after " .. took .. " s, before the deadline")
  lu.assertEquals((apptest.request { path = "/users/1" }), 200)
  -- a handler that catches the deadline's error and returns still answers
  -- 500 (SPEC §6): it passed its deadline
  local st, _, body = apptest.request { path = "/catch-deadline" }
  lu.assertEquals(status, 500)
  lu.assertEquals(st, 500, body)
  lu.assertNotStrContains(body, "caught")
end

function TestAppTest:test_memory_limit_answers_500_and_app_keeps_working()
  local before = runtime.memory_usage().lua
  lu.assertEquals((apptest.request { path = "/hog" }), 500)
  collectgarbage()
  -- the failed request's garbage is gone (the limit is 8m)
  lu.assertTrue(runtime.memory_usage().lua < before + 2 * 1024 * 1024)
  lu.assertEquals((apptest.request { path = "/users/2" }), 200)
end

function TestAppTest:test_os_exit_does_not_end_the_run()
  -- luaunit wraps os.exit while it runs; the host's own os.exit is the
  -- one a handler meets under serve
  local wrapped = os.exit
  os.exit = lu.oldOsExit
  local ok, status = pcall(apptest.request, { path = "/exit" })
  os.exit = wrapped
  lu.assertTrue(ok, status)
  lu.assertEquals(status, 500)
end

function TestAppTest:test_reserved_paths()
  lu.assertEquals((apptest.request { path = "/_ah/health" }), 200)
  lu.assertEquals((apptest.request { path = "/_ah/start" }), 403)
  lu.assertEquals((apptest.request { path = "/_ah/stop" }), 403)
  lu.assertEquals((apptest.request { path = "/_ah/warmup" }), 403)
end

function TestAppTest:test_static_dir()
  local status, headers, body = apptest.request { path = "/static/hello.txt" }
  lu.assertEquals(status, 200)
  lu.assertEquals(headers["content-type"], "text/plain; charset=utf-8")
  lu.assertEquals(body, "static file\n")
  lu.assertEquals((apptest.request { path = "/static/../app.lua" }), 404)
  lu.assertEquals((apptest.request { path = "/static/%2e%2e/app.lua" }), 404)
  lu.assertEquals((apptest.request { path = "/static/missing.txt" }), 404)
  -- a static route takes GET and HEAD only: a POST goes on to the later
  -- catch-all route "^/", as the first route that takes it wins
  status, _, body = apptest.request { method = "POST", path = "/static/hello.txt", body = "b" }
  lu.assertEquals(status, 200)
  lu.assertStrContains(body, "POST /static/hello.txt")
end

function TestAppTest:test_bad_arguments()
  lu.assertErrorMsgContains("path must start with '/'", apptest.request, { path = "x" })
  lu.assertErrorMsgContains("must be a string", apptest.request, { method = 5 })
end
