-- The app of tests/lua/test_urlfetch.lua.
return {
  role = "backend",
  request_deadline = 1,
  memory_limit = "16m",
  handlers = { { url = "^/proxy$", script = "proxy" } },
}
