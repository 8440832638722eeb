"""Writing apps (SPEC §12): routes checked at start-up (exit 2 naming the
route), methods and 405 with Allow, captures, forms, uploads, cookies,
repeated response headers, 204/304/HEAD framing, start-up messages."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import run_luahost  # noqa: E402


class StartupChecks(harness.ServerTestCase):
    """Bad routes never reach a request: exit 2 with a message naming them."""

    def serve_fails(self, app_lua, files=None):
        tree = {"app.lua": app_lua, "main.lua": harness.HELLO_LUA}
        tree.update(files or {})
        d = harness.app_dir(self, tree)
        p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=10)
        self.assertEqual(p.returncode, 2, "stderr: " + p.stderr)
        self.assertNotIn("listening on", p.stderr)
        return p.stderr

    def test_unfinished_capture_names_the_route(self):
        err = self.serve_fails('''return { handlers = {
            {url = "^/a$", script = "main"}, {url = "^/b$", script = "main"},
            {url = "^/(", script = "main"} } }''')
        self.assertIn("handlers[3].url: malformed pattern (unfinished capture)", err)

    def test_other_malformed_patterns(self):
        for url, why in [("^/x%", "malformed pattern (ends with '%')"),
                         ("^/[a-z", "malformed pattern (missing ']')"),
                         ("^/)", "invalid pattern capture"),
                         ("^/(a)%2", "invalid capture index %2")]:
            with self.subTest(url=url):
                err = self.serve_fails('return { handlers = {{url = [=[%s]=], script = "main"}} }'
                                       % url)
                self.assertIn("handlers[1].url: " + why, err)

    def test_script_shadowing_a_library(self):
        err = self.serve_fails('''return { handlers = {
            {url = "^/a$", script = "main"}, {url = "^/", script = "debug"} } }''',
                               {"debug.lua": "return function() return 'x' end\n"})
        self.assertIn("handlers[2].script: 'debug' shadows Lua's debug library; "
                      "rename the module", err)
        err = self.serve_fails('return { handlers = {{url = "^/", script = "json"}} }')
        self.assertIn("handlers[1].script: 'json' shadows the host's json module", err)

    def test_method_that_is_not_a_token(self):
        err = self.serve_fails('''return { handlers = {
            {url = "^/", script = "main", methods = {"GET", "PO ST"}} } }''')
        self.assertIn("handlers[1].methods[2]", err)
        self.assertIn("PO ST", err)
        err = self.serve_fails('''return { handlers = {
            {url = "^/", script = "main", methods = "GET"} } }''')
        self.assertIn("handlers[1].methods", err)

    def test_valid_routes_start(self):
        srv = self.start_server({"app.lua": '''return { handlers = {
            {url = "^/users/(%d+)$", script = "main", methods = {"get", "POST"}},
            {url = "[]]", script = "main"}, {url = "^/", script = "main"} } }''',
                                 "main.lua": harness.HELLO_LUA})
        self.assertEqual(srv.get("/").status, 200)


if __name__ == "__main__":
    unittest.main()
