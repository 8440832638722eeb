-- One way to wait (SPEC §9): every wait kind in every context ends with
-- its documented answer at its timeout, at the request deadline and at
-- bt.cancel, and none polls.  Run with --app tests/lua/waits_app --role backend.
-- (Shutdown ends them too: tests/e2e/test_waits.py.)
local lu = require "luaunit"
local apptest = require "apptest"
local bt = require "background_thread"
local runtime = require "runtime"
local shared = require "shared"
local waits = require "wait_kinds"

local KINDS = { "sleep", "pop", "push", "join" }
-- what each kind returns when its timeout ends it
local TIMED_OUT = { sleep = "true", pop = "nil,timeout", push = "false,full", join = "nil,timeout" }

local function answer(...)
  local r = table.pack(...)
  local out = {}
  for i = 1, r.n do out[i] = tostring(r[i]) end
  return table.concat(out, ",")
end

-- Runs f and returns its answer and the elapsed seconds.
local function timed(f)
  local t0 = runtime.monotonic()
  local a = answer(f())
  return a, runtime.monotonic() - t0
end

local function assert_took(elapsed, secs, what)
  lu.assertTrue(elapsed >= secs - 0.005, what .. " ended early: " .. elapsed)
  lu.assertTrue(elapsed < secs + 1.5, what .. " ended late: " .. elapsed)
end

TestWaitTimeouts = {}

function TestWaitTimeouts:test_in_the_test_itself_waits_in_place()
  for _, kind in ipairs(KINDS) do
    local a, took = timed(function() return waits.run(kind, 0.2) end)
    lu.assertEquals(a, TIMED_OUT[kind], kind)
    assert_took(took, 0.2, kind)
  end
end

function TestWaitTimeouts:test_in_a_request_the_coroutine_yields()
  for _, kind in ipairs(KINDS) do
    local t0 = runtime.monotonic()
    local status, _, body = apptest.request { path = "/wait?kind=" .. kind .. "&secs=0.2" }
    lu.assertEquals(status, 200, kind .. ": " .. body)
    lu.assertEquals(body, TIMED_OUT[kind], kind)
    assert_took(runtime.monotonic() - t0, 0.2, kind)
  end
end

function TestWaitTimeouts:test_in_a_coroutine_the_handler_made_waits_in_place()
  for _, kind in ipairs(KINDS) do
    local t0 = runtime.monotonic()
    local status, _, body = apptest.request { path = "/wait?nested=1&kind=" .. kind .. "&secs=0.2" }
    lu.assertEquals(status, 200, kind .. ": " .. body)
    lu.assertEquals(body, TIMED_OUT[kind], kind)
    assert_took(runtime.monotonic() - t0, 0.2, kind)
  end
end

function TestWaitTimeouts:test_in_a_background_thread_waits_in_place()
  for _, kind in ipairs(KINDS) do
    local id = bt.start_new_background_thread(function(k)
      local w = require "wait_kinds"
      local rt = require "runtime"
      local t0 = rt.monotonic()
      local r = table.pack(w.run(k, 0.2))
      return rt.monotonic() - t0, table.unpack(r, 1, r.n)
    end, { kind })
    local r = table.pack(bt.join(id, 10))
    lu.assertTrue(r[1], kind .. ": " .. tostring(r[2]))
    lu.assertEquals(answer(table.unpack(r, 3, r.n)), TIMED_OUT[kind], kind)
    assert_took(r[2], 0.2, kind)
  end
end

function TestWaitTimeouts:test_zero_timeout_does_not_wait()
  for _, kind in ipairs({ "pop", "push", "join" }) do
    local a, took = timed(function() return waits.run(kind, 0) end)
    lu.assertEquals(a, TIMED_OUT[kind], kind)
    lu.assertTrue(took < 0.5, kind .. " waited " .. took)
  end
end

TestWaitDeadline = {}

-- request_deadline = 1 in waits_app: a 5 s wait ends at 1 s with
-- DeadlineExceededError, as CPU work would.
function TestWaitDeadline:test_every_kind_in_a_request_ends_at_the_deadline()
  for _, nested in ipairs({ "", "&nested=1" }) do
    for _, kind in ipairs(KINDS) do
      local t0 = runtime.monotonic()
      local status, _, body = apptest.request { path = "/wait?secs=5&kind=" .. kind .. nested }
      local took = runtime.monotonic() - t0
      lu.assertEquals(status, 500, kind .. nested .. ": " .. body)
      assert_took(took, 1, kind .. nested)
    end
  end
end

TestWaitCancel = {}

-- bt.cancel ends the wait at once: it answers "cancelled" (sleep: false),
-- or, if the thread runs on, bt.Cancelled is raised inside it.
function TestWaitCancel:test_every_kind_in_a_thread_ends_at_cancel()
  for _, kind in ipairs(KINDS) do
    local ready = shared.queue("cancel-ready-" .. kind)
    local id = bt.start_new_background_thread(function(k, qname)
      local w = require "wait_kinds"
      require("shared").queue(qname):push(true)
      return w.run(k, 30)
    end, { kind, "cancel-ready-" .. kind })
    lu.assertTrue(ready:pop(10))
    local t0 = runtime.monotonic()
    lu.assertTrue(bt.cancel(id))
    local r = table.pack(bt.join(id, 10))
    lu.assertTrue(runtime.monotonic() - t0 < 2, kind .. " did not end at cancel")
    if r[1] then
      local want = kind == "sleep" and "false" or
                   (kind == "push" and "false,cancelled" or "nil,cancelled")
      lu.assertEquals(answer(table.unpack(r, 2, r.n)), want, kind)
    else
      lu.assertStrContains(tostring(r[2]), "background_thread.Cancelled", kind)
    end
  end
end

TestNoPolling = {}

-- A wait that blocks wakes its thread about once; one that polls in
-- 10 ms slices would switch out ~50 times in 0.5 s.
local function assert_few_switches(before, after, what)
  lu.assertTrue(after - before < 10, what .. ": " .. (after - before) .. " context switches")
end

function TestNoPolling:test_a_wait_in_place_does_not_poll()
  for _, kind in ipairs(KINDS) do
    local s0 = waits.switches()
    waits.run(kind, 0.5)
    assert_few_switches(s0, waits.switches(), kind)
  end
end

function TestNoPolling:test_a_yielded_request_does_not_poll()
  local s0 = waits.switches()
  local status = apptest.request { path = "/wait?kind=sleep&secs=0.5" }
  lu.assertEquals(status, 200)
  assert_few_switches(s0, waits.switches(), "request sleep")
end

function TestNoPolling:test_a_sleeping_thread_does_not_poll()
  local id = bt.start_new_background_thread(function()
    local w = require "wait_kinds"
    local s0 = w.switches()
    require("runtime").sleep(0.5)
    return w.switches() - s0
  end)
  local ok, n = bt.join(id, 10)
  lu.assertTrue(ok, n)
  lu.assertTrue(n < 10, "thread sleep: " .. tostring(n) .. " context switches")
end
