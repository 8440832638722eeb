return {
  request_deadline = 1,
  memory_limit = "8m",
  max_body = "64k",
  shared = { dicts = { small = "8k" }, queues = { tiny = 2 } },
  handlers = {
    { url = "^/static/", static_dir = "public" },
    { url = "^/users/(%d+)$", script = "users" },
    { url = "^/fail$", script = "fail" },
    { url = "^/", script = "main" },
  },
}
