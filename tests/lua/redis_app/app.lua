-- The app of test_redis.lua: `main` is the redis-server tests/redis_env.sh
-- started (its URL in LUAHOST_TEST_REDIS_URL), `down` a port nothing
-- listens on; shared lives on `main`.
return {
  redis = {
    main = os.getenv("LUAHOST_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0",
    down = "redis://127.0.0.1:1/0",
  },
  store_prefix = "lt",
  shared = { store = "main", timeout = 0.5, queues = { tiny = 2 } },
}
