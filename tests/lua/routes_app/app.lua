-- The app of tests/lua/test_routes.lua and tests/e2e/test_routes.py
-- (SPEC §12): methods, captures, forms, uploads, cookies, headers.
return {
  max_body = "1m",
  shared = { queues = { reqs = 4 } },
  handlers = {
    { url = "^/items/(%d+)$", script = "items", methods = { "GET", "PUT", "DELETE" } },
    { url = "^/items$", script = "items", methods = { "get", "POST" } },
    { url = "^/files/(.-)%.(%w+)$", script = "captures" },
    { url = "^/pos/()x()$", script = "captures" },
    { url = "^/plain$", script = "captures" },
    { url = "^/literal/", script = "captures" },
    { url = "^/both$", script = "items", methods = { "PUT" } },
    { url = "^/both$", script = "captures", methods = { "PATCH", "PUT", "GET" } },
    { url = "^/form$", script = "form" },
    { url = "^/upload$", script = "upload", methods = { "POST" } },
    { url = "^/cookies$", script = "cookies" },
    { url = "^/status/(%d+)$", script = "status" },
    { url = "^/multi$", script = "multi" },
    { url = "^/catch$", script = "catch", methods = { "POST" } },
    { url = "^/copy/(%w+)$", script = "copy" },
    { url = "^/static/", static_dir = "public", methods = { "GET" } },
  },
}
