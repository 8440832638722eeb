return {
  request_deadline = 1,
  memory_limit = "8m",
  handlers = {
    { url = "^/static/", static_dir = "public" },
    { url = "^/users/(%d+)$", script = "users" },
    { url = "^/fail$", script = "fail" },
    { url = "^/", script = "main" },
  },
}
