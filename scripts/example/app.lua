-- The bundled example app: `luahost serve` with no APP_DIR serves it.
return {
  listen = "127.0.0.1:8080",
  handlers = {
    { url = "^/static/", static_dir = "public" },
    { url = "^/sleep$", script = "sleepy" },
    { url = "^/echo$", script = "echo" },
    { url = "^/", script = "main" },
  },
}
