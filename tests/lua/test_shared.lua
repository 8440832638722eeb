-- shared: dicts and queues, from one state (luahost test; app tests/lua/app
-- configures dict "small" = 8k and queue "tiny" = 2).  Run twice: on the
-- memory store, and on Redis (app tests/lua/shared_redis_app, with
-- LUAHOST_TEST_SHARED_STORE=redis), where the behaviours that differ by
-- design are checked for what they are there.
local lu = require "luaunit"
local shared = require "shared"
local runtime = require "runtime"
local on_redis = os.getenv("LUAHOST_TEST_SHARED_STORE") == "redis"

local function fresh(name)
  local d = shared.dict(name)
  d:flush_all()
  return d
end

TestDict = {}

function TestDict:test_set_get_types_kept()
  local d = fresh("t1")
  lu.assertTrue(d:set("s", "bin\0ary"))
  lu.assertTrue(d:set("i", 42))
  lu.assertTrue(d:set("f", 1.5))
  lu.assertTrue(d:set("b", false))
  lu.assertEquals(d:get("s"), "bin\0ary")
  lu.assertEquals(d:get("i"), 42)
  lu.assertEquals(math.type(d:get("i")), "integer")
  lu.assertEquals(math.type(d:get("f")), "float")
  lu.assertEquals(d:get("b"), false)
  lu.assertNil(d:get("missing"))
end

function TestDict:test_set_nil_deletes()
  local d = fresh("t2")
  d:set("k", "v")
  lu.assertTrue(d:set("k", nil))
  lu.assertNil(d:get("k"))
end

function TestDict:test_add_fails_when_present()
  local d = fresh("t3")
  lu.assertTrue(d:add("k", 1))
  local ok, err = d:add("k", 2)
  lu.assertFalse(ok)
  lu.assertEquals(err, "exists")
  lu.assertEquals(d:get("k"), 1)
end

function TestDict:test_incr()
  local d = fresh("t4")
  local v, err = d:incr("n", 1)
  lu.assertNil(v)
  lu.assertEquals(err, "not found")
  lu.assertEquals(d:incr("n", 5, 10), 15)
  lu.assertEquals(d:incr("n", -3), 12)
  lu.assertEquals(math.type(d:incr("n", 1)), "integer")
  lu.assertEquals(d:incr("n", 0.5), 13.5)
  d:set("s", "x")
  v, err = d:incr("s", 1)
  lu.assertNil(v)
  lu.assertEquals(err, "not a number")
end

function TestDict:test_incr_overflow_is_refused_never_wraps()
  local d = fresh("t10")
  d:set("max", math.maxinteger)
  local v, err = d:incr("max", 1)
  lu.assertNil(v)
  lu.assertEquals(err, "overflow")
  lu.assertEquals(d:get("max"), math.maxinteger)
  d:set("min", math.mininteger)
  v, err = d:incr("min", -1)
  lu.assertNil(v)
  lu.assertEquals(err, "overflow")
  lu.assertEquals(d:get("min"), math.mininteger)
  v, err = d:incr("new", 1, math.maxinteger)
  lu.assertEquals(err, "overflow")
  lu.assertNil(d:get("new"))
  -- above 2^53 integers stay exact
  d:set("big", 9007199254740993)
  lu.assertEquals(d:incr("big", 2), 9007199254740995)
  lu.assertEquals(d:incr("big2", 1, 9007199254740993), 9007199254740994)
  lu.assertEquals(math.type(d:get("big2")), "integer")
end

function TestDict:test_delete_keys_flush()
  local d = fresh("t5")
  for i = 1, 10 do d:set("k" .. i, i) end
  lu.assertTrue(d:delete("k1"))
  local keys = d:keys()
  lu.assertEquals(#keys, 9)
  lu.assertEquals(#d:keys(3), 3)
  d:flush_all()
  lu.assertEquals(#d:keys(0), 0)
end

function TestDict:test_ttl_expires()
  local d = fresh("t6")
  local t0 = runtime.monotonic()
  lu.assertTrue(d:set("k", "v", 0.5))
  lu.assertTrue(d:add("k2", "v", 0.5))
  lu.assertTrue(d:set("long", "stays", 60))
  -- well inside the TTL (a 0.5 s stall between two calls would be news)
  lu.assertEquals(d:get("k"), "v")
  lu.assertEquals(d:get("k2"), "v")
  -- sleep until the TTL has surely passed, however late this thread runs
  while runtime.monotonic() - t0 < 0.6 do runtime.sleep(0.6 - (runtime.monotonic() - t0)) end
  lu.assertNil(d:get("k"))
  lu.assertTrue(d:add("k2", "again"))   -- expired, so add succeeds
  lu.assertEquals(d:get("long"), "stays")
  lu.assertEquals(#d:keys(0), 2)
end

function TestDict:test_full_dict_refuses_and_keeps_everything()
  -- on Redis, "full" is the server's maxmemory (test_redis.lua fills it)
  if on_redis then return end
  local d = fresh("small")   -- 8k in tests/lua/app/app.lua
  local stored = 0
  for i = 1, 1000 do
    local ok, err = d:set("key" .. i, string.rep("x", 100))
    if not ok then
      lu.assertEquals(err, "no memory")
      break
    end
    stored = i
  end
  lu.assertTrue(stored > 10 and stored < 1000, "stored " .. stored)
  for i = 1, stored do lu.assertEquals(#d:get("key" .. i), 100) end
  local ok, err = d:add("another", string.rep("y", 100))
  lu.assertFalse(ok)
  lu.assertEquals(err, "no memory")
end

function TestDict:test_argument_errors()
  local d = fresh("t7")
  lu.assertErrorMsgContains("expected nil, boolean, number or string, got table", d.set, d, "k", {})
  lu.assertErrorMsgContains("key must not be empty", d.set, d, "", 1)
  lu.assertErrorMsgContains("string expected", d.get, d, 5 < 3)
  lu.assertErrorMsgContains("ttl must be", d.set, d, "k", 1, -1)
  lu.assertErrorMsgContains("number expected", d.incr, d, "k", "x")
  lu.assertErrorMsgContains("number expected, got string", d.incr, d, "k", "5")
  lu.assertErrorMsgContains("number expected, got string", d.incr, d, "k", 1, "5")
  lu.assertErrorMsgContains("luahost.shared.Dict expected", d.get, {}, "k")
end

function TestDict:test_proxy_metamethods_refuse_other_values()
  local d, q = fresh("t8"), shared.queue("t8q")
  for _, mt in ipairs { getmetatable(d), getmetatable(q) } do
    mt.__gc(io.stdout)             -- not a proxy: left alone
    mt.__gc(42)
    mt.__close(setmetatable({}, {}))
  end
  io.stdout:write("")              -- the stream still works
  lu.assertTrue(d:set("k", 1))
  lu.assertEquals(q:len(), 0)
end

function TestDict:test_same_name_same_dict()
  fresh("t8"):set("k", "v")
  lu.assertEquals(shared.dict("t8"):get("k"), "v")
  lu.assertEquals(tostring(shared.dict("t8")), 'shared.dict("t8")')
end

TestQueue = {}

function TestQueue:test_fifo_and_len()
  local q = shared.queue("q1")
  while q:pop(0) do end
  for i = 1, 5 do lu.assertTrue(q:push(i)) end
  lu.assertEquals(q:len(), 5)
  for i = 1, 5 do lu.assertEquals(q:pop(0), i) end
  local v, err = q:pop(0)
  lu.assertNil(v)
  lu.assertEquals(err, "timeout")
end

function TestQueue:test_values_are_deep_copies()
  local q = shared.queue("q2")
  local t = { a = { 1, 2, 3 }, s = "x\0y", f = 2.0, i = 2 }
  t.self = t
  q:push(t)
  t.a[1] = 99
  local got = q:pop(0)
  lu.assertEquals(got.a, { 1, 2, 3 })
  lu.assertEquals(got.s, "x\0y")
  lu.assertEquals(math.type(got.f), "float")
  lu.assertEquals(math.type(got.i), "integer")
  lu.assertIs(got.self, got)
end

function TestQueue:test_functions_and_handles_cross()
  local q = shared.queue("q3")
  if on_redis then   -- they cannot cross machines: refused, nothing queued
    lu.assertErrorMsgContains("cannot store a function", q.push, q, function(x) return x end)
    lu.assertErrorMsgContains("value.d: cannot store a userdata", q.push, q, { d = shared.dict("t9") })
    lu.assertEquals(q:len(), 0)
    return
  end
  q:push(function(x) return x * 2 end)
  lu.assertEquals(q:pop(0)(21), 42)
  q:push({ d = shared.dict("t9") })
  local got = q:pop(0)
  got.d:set("via", "handle")
  lu.assertEquals(shared.dict("t9"):get("via"), "handle")
end

function TestQueue:test_refused_values_name_the_path()
  local q = shared.queue("q4")
  local co = coroutine.create(function() end)
  lu.assertErrorMsgContains("value.list[2]: cannot copy a thread", q.push, q, { list = { 1, co } })
  lu.assertErrorMsgContains("metatable", q.push, q, setmetatable({}, {}))
  local up = 1
  lu.assertErrorMsgContains(on_redis and "value: cannot store a function" or "upvalue 'up'",
                            q.push, q, function() return up end)
  lu.assertEquals(q:len(), 0)
end

function TestQueue:test_full_push_times_out()
  local q = shared.queue("tiny")   -- capacity 2
  while q:pop(0) do end
  lu.assertTrue(q:push(1))
  lu.assertTrue(q:push(2))
  local t0 = runtime.monotonic()
  local ok, err = q:push(3, 0.05)
  lu.assertFalse(ok)
  lu.assertEquals(err, "full")
  lu.assertTrue(runtime.monotonic() - t0 >= 0.04)
  ok, err = q:push(3, 0)
  lu.assertFalse(ok)
  lu.assertEquals(err, "full")
  lu.assertEquals(q:pop(0), 1)
  lu.assertTrue(q:push(3, 0))
end

function TestQueue:test_empty_pop_times_out()
  local q = shared.queue("q5")
  local t0 = runtime.monotonic()
  local v, err = q:pop(0.05)
  lu.assertNil(v)
  lu.assertEquals(err, "timeout")
  lu.assertTrue(runtime.monotonic() - t0 >= 0.04)
end

function TestQueue:test_argument_errors()
  local q = shared.queue("q6")
  lu.assertErrorMsgContains("timeout must be", q.pop, q, -1)
  lu.assertErrorMsgContains("name must be", shared.queue, "")
  lu.assertErrorMsgContains("luahost.shared.Queue expected", q.len, shared.dict("x"))
end
