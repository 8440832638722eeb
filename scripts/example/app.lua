-- The bundled example app: `luahost serve` with no APP_DIR serves it.
-- `luahost serve --role backend` also runs its /_ah/start handler, which
-- starts a background worker thread fed by /enqueue (see worker.lua).
return {
  listen = "127.0.0.1:8080",
  shared = { dicts = { stats = "1m", notes = "1m" }, queues = { jobs = 1000 } },
  handlers = {
    { url = "^/static/", static_dir = "public" },
    -- routes with methods and captures: GET/POST /notes, GET/DELETE /notes/7
    -- (any other method answers 405 with Allow)
    { url = "^/notes$", script = "notes", methods = { "GET", "POST" } },
    { url = "^/notes/(%d+)$", script = "note", methods = { "GET", "DELETE" } },
    { url = "^/form$", script = "form_page", methods = { "GET" } },   -- an HTML form
    { url = "^/upload$", script = "upload", methods = { "POST" } },   -- multipart files
    { url = "^/prefs$", script = "prefs", methods = { "GET", "POST" } },   -- cookies
    { url = "^/sleep$", script = "sleepy" },
    { url = "^/echo$", script = "echo" },
    { url = "^/_ah/start$", script = "start" },
    { url = "^/_ah/stop$", script = "stop" },
    { url = "^/enqueue$", script = "enqueue" },
    { url = "^/jobs$", script = "jobs" },
    { url = "^/$", script = "main" },   -- only "/": elsewhere 404 (or 405 above)
  },
}
