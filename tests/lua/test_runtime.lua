-- runtime module, outside a request (run by `luahost test`).
local lu = require "luaunit"
local runtime = require "runtime"

TestRuntime = {}

function TestRuntime:test_role_matches_the_test_role()
  local expected = os.getenv("LUAHOST_EXPECT_ROLE") or "frontend"
  lu.assertEquals(runtime.role(), expected)
end

function TestRuntime:test_instance_id_is_stable_hex()
  local id = runtime.instance_id()
  lu.assertStrMatches(id, "%x+")
  lu.assertEquals(#id, 32)
  lu.assertEquals(runtime.instance_id(), id)
end

function TestRuntime:test_request_id_is_nil_outside_a_request()
  lu.assertNil(runtime.request_id())
end

function TestRuntime:test_not_shutting_down()
  lu.assertFalse(runtime.is_shutting_down())
end

function TestRuntime:test_monotonic_advances_with_sleep()
  local t0 = runtime.monotonic()
  lu.assertEquals(math.type(t0), "float")
  lu.assertTrue(runtime.sleep(0.05))
  local dt = runtime.monotonic() - t0
  lu.assertTrue(dt >= 0.045, "slept only " .. dt)
  lu.assertTrue(dt < 1.0, "slept " .. dt)
end

function TestRuntime:test_sleep_rejects_bad_arguments()
  lu.assertErrorMsgContains("number expected", runtime.sleep, "x")
  lu.assertErrorMsgContains("seconds >= 0", runtime.sleep, -1)
end

function TestRuntime:test_memory_usage_counts_this_state()
  local before = runtime.memory_usage()
  lu.assertTrue(before.lua > 0)
  lu.assertTrue(before.process > before.lua)
  local keep = {}
  for i = 1, 10000 do keep[i] = tostring(i) .. "xxxxxxxxxxxx" end
  lu.assertTrue(runtime.memory_usage().lua > before.lua + 100000)
  lu.assertEquals(#keep, 10000)
end

function TestRuntime:test_log_accepts_levels_and_formats()
  for _, level in ipairs { "debug", "info", "warning", "error" } do
    runtime.log(level, "test line %d %s", 1, "x")
  end
  lu.assertErrorMsgContains("invalid option 'loud'", runtime.log, "loud", "x")
  lu.assertErrorMsgContains("bad argument", runtime.log, "info", "%d", "notanumber")
  -- the app's own string.format (or none) does not change runtime.log
  local saved = string.format
  string.format = function() error("the app's format was called") end
  local ok, err = pcall(runtime.log, "info", "still %s", "formatted")
  string.format = saved
  lu.assertTrue(ok, err)
end

function TestRuntime:test_deadline_error_class()
  local E = runtime.DeadlineExceededError
  lu.assertEquals(E.__name, "runtime.DeadlineExceededError")
  lu.assertFalse(E:is_instance("runtime.DeadlineExceededError: x"))
  lu.assertFalse(E:is_instance({}))
  local e = E("too late")
  lu.assertTrue(E:is_instance(e))
  lu.assertEquals(tostring(e), "runtime.DeadlineExceededError: too late")
end

TestSandbox = {}

function TestSandbox:test_binary_chunks_refused()
  local f, err = load(string.dump(function() return 1 end))
  lu.assertNil(f)
  lu.assertStrContains(err, "binary")
end

function TestSandbox:test_text_chunks_load()
  lu.assertEquals(load("return 6 * 7")(), 42)
end
