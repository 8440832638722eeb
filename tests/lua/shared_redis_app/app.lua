-- test_shared.lua again, with shared on Redis (tests/redis_env.sh gives
-- the server): the same suite must hold on both stores.
return {
  redis = { main = os.getenv("LUAHOST_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0" },
  shared = { store = "main", dicts = { small = "8k" }, queues = { tiny = 2 } },
}
