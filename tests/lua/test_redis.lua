-- The redis module and shared on Redis (SPEC §14), against the
-- redis-server tests/redis_env.sh started (app tests/lua/redis_app:
-- server `main`, `down` on a closed port, shared.store = "main",
-- store_prefix "lt", shared.timeout 0.5 s, queue "tiny" = 2).  Run with
-- --role backend (background threads).
local lu = require "luaunit"
local redis = require "redis"
local shared = require "shared"
local runtime = require "runtime"
local bt = require "background_thread"

local r = redis.client("main")

-- The Redis key of a dict entry and of a queue (store/remote.h's layout).
local function dkey(dict, k) return ("lt:d:%d:%s:%s"):format(#dict, dict, k) end
local function qkey(q) return ("lt:q:%d:%s"):format(#q, q) end

local function fresh(name)
  local d = shared.dict(name)
  lu.assertTrue(d:flush_all())
  return d
end

local function empty_queue(name)
  r:call("DEL", qkey(name))
  return shared.queue(name)
end

TestRedisCalls = {}

function TestRedisCalls:test_reply_types()
  lu.assertEquals(r:call("SET", "rt:s", "bin\0ary"), "OK")
  lu.assertEquals(r:call("GET", "rt:s"), "bin\0ary")
  lu.assertNil(r:call("GET", "rt:missing"))
  r:call("DEL", "rt:n", "rt:l")
  local n = r:call("INCR", "rt:n")
  lu.assertEquals(n, 1)
  lu.assertEquals(math.type(n), "integer")
  lu.assertEquals(r:call("RPUSH", "rt:l", "a", "b", 3), 3)
  lu.assertEquals(r:call("LRANGE", "rt:l", 0, -1), { "a", "b", "3" })
  local m = r:call("MGET", "rt:s", "rt:missing", "rt:n")
  lu.assertEquals(#m, 3)
  lu.assertEquals(m[1], "bin\0ary")
  lu.assertIs(m[2], redis.null)
  lu.assertEquals(m[3], "1")
  lu.assertEquals(tostring(redis.null), "redis.null")
  -- numbers go out as their exact text
  r:call("SET", "rt:big", 9007199254740993)
  lu.assertEquals(r:call("GET", "rt:big"), "9007199254740993")
  -- floats as the shortest text that reads back; integral ones as integers
  for _, c in ipairs({ { 0.1, "0.1" }, { 1 / 3, "0.3333333333333333" }, { 60.0, "60" },
                       { -0.0, "0" }, { 1e300, "1e+300" }, { 2.5e-7, "2.5e-07" },
                       { math.huge, "inf" }, { -math.huge, "-inf" } }) do
    r:call("SET", "rt:f", c[1])
    lu.assertEquals(r:call("GET", "rt:f"), c[2])
  end
  lu.assertEquals(r:call("EXPIRE", "rt:f", 60 / 1), 1)
  lu.assertEquals(r:call("PING"), "PONG")
end

function TestRedisCalls:test_error_reply_is_reply_error()
  r:call("SET", "rt:str", "x")
  local v, err = r:call("INCR", "rt:str")
  lu.assertNil(v)
  lu.assertTrue(redis.ReplyError:is_instance(err))
  lu.assertTrue(redis.Error:is_instance(err))
  lu.assertFalse(redis.ConnectionError:is_instance(err))
  lu.assertStrContains(tostring(err), "redis.ReplyError: ERR value is not an integer")
  v, err = r:call("NOSUCHCOMMAND")
  lu.assertNil(v)
  lu.assertStrContains(tostring(err), "unknown command")
end

function TestRedisCalls:test_pipeline()
  r:call("DEL", "rt:p", "rt:pstr")
  r:call("SET", "rt:pstr", "x")
  local res = r:pipeline(function(p)
    p:call("INCR", "rt:p")
    p:call("INCR", "rt:p")
    p:call("INCR", "rt:pstr")
    p:call("GET", "rt:nothing")
    p:call("GET", "rt:p")
  end)
  lu.assertEquals(#res, 5)
  lu.assertEquals(res[1], 1)
  lu.assertEquals(res[2], 2)
  lu.assertTrue(redis.ReplyError:is_instance(res[3]))
  lu.assertIs(res[4], redis.null)
  lu.assertEquals(res[5], "2")
  lu.assertEquals(r:pipeline(function() end), {})
  -- MULTI ... EXEC inside one pipeline is allowed
  local tx = r:pipeline(function(p)
    p:call("MULTI")
    p:call("INCR", "rt:p")
    p:call("EXEC")
  end)
  lu.assertEquals(tx[1], "OK")
  lu.assertEquals(tx[2], "QUEUED")
  lu.assertEquals(tx[3], { 3 })
end

function TestRedisCalls:test_misuse_raises()
  lu.assertErrorMsgContains("no server 'nope'", redis.client, "nope")
  lu.assertErrorMsgContains("string or number expected, got table", r.call, r, "SET", "k", {})
  lu.assertErrorMsgContains("SELECT", r.call, r, "SELECT", 1)
  lu.assertErrorMsgContains("MULTI", r.call, r, "MULTI")
  lu.assertErrorMsgContains("luahost.redis.Client expected", r.call, {}, "PING")
  lu.assertErrorMsgContains("timeout must be", redis.client, "main", { timeout = -1 })
end

function TestRedisCalls:test_connection_error_fast()
  local down = redis.client("down")
  local t0 = runtime.monotonic()
  for _ = 1, 3 do
    local v, err = down:call("PING")
    lu.assertNil(v)
    lu.assertTrue(redis.ConnectionError:is_instance(err))
    lu.assertStrContains(tostring(err), "redis.ConnectionError: redis 'down'")
  end
  lu.assertTrue(runtime.monotonic() - t0 < 3)
end

function TestRedisCalls:test_timeout_is_connection_error()
  local quick = redis.client("main", { timeout = 0.2 })
  local t0 = runtime.monotonic()
  local v, err = quick:call("BLPOP", "rt:never", 5)
  local took = runtime.monotonic() - t0
  lu.assertNil(v)
  lu.assertTrue(redis.ConnectionError:is_instance(err))
  lu.assertStrContains(tostring(err), "no reply within 200 ms")
  lu.assertTrue(took >= 0.19 and took < 2, "took " .. took)
  lu.assertEquals(quick:call("PING"), "PONG")   -- the shared connection is fine
end

function TestRedisCalls:test_blocking_command_cancelled_in_a_thread()
  r:call("DEL", "rt:blk")
  local id = bt.start_new_background_thread(function()
    local c = require("redis").client("main", { timeout = 0 })
    return c:call("BLPOP", "rt:blk", 0)
  end)
  runtime.sleep(0.1)
  local t0 = runtime.monotonic()
  lu.assertTrue(bt.cancel(id))
  local r1 = table.pack(bt.join(id, 5))
  lu.assertTrue(runtime.monotonic() - t0 < 2)
  lu.assertEquals({ r1[1], r1[2], r1[3] }, { true, nil, "cancelled" })
end

function TestRedisCalls:test_unix_socket_and_select()
  local s = redis.client("sock")
  lu.assertEquals(s:call("SET", "rt:sock", "via socket"), "OK")
  lu.assertStrContains(s:call("CLIENT", "INFO"), "db=3")
  lu.assertNil(r:call("GET", "rt:sock"))   -- db 0 is another keyspace
end

function TestRedisCalls:test_auth_user_password_and_db()
  lu.assertEquals(r:call("ACL", "SETUSER", "tester", "on", ">s@cret", "~*", "&*", "+@all"), "OK")
  local a = redis.client("acl")
  lu.assertEquals(a:call("PING"), "PONG")
  local info = a:call("CLIENT", "INFO")
  lu.assertStrContains(info, "user=tester")
  lu.assertStrContains(info, "db=2")
  local v, err = redis.client("badpw"):call("PING")
  lu.assertNil(v)
  lu.assertTrue(redis.ConnectionError:is_instance(err))
end

function TestRedisCalls:test_waits_in_place_in_a_coroutine()
  local co = coroutine.wrap(function() return r:call("ECHO", "in place") end)
  lu.assertEquals(co(), "in place")
end

TestRedisStore = {}

function TestRedisStore:test_integers_are_plain_decimal()
  local d = fresh("traps")
  d:set("n", 42)
  lu.assertEquals(r:call("GET", dkey("traps", "n")), "42")
  lu.assertEquals(r:call("INCRBY", dkey("traps", "n"), 8), 50)   -- INCRBY works on it
  lu.assertEquals(d:get("n"), 50)
  lu.assertEquals(math.type(d:get("n")), "integer")
  d:set("s", "42")   -- a string that looks like a number stays a string
  lu.assertEquals(d:get("s"), "42")
  lu.assertEquals(math.type(d:get("s")), nil)
  lu.assertNotEquals(r:call("GET", dkey("traps", "s")), "42")
end

function TestRedisStore:test_float_sum_stays_float_never_incrbyfloat()
  r:call("CONFIG", "RESETSTAT")
  local d = fresh("traps")
  d:set("f", 1.5)
  local v = d:incr("f", 1.5)
  lu.assertEquals(v, 3.0)
  lu.assertEquals(math.type(v), "float")
  lu.assertEquals(math.type(d:get("f")), "float")
  lu.assertEquals(d:incr("i", 0.5, 1), 1.5)
  lu.assertEquals(d:incr("i", 1), 2.5)
  lu.assertNotStrContains(r:call("INFO", "commandstats"), "cmdstat_incrbyfloat")
end

function TestRedisStore:test_ttl_zero_omits_px_and_sub_ms_rounds_up()
  local d = fresh("ttl")
  lu.assertTrue(d:set("forever", "v", 0))
  lu.assertEquals(r:call("PTTL", dkey("ttl", "forever")), -1)
  lu.assertTrue(d:set("tiny", "v", 0.0004))   -- 0.4 ms: stored with PX 1, gone soon
  local t0 = runtime.monotonic()
  while d:get("tiny") ~= nil and runtime.monotonic() - t0 < 2 do runtime.sleep(0.005) end
  lu.assertNil(d:get("tiny"))
  lu.assertTrue(d:set("sec", "v", 1.5))
  local pttl = r:call("PTTL", dkey("ttl", "sec"))
  lu.assertTrue(pttl > 500 and pttl <= 1500, "pttl " .. pttl)
  lu.assertTrue(d:add("a", 1, 1.5))
  pttl = r:call("PTTL", dkey("ttl", "a"))
  lu.assertTrue(pttl > 500 and pttl <= 1500, "pttl " .. pttl)
end

function TestRedisStore:test_incr_keeps_the_ttl()
  local d = fresh("ttl2")
  d:set("c", 1, 100)
  lu.assertEquals(d:incr("c", 1), 2)
  lu.assertTrue(r:call("PTTL", dkey("ttl2", "c")) > 90000)
  lu.assertEquals(d:incr("c", 0.5), 2.5)
  lu.assertTrue(r:call("PTTL", dkey("ttl2", "c")) > 90000)
  lu.assertEquals(d:incr("fresh", 1, 5), 6)
  lu.assertEquals(r:call("PTTL", dkey("ttl2", "fresh")), -1)
end

function TestRedisStore:test_add_is_set_nx()
  local d = fresh("add")
  lu.assertTrue(d:add("k", "first"))
  local ok, err = d:add("k", "second")
  lu.assertFalse(ok)
  lu.assertEquals(err, "exists")
  lu.assertEquals(d:get("k"), "first")
end

function TestRedisStore:test_keys_and_flush_stay_in_their_namespace()
  r:call("CONFIG", "RESETSTAT")
  local star, ab, a, ab2 = fresh("a*"), fresh("ab"), fresh("a"), fresh("a:b")
  star:set("x", 1)
  ab:set("y", 2)
  a:set("b:z", 3)    -- would be "a:b:z" without the length prefix
  ab2:set("z", 4)
  for i = 1, 30 do a:set("k" .. i, i) end
  lu.assertEquals(star:keys(0), { "x" })
  lu.assertEquals(ab2:keys(0), { "z" })
  lu.assertEquals(#a:keys(0), 31)
  lu.assertEquals(#a:keys(5), 5)
  lu.assertTrue(star:flush_all())
  lu.assertEquals(#star:keys(0), 0)
  lu.assertEquals(ab:get("y"), 2)
  lu.assertTrue(a:flush_all())
  lu.assertEquals(ab2:get("z"), 4)
  lu.assertNotStrContains(r:call("INFO", "commandstats"), "cmdstat_keys:")
  lu.assertStrContains(r:call("INFO", "commandstats"), "cmdstat_scan:")
end

function TestRedisStore:test_bounded_push_and_exact_pop_timeouts()
  local q = empty_queue("tiny")
  lu.assertTrue(q:push(1))
  lu.assertTrue(q:push(2))
  local ok, err = q:push(3, 0)
  lu.assertFalse(ok)
  lu.assertEquals(err, "full")
  local t0 = runtime.monotonic()
  ok, err = q:push(3, 0.1)
  lu.assertEquals(err, "full")
  lu.assertTrue(runtime.monotonic() - t0 >= 0.09)
  lu.assertEquals(q:len(), 2)
  -- a waiting push gets in once a pop makes room
  local id = bt.start_new_background_thread(function()
    require("runtime").sleep(0.1)
    return require("shared").queue("tiny"):pop(0)
  end)
  lu.assertTrue(q:push(3, 5))
  lu.assertEquals(select(2, bt.join(id, 5)), 1)
  lu.assertEquals({ q:pop(0), q:pop(0) }, { 2, 3 })
  -- pop(0) does not wait (BLPOP 0 would wait for ever)
  t0 = runtime.monotonic()
  local v, why = q:pop(0)
  lu.assertNil(v)
  lu.assertEquals(why, "timeout")
  lu.assertTrue(runtime.monotonic() - t0 < 0.1)
  t0 = runtime.monotonic()
  v, why = q:pop(0.15)
  local took = runtime.monotonic() - t0
  lu.assertEquals(why, "timeout")
  lu.assertTrue(took >= 0.14 and took < 1, "took " .. took)
end

function TestRedisStore:test_queue_values_are_versioned_neutral_format()
  local q = empty_queue("vq")
  q:push({ a = { 1, 2.0, "x\0y" }, t = true })
  local raw = r:call("LRANGE", qkey("vq"), 0, -1)
  lu.assertEquals(#raw, 1)
  lu.assertEquals(raw[1]:byte(1), 1)   -- version byte
  local got = q:pop(0)
  lu.assertEquals(got.a, { 1, 2.0, "x\0y" })
  lu.assertEquals(math.type(got.a[2]), "float")
  lu.assertTrue(got.t)
  r:call("RPUSH", qkey("vq"), "not ours")
  lu.assertErrorMsgContains("not a luahost value", q.pop, q, 0)
end

function TestRedisStore:test_functions_and_handles_refused()
  local q = empty_queue("rq")
  local ok, err = pcall(q.push, q, function() end)
  lu.assertFalse(ok)
  lu.assertTrue(bt.Error:is_instance(err))
  ok, err = pcall(q.push, q, { list = { 1, { d = shared.dict("x") } } })
  lu.assertFalse(ok)
  lu.assertTrue(bt.Error:is_instance(err))
  lu.assertStrContains(tostring(err), "value.list[2].d")
  lu.assertEquals(q:len(), 0)
end

-- A pop given up (cancel) while an item arrives: the item is either
-- received or still queued, never lost.
function TestRedisStore:test_cancelled_pops_lose_nothing()
  local q = empty_queue("race")
  local got, seen = 0, {}
  for i = 1, 25 do
    local id = bt.start_new_background_thread(function()
      return require("shared").queue("race"):pop(30)
    end)
    runtime.sleep(0.01 * (i % 3))
    q:push(i)
    bt.cancel(id)
    local ok, v = bt.join(id, 10)
    lu.assertTrue(ok)
    if v then got = got + 1; seen[v] = true end
  end
  lu.assertEquals(got + q:len(), 25)
  for _ = 1, q:len() do seen[q:pop(0)] = true end
  for i = 1, 25 do lu.assertTrue(seen[i], "item " .. i .. " lost") end
end

function TestRedisStore:test_pop_cancelled_in_a_thread_answers_cancelled()
  empty_queue("cq")
  local id = bt.start_new_background_thread(function()
    return require("shared").queue("cq"):pop()
  end)
  runtime.sleep(0.1)
  local t0 = runtime.monotonic()
  bt.cancel(id)
  local res = table.pack(bt.join(id, 5))
  lu.assertTrue(runtime.monotonic() - t0 < 2)
  lu.assertEquals({ res[1], res[2], res[3] }, { true, nil, "cancelled" })
end

function TestRedisStore:test_waiting_push_cancelled_in_a_thread()
  local q = empty_queue("tiny")
  q:push(1)
  q:push(2)
  local id = bt.start_new_background_thread(function()
    return require("shared").queue("tiny"):push(3, 30)
  end)
  runtime.sleep(0.1)
  local t0 = runtime.monotonic()
  bt.cancel(id)
  local res = table.pack(bt.join(id, 5))
  lu.assertTrue(runtime.monotonic() - t0 < 2)
  lu.assertEquals({ res[1], res[2], res[3] }, { true, false, "cancelled" })
  lu.assertEquals(q:len(), 2)
  lu.assertEquals({ q:pop(0), q:pop(0), (q:pop(0)) }, { 1, 2, nil })
end

function TestRedisStore:test_no_memory_at_maxmemory()
  local d = fresh("oom")
  local used = tonumber(r:call("INFO", "memory"):match("used_memory:(%d+)"))
  lu.assertEquals(r:call("CONFIG", "SET", "maxmemory", tostring(used + 300000)), "OK")
  lu.assertEquals(r:call("CONFIG", "SET", "maxmemory-policy", "noeviction"), "OK")
  local stored, err = 0, nil
  for i = 1, 1000 do
    local ok, e = d:set("k" .. i, string.rep("x", 10000))
    if not ok then err = e break end
    stored = i
  end
  -- stay over the limit for the other writes (a small write may fit in
  -- what the failed one's buffers gave back)
  local now = tonumber(r:call("INFO", "memory"):match("used_memory:(%d+)"))
  r:call("CONFIG", "SET", "maxmemory", tostring(now // 2))
  local add_ok, add_err = d:add("another", "y")
  local incr_v, incr_err = d:incr("counter", 1, 0)
  local push_ok, push_err = shared.queue("oomq"):push("v", 0)
  r:call("CONFIG", "SET", "maxmemory", "0")
  lu.assertEquals(err, "no memory")
  lu.assertTrue(stored > 5 and stored < 1000, "stored " .. stored)
  lu.assertEquals({ add_ok, add_err }, { false, "no memory" })
  lu.assertEquals({ incr_v, incr_err }, { false, "no memory" })
  lu.assertEquals({ push_ok, push_err }, { false, "no memory" })
  for i = 1, stored do lu.assertEquals(#d:get("k" .. i), 10000) end
  d:flush_all()
end

function TestRedisStore:test_unavailable_then_recovers()
  local d = fresh("avail")
  d:set("k", "v")
  -- Redis stops answering for 1.5 s: calls end within the 0.5 s timeout
  lu.assertEquals(r:call("CLIENT", "PAUSE", 1500, "ALL"), "OK")
  local t0 = runtime.monotonic()
  local v, err = d:get("k")
  local took = runtime.monotonic() - t0
  lu.assertNil(v)
  lu.assertStrContains(err, "store unavailable: ")
  lu.assertTrue(took < 1.5, "took " .. took)
  -- then it recovers by itself
  local deadline = runtime.monotonic() + 10
  repeat
    v, err = d:get("k")
    if v == nil then runtime.sleep(0.05) end
  until v ~= nil or runtime.monotonic() > deadline
  lu.assertEquals(v, "v")
end

-- Pub/sub (SPEC §14): r:subscribe / r:psubscribe on a connection of their own.
TestRedisPubSub = {}

function TestRedisPubSub:test_subscribe_read_in_order()
  local sub <close> = assert(r:subscribe("ps:a", "ps:b"))
  lu.assertStrContains(tostring(sub), "open")
  -- confirmed before subscribe returned: a publish made now is received
  lu.assertEquals(r:call("PUBLISH", "ps:a", "one"), 1)
  lu.assertEquals(r:call("PUBLISH", "ps:b", "two\0bin"), 1)
  lu.assertEquals(r:call("PUBLISH", "ps:a", 3), 1)
  lu.assertEquals(sub:read(5), { kind = "message", channel = "ps:a", data = "one" })
  lu.assertEquals(sub:read(5), { kind = "message", channel = "ps:b", data = "two\0bin" })
  lu.assertEquals(sub:read(5), { kind = "message", channel = "ps:a", data = "3" })
  local t0 = runtime.monotonic()
  lu.assertEquals({ sub:read(0.1) }, { nil, "timeout" })
  lu.assertTrue(runtime.monotonic() - t0 >= 0.09)
  lu.assertEquals({ sub:read(0) }, { nil, "timeout" })
end

function TestRedisPubSub:test_psubscribe_and_counts()
  local sub <close> = assert(r:psubscribe("ps:news.*"))
  lu.assertEquals(sub:subscribe("ps:direct"), 2)        -- a channel and a pattern
  lu.assertEquals(sub:psubscribe("ps:x.*", "ps:y.*"), 4)
  r:call("PUBLISH", "ps:news.today", "n")
  r:call("PUBLISH", "ps:direct", "d")
  lu.assertEquals(sub:read(5),
    { kind = "pmessage", pattern = "ps:news.*", channel = "ps:news.today", data = "n" })
  lu.assertEquals(sub:read(5), { kind = "message", channel = "ps:direct", data = "d" })
  lu.assertEquals(sub:unsubscribe("ps:direct"), 3)
  lu.assertEquals(sub:punsubscribe(), 0)                 -- every pattern
  lu.assertEquals(r:call("PUBLISH", "ps:direct", "gone"), 0)
  lu.assertEquals(r:call("PUBLISH", "ps:news.today", "gone"), 0)
  lu.assertEquals({ sub:read(0.05) }, { nil, "timeout" })
end

function TestRedisPubSub:test_unavailable_server_and_misuse()
  local sub, err = redis.client("down"):subscribe("ps:x")
  lu.assertNil(sub)
  lu.assertTrue(redis.ConnectionError:is_instance(err))
  lu.assertStrContains(tostring(err), "redis 'down'")
  lu.assertErrorMsgContains("r:subscribe", r.call, r, "SUBSCRIBE", "ps:x")
  lu.assertErrorMsgContains("a channel or pattern expected", r.subscribe, r)
  lu.assertErrorMsgContains("string expected, got table", r.subscribe, r, {})
  local s = assert(r:subscribe("ps:c"))
  s:close()
  s:close()                                              -- twice is fine
  lu.assertErrorMsgContains("closed", s.read, s, 0)
  lu.assertErrorMsgContains("closed", s.subscribe, s, "ps:d")
  lu.assertStrContains(tostring(s), "closed")
end

function TestRedisPubSub:test_connection_killed_is_connection_error()
  local sub <close> = assert(r:subscribe("ps:kill"))
  r:call("PUBLISH", "ps:kill", "before")
  runtime.sleep(0.1)                                     -- "before" is read and kept
  lu.assertTrue(r:call("CLIENT", "KILL", "TYPE", "pubsub") >= 1)
  lu.assertEquals(sub:read(5), { kind = "message", channel = "ps:kill", data = "before" })
  local v, err = sub:read(5)
  lu.assertNil(v)
  lu.assertTrue(redis.ConnectionError:is_instance(err))
  lu.assertStrContains(tostring(err), "closed the connection")
  local n, err2 = sub:subscribe("ps:more")
  lu.assertNil(n)
  lu.assertTrue(redis.ConnectionError:is_instance(err2))
end

function TestRedisPubSub:test_slow_reader_ends_after_what_was_kept()
  local sub <close> = assert(r:subscribe("ps:flood"))
  r:pipeline(function(p) for i = 1, 1100 do p:call("PUBLISH", "ps:flood", i) end end)
  runtime.sleep(0.3)                                     -- all of them reach the subscriber
  local got, err = 0, nil
  while true do
    local m, e = sub:read(5)
    if not m then err = e; break end
    got = got + 1
    lu.assertEquals(m.data, tostring(got))
  end
  lu.assertEquals(got, 1024)
  lu.assertTrue(redis.ConnectionError:is_instance(err))
  lu.assertStrContains(tostring(err), "reads too slowly")
end

function TestRedisPubSub:test_subscriber_in_a_background_thread()
  local ready = empty_queue("ps:ready")
  local id = bt.start_new_background_thread(function()
    local rr = require("redis").client("main")
    local s = assert(rr:subscribe("ps:bt"))
    require("shared").queue("ps:ready"):push(true)
    local got = {}
    for _ = 1, 2 do got[#got + 1] = assert(s:read(10)).data end
    s:close()
    return table.concat(got, ",")
  end)
  lu.assertTrue(ready:pop(10))
  r:call("PUBLISH", "ps:bt", "x")
  r:call("PUBLISH", "ps:bt", "y")
  lu.assertEquals({ bt.join(id, 10) }, { true, "x,y" })
end

function TestRedisPubSub:test_read_cancelled_in_a_thread()
  local ready = empty_queue("ps:ready2")
  local id = bt.start_new_background_thread(function()
    local s = assert(require("redis").client("main"):subscribe("ps:never"))
    require("shared").queue("ps:ready2"):push(true)
    return s:read()
  end)
  lu.assertTrue(ready:pop(10))
  runtime.sleep(0.05)
  bt.cancel(id)
  local res = table.pack(bt.join(id, 5))
  lu.assertEquals({ res[1], res[2], res[3] }, { true, nil, "cancelled" })
end
