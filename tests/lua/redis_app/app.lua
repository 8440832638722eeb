-- The app of test_redis.lua: `main` is the redis-server tests/redis_env.sh
-- started (its URL in LUAHOST_TEST_REDIS_URL), `down` a port nothing
-- listens on, `sock` the same server through its unix socket, `acl` the
-- same server as user "tester" (made by the test before first use) on db 2;
-- shared lives on `main`.
local port = os.getenv("LUAHOST_TEST_REDIS_PORT") or "6379"
return {
  redis = {
    main = os.getenv("LUAHOST_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0",
    down = "redis://127.0.0.1:1/0",
    sock = "unix://" .. (os.getenv("LUAHOST_TEST_REDIS_SOCK") or "/tmp/redis.sock") .. "?db=3",
    acl = "redis://tester:s%40cret@127.0.0.1:" .. port .. "/2",
    badpw = "redis://tester:wrong@127.0.0.1:" .. port .. "/0",
  },
  store_prefix = "lt",
  shared = { store = "main", timeout = 0.5, queues = { tiny = 2 } },
}
