-- The demo app tools/cluster runs on every instance: shared lives on the
-- Redis server tools/cluster started (its URL in LUAHOST_REDIS_URL).
return {
  redis = { main = os.getenv("LUAHOST_REDIS_URL") or "redis://127.0.0.1:6379/0" },
  store_prefix = "cluster",
  -- on SIGTERM: 2 s of /_ah/health answering 503 (HAProxy checks every
  -- 0.5 s and takes an instance out after 2 failures) before shutdown
  drain = 2,
  shared = { store = "main", timeout = 1, queues = { jobs = 100000 } },
  handlers = {
    { url = "^/_ah/start$", script = "start" },
    { url = "^/counter$", script = "counter" },
    { url = "^/enqueue$", script = "enqueue" },
    { url = "^/jobs$", script = "jobs" },
    { url = "^/", script = "hello" },
  },
}
