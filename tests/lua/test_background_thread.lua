-- background_thread under the backend role (luahost test --role backend).
local lu = require "luaunit"
local bt = require "background_thread"
local runtime = require "runtime"
local shared = require "shared"


TestStart = {}

function TestStart:test_args_kwargs_and_results()
  local id = bt.start_new_background_thread(function(a, b, kw) return a + b, kw.k, nil, "x" end,
    { 1, 2 }, { k = "v" })
  lu.assertTrue(math.type(id) == "integer" and id > 0)
  local r = table.pack(bt.join(id, 5))
  lu.assertEquals(r.n, 5)
  lu.assertEquals({ r[1], r[2], r[3], r[4], r[5] }, { true, 3, "v", nil, "x" })
end

function TestStart:test_trailing_nils_with_n()
  local id = bt.start_new_background_thread(function(...) return select("#", ...) end,
    { 1, nil, nil, n = 3 })
  lu.assertEquals(select(2, bt.join(id, 5)), 3)
end

function TestStart:test_ids_unique_and_increasing()
  local a = bt.start_new_background_thread(function() end)
  local b = bt.start_new_background_thread(function() end)
  lu.assertTrue(b > a)
  bt.join(a, 5); bt.join(b, 5)
end

function TestStart:test_module_function_target()
  lu.assertEquals({ bt.join(bt.start_new_background_thread("btjobs:add", { 2, 3 }), 5) }, { true, 5 })
  local ok, err = bt.join(bt.start_new_background_thread("btjobs:fail"), 5)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "module target failed")
end

function TestStart:test_fresh_state_inherits_nothing()
  CREATOR_GLOBAL = "mine"
  package.loaded.creator_module = {}
  local id = bt.start_new_background_thread(function()
    return CREATOR_GLOBAL, package.loaded.creator_module, require("runtime").request_id(),
      require("background_thread").current_thread_id()
  end)
  local ok, g, m, rid, tid = bt.join(id, 5)
  lu.assertTrue(ok)
  lu.assertNil(g)
  lu.assertNil(m)
  lu.assertNil(rid)
  lu.assertEquals(tid, id)
end

-- Fresh for every thread, whatever the host does with its OS threads and
-- spare states: what one thread leaves in its state no later one sees.
function TestStart:test_a_thread_leaves_nothing_to_later_threads()
  for round = 1, 8 do
    local id = bt.start_new_background_thread(function(r)
      local seen = { LEFT_BEHIND, package.loaded.left_module, string.left }
      LEFT_BEHIND = r
      package.loaded.left_module = r
      string.left = r                     -- even in a library table
      return seen[1], seen[2], seen[3]
    end, { round })
    local ok, g, m, lib = bt.join(id, 5)
    lu.assertTrue(ok, g)
    lu.assertNil(g, "round " .. round)
    lu.assertNil(m, "round " .. round)
    lu.assertNil(lib, "round " .. round)
  end
end

function TestStart:test_values_cross_by_copy_with_handles()
  local t = { list = { 1, 2 } }
  t.self = t
  local id = bt.start_new_background_thread(function(v, d)
    v.list[1] = 100
    d:set("from_thread", v.self == v)
    return v
  end, { t, shared.dict("btd") })
  local ok, back = bt.join(id, 5)
  lu.assertTrue(ok)
  lu.assertEquals(t.list[1], 1)          -- the creator's table is untouched
  lu.assertEquals(back.list[1], 100)
  lu.assertIs(back.self, back)
  lu.assertTrue(shared.dict("btd"):get("from_thread"))
end

function TestStart:test_dict_strings_read_in_threads()
  -- each one-shot thread's copy buffer is freed when it ends (LSan checks)
  shared.dict("btd"):set("big", string.rep("s", 100000))
  for _ = 1, 5 do
    local ok, n = bt.join(bt.start_new_background_thread(function()
      return #require("shared").dict("btd"):get("big")
    end), 5)
    lu.assertTrue(ok)
    lu.assertEquals(n, 100000)
  end
end

function TestStart:test_refusals_raise_bt_error_naming_the_path()
  local up = 1
  local ok, err = pcall(bt.start_new_background_thread, function() return up end)
  lu.assertFalse(ok)
  lu.assertTrue(bt.Error:is_instance(err))
  lu.assertStrContains(tostring(err), "background_thread.Error: target: cannot copy a function with upvalue 'up'")
  ok, err = pcall(bt.start_new_background_thread, function() end, { 1, { conn = coroutine.create(print) } })
  lu.assertStrContains(tostring(err), "args[2].conn")
  ok, err = pcall(bt.start_new_background_thread, print)
  lu.assertStrContains(tostring(err), "C function")
  ok, err = pcall(bt.start_new_background_thread, "no-colon")
  lu.assertStrContains(tostring(err), "module:function")
  ok, err = pcall(bt.start_new_background_thread, function() end, "notatable")
  lu.assertStrContains(tostring(err), "args: expected")
end

function TestStart:test_limit_reached_and_released()
  local q = shared.queue("bt_hold")
  local ids = {}
  for i = 1, bt.max_threads() - bt.active_count() do
    ids[i] = bt.start_new_background_thread(function() require("shared").queue("bt_hold"):pop(10) end)
  end
  lu.assertEquals(bt.active_count(), bt.max_threads())
  local ok, err = pcall(bt.start_new_background_thread, function() end)
  lu.assertFalse(ok)
  lu.assertTrue(bt.BackgroundThreadLimitReachedError:is_instance(err))
  lu.assertTrue(bt.Error:is_instance(err))
  for _ in ipairs(ids) do q:push(true) end
  for _, id in ipairs(ids) do lu.assertTrue((bt.join(id, 5))) end
  lu.assertEquals(bt.active_count(), 0)
  bt.join(bt.start_new_background_thread(function() end), 5)
end

-- SPEC §3, §8: memory_limit bounds each Lua state, a background thread's
-- too (8m in tests/lua/app): the thread ends with a memory error, its
-- joiner gets it, and the next thread runs normally.
function TestStart:test_memory_limit_in_a_thread()
  local id = bt.start_new_background_thread(function()
    local t = {}
    for i = 1, 1e8 do t[i] = ("x"):rep(65536) .. i end
    return "escaped the limit"
  end)
  local ok, err = bt.join(id, 30)
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "not enough memory")
  local id2 = bt.start_new_background_thread(function()
    local t = {}
    for i = 1, 1000 do t[i] = ("y"):rep(64) .. i end
    return #t
  end)
  lu.assertEquals({ bt.join(id2, 30) }, { true, 1000 })
end

TestJoin = {}

function TestJoin:test_timeout_then_result()
  -- the thread waits for the test's word (no race with its own timing)
  local id = bt.start_new_background_thread(function()
    return require("shared").queue("bt_go"):pop(30) and "done"
  end)
  lu.assertTrue(bt.is_alive(id))
  local v, err = bt.join(id, 0.01)
  lu.assertNil(v)
  lu.assertEquals(err, "timeout")
  lu.assertTrue(bt.is_alive(id))
  shared.queue("bt_go"):push(true)
  lu.assertEquals({ bt.join(id, 5) }, { true, "done" })
  lu.assertFalse(bt.is_alive(id))
end

function TestJoin:test_error_outcome_has_traceback()
  local id = bt.start_new_background_thread(function() local x = nil; return x.field end)
  local ok, err = bt.join(id, 5)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "attempt to index")
  lu.assertStrContains(err, "stack traceback")
end

-- SPEC §5: "false, err when it raised (err copied across, traceback in
-- its message)": an error object keeps its class, a table its contents.
function TestJoin:test_error_objects_cross_to_the_joiner()
  local id = bt.start_new_background_thread(function()
    error(require("background_thread").Error("custom"))
  end)
  local ok, err = bt.join(id, 5)
  lu.assertFalse(ok)
  lu.assertTrue(bt.Error:is_instance(err))
  lu.assertFalse(bt.Cancelled:is_instance(err))
  lu.assertStrContains(err.message, "custom")
  lu.assertStrContains(err.message, "stack traceback")
  lu.assertStrContains(tostring(err), "background_thread.Error: custom")
  -- a class the joiner's state has not loaded yet keeps its parent
  ok, err = bt.join(bt.start_new_background_thread(function()
    local _, e = require("urlfetch").fetch("http://127.0.0.1:1/")
    error(e)
  end), 10)
  lu.assertFalse(ok)
  local urlfetch = require "urlfetch"
  lu.assertTrue(urlfetch.DownloadError:is_instance(err), tostring(err))
  lu.assertTrue(urlfetch.Error:is_instance(err))
  -- a plain table crosses as a copy; a number as itself
  ok, err = bt.join(bt.start_new_background_thread(function() error({ code = 42, why = { "x" } }) end), 5)
  lu.assertEquals({ ok, err }, { false, { code = 42, why = { "x" } } })
  ok, err = bt.join(bt.start_new_background_thread(function() error(7) end), 5)
  lu.assertEquals({ ok, err }, { false, 7 })
  -- what cannot cross (a coroutine inside) leaves its text
  ok, err = bt.join(bt.start_new_background_thread(function() error({ co = coroutine.create(print) }) end), 5)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "table: ")
end

function TestJoin:test_unknown_and_joined_ids()
  lu.assertEquals({ bt.join(123456789, 0) }, { nil, "unknown thread" })
  local id = bt.start_new_background_thread(function() return 1 end)
  lu.assertEquals({ bt.join(id, 5) }, { true, 1 })
  lu.assertEquals({ bt.join(id, 5) }, { nil, "unknown thread" })
end

function TestJoin:test_outcomes_kept_for_the_1000_last_finished()
  local deadline = runtime.monotonic() + 10   -- earlier tests' threads end first
  while bt.active_count() > 0 and runtime.monotonic() < deadline do runtime.sleep(0.005) end
  lu.assertEquals(bt.active_count(), 0)
  local ids = {}
  local function run_one(i)   -- one at a time: they finish in order
    ids[i] = bt.start_new_background_thread(function(x) return x end, { i })
    while bt.is_alive(ids[i]) do end
  end
  for i = 1, 1010 do run_one(i) end
  for i = 1, 10 do lu.assertEquals({ bt.join(ids[i], 0) }, { nil, "unknown thread" }) end
  -- taken from the middle and the newest end, then two more pushed out
  lu.assertEquals({ bt.join(ids[500], 0) }, { true, 500 })
  lu.assertEquals({ bt.join(ids[1010], 0) }, { true, 1010 })
  for i = 1011, 1014 do run_one(i) end
  for i = 11, 12 do lu.assertEquals({ bt.join(ids[i], 0) }, { nil, "unknown thread" }) end
  for i = 13, 1014 do
    if i ~= 500 and i ~= 1010 then lu.assertEquals({ bt.join(ids[i], 0) }, { true, i }) end
  end
end

function TestJoin:test_two_joiners_one_takes_the_outcome()
  local target = bt.start_new_background_thread(function()
    require("runtime").sleep(0.2)
    return "r"
  end)
  local function joiner(id) return require("background_thread").join(id, 5) end
  local t0 = runtime.monotonic()
  local j1 = bt.start_new_background_thread(joiner, { target })
  local j2 = bt.start_new_background_thread(joiner, { target })
  local a, b = table.pack(bt.join(j1, 10)), table.pack(bt.join(j2, 10))
  lu.assertTrue(a[1] and b[1])
  -- one took the outcome; the other was told so at once, not at its timeout
  local got = { a[3], b[3] }   -- (true, "r") or (nil, "unknown thread")
  table.sort(got)
  lu.assertEquals(got, { "r", "unknown thread" })
  lu.assertTrue(runtime.monotonic() - t0 < 3)
end

TestCancel = {}

-- Until the thread has set dict key `k` (it is running its target).
local function wait_flag(k)
  local d, deadline = shared.dict("bt_flags"), runtime.monotonic() + 10
  while not d:get(k) do
    lu.assertTrue(runtime.monotonic() < deadline, "thread did not start")
    runtime.sleep(0.002)
  end
end

function TestCancel:test_blocking_calls_return_at_once()
  local id = bt.start_new_background_thread(function()
    require("shared").dict("bt_flags"):set("sleeper", true)
    local slept = require("runtime").sleep(30)
    local v, why = require("shared").queue("bt_never"):pop(30)
    return slept, v, why
  end)
  wait_flag("sleeper")
  local t0 = runtime.monotonic()
  lu.assertTrue(bt.cancel(id))
  local r = table.pack(bt.join(id, 5))
  lu.assertTrue(runtime.monotonic() - t0 < 2)
  -- sleep returned false, pop returned nil, "cancelled", and the target
  -- returned before the hook's next check
  lu.assertEquals(r.n, 4)
  lu.assertEquals({ r[1], r[2], r[3], r[4] }, { true, false, nil, "cancelled" })
end

function TestCancel:test_busy_loop_gets_cancelled_error()
  local id = bt.start_new_background_thread(function()
    require("shared").dict("bt_flags"):set("spinner", true)
    while true do pcall(function() while true do end end) end
  end)
  wait_flag("spinner")
  lu.assertTrue(bt.cancel(id))
  local ok, err = bt.join(id, 5)
  lu.assertFalse(ok)
  lu.assertTrue(bt.Cancelled:is_instance(err), tostring(err))   -- its joiner can tell
  lu.assertStrContains(tostring(err), "background_thread.Cancelled: background thread " .. id .. " was cancelled")
  lu.assertFalse(bt.cancel(id))
end

TestClass = {}

function TestClass:test_background_thread_object()
  local t = bt.BackgroundThread { target = function(a, kw) return a * kw.m end, args = { 6 }, kwargs = { m = 7 }, name = "calc" }
  lu.assertEquals(t.name, "calc")
  lu.assertNil(t.ident)
  lu.assertFalse(t:is_alive())
  lu.assertErrorMsgContains("before it is started", t.join, t)
  t:start()
  lu.assertTrue(math.type(t.ident) == "integer")
  lu.assertEquals({ t:join(5) }, { true, 42 })
  lu.assertEquals({ t:join(5) }, { true, 42 })   -- kept on the object
  local ok, err = pcall(t.start, t)
  lu.assertFalse(ok)
  lu.assertTrue(bt.Error:is_instance(err))
  lu.assertStrMatches(bt.BackgroundThread {}.name, "BackgroundThread%-%d+")
end

TestErrors = {}

function TestErrors:test_class_hierarchy_and_strings()
  for _, name in ipairs { "FrontendsNotSupported", "BackgroundThreadLimitReachedError", "Cancelled" } do
    local cls = bt[name]
    lu.assertEquals(cls.__name, "background_thread." .. name)
    lu.assertFalse(cls:is_instance("background_thread." .. name))
    lu.assertFalse(bt.Error:is_instance(42))
  end
  lu.assertFalse(bt.FrontendsNotSupported:is_instance(setmetatable({}, bt.Error)))
  lu.assertTrue(bt.Error:is_instance(setmetatable({}, bt.Cancelled)))
end

function TestErrors:test_classes_make_instances_when_called()
  local e = bt.Cancelled("stop now")
  lu.assertEquals(e.message, "stop now")
  lu.assertEquals(tostring(e), "background_thread.Cancelled: stop now")
  lu.assertTrue(bt.Cancelled:is_instance(e))
  lu.assertTrue(bt.Error:is_instance(e))
  lu.assertFalse(bt.FrontendsNotSupported:is_instance(e))
  local ok, got = pcall(error, bt.Error("mine"))
  lu.assertFalse(ok)
  lu.assertTrue(bt.Error:is_instance(got))
  lu.assertEquals(tostring(got), "background_thread.Error: mine")
  lu.assertEquals(bt.Error().message, "")
  lu.assertEquals(tostring(bt.Error(42)), "background_thread.Error: 42")
end

function TestErrors:test_unknown_module_target_names_the_target()
  local ok, err = bt.join(bt.start_new_background_thread("no_such_module_xyz:f"), 5)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "target 'no_such_module_xyz:f': module 'no_such_module_xyz' not found")
end

function TestErrors:test_current_thread_id_outside_threads()
  lu.assertNil(bt.current_thread_id())
end

TestRuntimeHook = {}

function TestRuntimeHook:test_set_shutdown_hook_returns_previous()
  lu.assertNil(runtime.set_shutdown_hook("btjobs:add"))
  lu.assertEquals(runtime.set_shutdown_hook(nil), "btjobs:add")
  lu.assertNil(runtime.set_shutdown_hook(nil))
  local up = 1
  lu.assertErrorMsgContains("upvalue 'up'", runtime.set_shutdown_hook, function() return up end)
  -- the same target names as start_new_background_thread
  for _, bad in ipairs { "a:b:c", "mod-x:f", ":f", "m:" } do
    local ok, err = pcall(runtime.set_shutdown_hook, bad)
    lu.assertFalse(ok)
    lu.assertTrue(bt.Error:is_instance(err), bad)
    lu.assertStrContains(tostring(err), 'expected "module:function"')
    lu.assertErrorMsgContains('expected "module:function"', bt.start_new_background_thread, bad)
  end
  -- and the same checks of kind, with the same words
  for _, bad in ipairs { print, 42, {} } do
    local ok, err = pcall(runtime.set_shutdown_hook, bad)
    local ok2, err2 = pcall(bt.start_new_background_thread, bad)
    lu.assertFalse(ok or ok2)
    lu.assertTrue(bt.Error:is_instance(err) and bt.Error:is_instance(err2))
    lu.assertStrContains(tostring(err), "target: ")
    if type(bad) == "function" then lu.assertEquals(tostring(err), tostring(err2)) end
  end
  lu.assertNil(runtime.set_shutdown_hook(nil))
end
