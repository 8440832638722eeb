-- urlfetch (SPEC §10) against real upstreams this file starts on loopback
-- (tests/c/fetch_upstream.py, plain and TLS).  Run with
-- --app tests/lua/urlfetch_app --role backend.
local lu = require "luaunit"
local urlfetch = require "urlfetch"
local apptest = require "apptest"
local bt = require "background_thread"
local runtime = require "runtime"

local here = debug.getinfo(1, "S").source:sub(2):match("(.*)/") or "."
local script = here .. "/../c/fetch_upstream.py"

-- Starts the upstream; returns its port.  It is killed when this state
-- closes (the sentinel's __gc).
local pids = {}
local function upstream(...)
  local args = table.concat({ ... }, " ")
  local f = assert(io.popen("exec sh -c 'echo $$; exec python3 " .. script .. " " .. args .. "'"))
  local pid = f:read("l")
  local line = f:read("l")
  pids[#pids + 1] = pid
  local port = assert(line and line:match("PORT (%d+)"), "upstream did not start: " .. tostring(line))
  return port, f
end
local PORT, pipe1 = upstream()
local TLS_PORT, pipe2 = upstream("--tls")
local sentinel = setmetatable({}, { __gc = function()
  for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
end })
KEEP_UPSTREAMS = { sentinel, pipe1, pipe2 }

local function url(path) return "http://127.0.0.1:" .. PORT .. path end

TestFetch = {}

function TestFetch:test_get_gives_status_headers_body()
  local res, err = urlfetch.fetch(url("/plain"))
  lu.assertNil(err)
  lu.assertEquals(res.status, 200)
  lu.assertEquals(res.body, "hello")
  lu.assertEquals(res.headers["content-type"], "text/plain")
  lu.assertEquals(res.headers["x-multi"], "a, b")
  lu.assertEquals(res.headers["set-cookie"], { "c1=1", "c2=2" })
  lu.assertEquals(res.final_url, url("/plain"))
  lu.assertFalse(res.truncated)
end

function TestFetch:test_any_status_is_a_result()
  for _, code in ipairs({ 404, 500, 503 }) do
    local res, err = urlfetch.fetch(url("/status/" .. code))
    lu.assertNil(err)
    lu.assertEquals(res.status, code)
  end
end

function TestFetch:test_post_sends_method_headers_and_body()
  local res = assert(urlfetch.fetch(url("/echo"), {
    method = "POST", headers = { ["x-one"] = "1", ["content-type"] = "application/json" },
    body = '{"a":1}' }))
  lu.assertStrContains(res.body, "METHOD POST")
  lu.assertStrContains(res.body, "H x-one: 1")
  lu.assertStrContains(res.body, 'BODY 7\n{"a":1}')
end

function TestFetch:test_chunked_body()
  lu.assertEquals(assert(urlfetch.fetch(url("/chunked"))).body, "one-two-three")
end

function TestFetch:test_redirects_followed_up_to_five()
  local res = assert(urlfetch.fetch(url("/redirect/5")))
  lu.assertEquals(res.status, 200)
  lu.assertEquals(res.final_url, url("/redirect/0"))
  local res6, err = urlfetch.fetch(url("/redirect/6"))
  lu.assertNil(res6)
  lu.assertTrue(urlfetch.DownloadError:is_instance(err), tostring(err))
  local res0 = assert(urlfetch.fetch(url("/redirect/1"), { follow_redirects = false }))
  lu.assertEquals(res0.status, 302)
end

function TestFetch:test_redirect_to_file_is_refused()
  local res, err = urlfetch.fetch(url("/redirect-file"))
  lu.assertNil(res)
  lu.assertTrue(urlfetch.DownloadError:is_instance(err), tostring(err))
end

function TestFetch:test_misuse_raises()
  for _, u in ipairs({ "file:///etc/passwd", "gopher://x/", "not a url", "ftp://h/" }) do
    local ok, err = pcall(urlfetch.fetch, u)
    lu.assertFalse(ok, u)
    lu.assertTrue(urlfetch.InvalidURLError:is_instance(err), u .. ": " .. tostring(err))
    lu.assertTrue(urlfetch.Error:is_instance(err))
  end
  for _, h in ipairs({ { ["x"] = "a\r\nb" }, { ["x"] = "a\nb" }, { ["bad name"] = "v" } }) do
    local ok, err = pcall(urlfetch.fetch, url("/plain"), { headers = h })
    lu.assertFalse(ok)
    lu.assertTrue(urlfetch.Error:is_instance(err), tostring(err))
  end
  lu.assertErrorMsgContains("max_response_size", urlfetch.fetch, url("/plain"),
                            { max_response_size = "lots" })
  -- a bad option names itself; an unknown one (a typo) is not ignored
  lu.assertErrorMsgContains("option 'deadline' must be a number of seconds, got string",
                            urlfetch.fetch, url("/plain"), { deadline = "x" })
  lu.assertErrorMsgContains("option 'method' must be a string", urlfetch.fetch, url("/plain"),
                            { method = 1 })
  lu.assertErrorMsgContains("option 'max_response_size' must be a whole number",
                            urlfetch.fetch, url("/plain"), { max_response_size = 1.5 })
  lu.assertErrorMsgContains("unknown option 'timeout'", urlfetch.start, url("/plain"),
                            { timeout = 5 })
end

function TestFetch:test_too_large_is_refused_or_truncated()
  local res, err = urlfetch.fetch(url("/huge?size=3000000&cl=0"), { max_response_size = "1m" })
  lu.assertNil(res)
  lu.assertTrue(urlfetch.ResponseTooLargeError:is_instance(err), tostring(err))
  local res2 = assert(urlfetch.fetch(url("/huge?size=3000000&cl=1"),
                                     { max_response_size = 1000, allow_truncated = true }))
  lu.assertEquals(#res2.body, 1000)
  lu.assertTrue(res2.truncated)
end

function TestFetch:test_reset_stall_and_dns_failure()
  local _, err = urlfetch.fetch(url("/reset"))
  lu.assertTrue(urlfetch.DownloadError:is_instance(err), tostring(err))
  local t0 = runtime.monotonic()
  local _, err2 = urlfetch.fetch(url("/slow?ms=5000"), { deadline = 0.3 })
  local took = runtime.monotonic() - t0
  lu.assertTrue(urlfetch.DeadlineExceededError:is_instance(err2), tostring(err2))
  lu.assertTrue(took >= 0.29 and took < 2, "stall took " .. took)
  local _, err3 = urlfetch.fetch(url("/trickle?n=100"), { deadline = 0.3 })
  lu.assertTrue(urlfetch.DeadlineExceededError:is_instance(err3), tostring(err3))
  local _, err4 = urlfetch.fetch("http://nonexistent.invalid/")
  lu.assertTrue(urlfetch.DownloadError:is_instance(err4), tostring(err4))
  lu.assertStrContains(tostring(err4), "urlfetch.DownloadError: ")
end

function TestFetch:test_tls_certificate_is_validated()
  local tls = "https://127.0.0.1:" .. TLS_PORT .. "/plain"
  local res, err = urlfetch.fetch(tls)
  lu.assertNil(res)
  lu.assertTrue(urlfetch.SSLCertificateError:is_instance(err), tostring(err))
  local ok = assert(urlfetch.fetch(tls, { validate_certificate = false }))
  lu.assertEquals(ok.status, 200)
end

function TestFetch:test_start_runs_fetches_together_and_wait_repeats()
  local t0 = runtime.monotonic()
  local rpcs = {}
  for i = 1, 10 do rpcs[i] = urlfetch.start(url("/slow?ms=300")) end
  for i = 1, 10 do lu.assertEquals(assert(rpcs[i]:wait()).body, "slow") end
  lu.assertTrue(runtime.monotonic() - t0 < 2.5, "10 x 0.3 s fetches ran one after another")
  local again = rpcs[1]:wait()
  lu.assertEquals(again.body, "slow")
end

function TestFetch:test_response_bytes_count_against_the_memory_limit()
  -- memory_limit = 16m in urlfetch_app: a 40 MB body cannot be held
  local ok, err = pcall(urlfetch.fetch, url("/huge?size=40000000&cl=1"),
                        { max_response_size = "64m", deadline = 20 })
  lu.assertFalse(ok)
  -- refused while it streams (the fetch's buffer is charged), not after
  lu.assertStrContains(tostring(err), "not enough memory for the response")
  collectgarbage()
  lu.assertEquals(assert(urlfetch.fetch(url("/plain"))).body, "hello")   -- usable after
end

TestFetchContexts = {}

function TestFetchContexts:test_in_a_request_it_yields()
  local status, _, body = apptest.request { path = "/proxy?n=5&url=" .. url("/slow%3Fms=200") }
  lu.assertEquals(status, 200, body)
  lu.assertEquals(body, "slow")
end

function TestFetchContexts:test_never_past_the_request_deadline()
  -- request_deadline = 1: a 5 s fetch ends by then
  local t0 = runtime.monotonic()
  local status, _, body = apptest.request { path = "/proxy?deadline=5&url=" .. url("/slow%3Fms=5000") }
  local took = runtime.monotonic() - t0
  lu.assertTrue(status == 502 or status == 500, status .. " " .. body)
  if status == 502 then lu.assertStrContains(body, "DeadlineExceededError") end
  lu.assertTrue(took < 2, "took " .. took)
end

function TestFetchContexts:test_in_a_background_thread()
  local id = bt.start_new_background_thread(function(u)
    local res, err = require("urlfetch").fetch(u)
    return res and res.body, tostring(err)
  end, { url("/plain") })
  local ok, body = bt.join(id, 10)
  lu.assertTrue(ok, body)
  lu.assertEquals(body, "hello")
end

function TestFetchContexts:test_cancel_ends_a_fetch_in_a_thread()
  local id = bt.start_new_background_thread(function(u)
    return require("urlfetch").fetch(u, { deadline = 30 })
  end, { url("/slow?ms=20000") })
  local t0 = runtime.monotonic()
  lu.assertTrue(bt.cancel(id))
  local ok, a, b = bt.join(id, 10)
  lu.assertTrue(runtime.monotonic() - t0 < 2, "the fetch did not end at cancel")
  if ok then
    lu.assertNil(a)
    lu.assertEquals(b, "cancelled")
  else
    lu.assertStrContains(tostring(a), "Cancelled")
  end
end
