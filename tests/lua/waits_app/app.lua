-- The app of tests/lua/test_waits.lua: every wait kind from a handler.
return {
  role = "backend",
  request_deadline = 1,
  shared = { queues = { empty = 10, full = 1 } },
  handlers = { { url = "^/wait$", script = "waits" } },
}
