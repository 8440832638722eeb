-- The bundled example app: `luahost serve` with no APP_DIR serves it.
-- `luahost serve --role backend` also runs its /_ah/start handler, which
-- starts a background worker thread fed by /enqueue (see worker.lua).
return {
  listen = "127.0.0.1:8080",
  shared = { dicts = { stats = "1m" }, queues = { jobs = 1000 } },
  handlers = {
    { url = "^/static/", static_dir = "public" },
    { url = "^/sleep$", script = "sleepy" },
    { url = "^/echo$", script = "echo" },
    { url = "^/_ah/start$", script = "start" },
    { url = "^/_ah/stop$", script = "stop" },
    { url = "^/enqueue$", script = "enqueue" },
    { url = "^/jobs$", script = "jobs" },
    { url = "^/", script = "main" },
  },
}
