"""Writing apps (SPEC §12): routes checked at start-up (exit 2 naming the
route), methods and 405 with Allow, captures, forms, uploads, cookies,
repeated response headers, 204/304/HEAD framing, start-up messages."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, run_luahost  # noqa: E402

ROUTES_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lua",
                          "routes_app")


def multipart(boundary, parts):
    """A body as curl -F writes it: parts are (name, filename|None, type|None, bytes)."""
    out = bytearray()
    for name, filename, ctype, body in parts:
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            out += b'; filename="' + filename + b'"'
        out += b"\r\n"
        if ctype is not None:
            out += b"Content-Type: " + ctype + b"\r\n"
        out += b"\r\n" + body + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return bytes(out)


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


class RoutesOverHttp(harness.ServerTestCase):
    """tests/lua/routes_app served for real: what the wire carries."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server({}, ["--workers", "2"], app_dir=ROUTES_APP)

    def post(self, target, ctype, body, conn=None):
        headers = {"Content-Type": ctype}
        if conn is None:
            return self.srv.request("POST", target, headers, body)
        conn.send(build_request("POST", target, headers, body))
        return conn.read_final_response("POST")

    def assert_still_serving(self):
        r = self.post("/form", "application/x-www-form-urlencoded", "ok=1")
        self.assertOK(r, "ok=1\nfiles=0")

    def test_405_with_allow(self):
        r = self.srv.request("POST", "/items/7")
        self.assertStatus(r, 405)
        self.assertEqual(r.header("Allow"), "GET, HEAD, PUT, DELETE")
        r = self.srv.request("DELETE", "/both")
        self.assertStatus(r, 405)
        self.assertEqual(r.header("Allow"), "PUT, PATCH, GET, HEAD")
        self.assertStatus(self.srv.request("POST", "/nowhere"), 404)

    def test_captures_and_methods(self):
        self.assertOK(self.srv.request("PUT", "/items/42"), "PUT item 42 (1 capture)")
        self.assertOK(self.srv.get("/files/report.2024.pdf"), "GET [string:report.2024,string:pdf]")
        self.assertOK(self.srv.get("/pos/x"), "GET [integer:6,integer:7]")
        self.assertOK(self.srv.get("/plain"), "GET []")

    def test_head_has_get_length_and_no_body(self):
        get = self.srv.get("/status/200")
        self.assertOK(get, "a body that must not be sent")
        with self.srv.connect() as c:
            c.send(build_request("HEAD", "/status/200"))
            head = c.read_final_response("HEAD")
            self.assertStatus(head, 200)
            self.assertEqual(head.body, b"")
            self.assertEqual(head.header("Content-Length"), str(len(get.body)))
            # the connection's framing holds: the next answer is the next request's
            c.send(build_request("GET", "/plain"))
            self.assertOK(c.read_final_response(), "GET []")

    def test_204_304_without_type_length_or_body(self):
        for code in (204, 304):
            for q in ("", "?type=1"):
                with self.srv.connect() as c:
                    c.send(build_request("GET", "/status/%d%s" % (code, q)))
                    r = c.read_final_response()
                    self.assertStatus(r, code)
                    self.assertIsNone(r.header("Content-Type"), r.raw_head)
                    self.assertIsNone(r.header("Content-Length"), r.raw_head)
                    self.assertEqual(r.header("x-status"), str(code))
                    c.send(build_request("GET", "/plain"))
                    self.assertOK(c.read_final_response(), "GET []")

    def test_repeated_headers(self):
        r = self.srv.get("/multi")
        self.assertOK(r, "multi")
        self.assertEqual(r.header_all("Set-Cookie"), ["a=1; Path=/", "b=2"])
        self.assertEqual(r.header_all("x-list"), ["one", "3"])
        self.assertNotIn(b"Injected", r.raw_head)
        self.assertIsNotNone(self.srv.err.wait_for(
            lambda l: "invalid response header 'x-list' dropped" in l, 5))

    def test_cookies(self):
        r = self.srv.get("/cookies?set=x,y", headers={"Cookie": 'a=1; b="two words"; a=3'})
        self.assertOK(r, "a=3;b=two words;")
        self.assertEqual(r.header_all("Set-Cookie"), ["x=1; Path=/", "y=1; Path=/"])

    def test_two_cookie_lines_are_one_cookie_header(self):
        # joined with "; " as a Cookie header's pairs are, not ", "
        with self.srv.connect() as c:
            c.send(b"GET /cookies HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n")
            self.assertOK(c.read_response(), "a=1;b=2;")

    def test_urlencoded_form_as_curl_d_sends_it(self):
        r = self.post("/form", "application/x-www-form-urlencoded",
                      "title=hello+world&note=caf%C3%A9")
        self.assertOK(r, "note=caf\u00e9\ntitle=hello world\nfiles=0")

    def test_multipart_upload(self):
        data = bytes(range(256)) * 400          # 100 KiB with CR, LF, NUL and dashes
        boundary = b"------------------------d74496d66958873e"
        body = multipart(boundary, [(b"title", None, None, b"hello"),
                                    (b"upload", b"data.bin", b"application/octet-stream", data)])
        r = self.post("/upload", "multipart/form-data; boundary=" + boundary.decode(), body)
        self.assertStatus(r, 201)
        want = (b"upload|data.bin|application/octet-stream|%d|" % len(data)) + data + \
            b"\nfield title=hello"
        self.assertEqual(r.body, want)

    def test_hostile_bodies_answer_400_or_413_and_serving_goes_on(self):
        cases = [
            (b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nnever closed", 400,
             "multipart boundary never closed"),
            (b"--b\r\n\r\nno headers\r\n--b--\r\n", 400, "multipart part without headers"),
            (b"--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: " + b"x" * 70000 +
             b"\r\n\r\nv\r\n--b--", 400, "over 64 KiB"),
            (multipart(b"b", [(b"p%d" % i, None, None, b"") for i in range(10000)]), 413,
             "too many multipart parts"),
        ]
        with self.srv.connect() as c:   # all on one keep-alive connection
            for body, status, why in cases:
                with self.subTest(why=why):
                    r = self.post("/upload", "multipart/form-data; boundary=b", body, conn=c)
                    self.assertStatus(r, status)
                    self.assertIn(why, r.text)
                    self.assertNotIn("traceback", r.text)
            c.send(build_request("GET", "/plain"))
            self.assertOK(c.read_final_response(), "GET []")
        self.assert_still_serving()

    def test_part_larger_than_max_body_is_413(self):
        body = multipart(b"b", [(b"f", b"big", None, b"x" * (1024 * 1024 + 1))])
        r = self.post("/upload", "multipart/form-data; boundary=b", body)
        self.assertStatus(r, 413)
        self.assert_still_serving()


@unittest.skipUnless(shutil.which("curl"), "curl is not installed")
class WithRealCurl(harness.ServerTestCase):
    """What curl itself sends: -d, -F with files, -I, -b."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server({}, ["--workers", "1"], app_dir=ROUTES_APP)

    def curl(self, *args):
        p = subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args), check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p.stdout

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.srv.port, path)

    def test_curl_d_form(self):
        self.assertEqual(self.curl("-d", "title=hello+world", "-d", "note=a%26b",
                                   self.url("/form")), b"note=a&b\ntitle=hello world\nfiles=0")

    def test_curl_F_upload(self):
        d = tempfile.mkdtemp(prefix="luahost-curl-")
        self.addCleanup(shutil.rmtree, d, True)
        data = bytes(range(256)) * 64 + b"\r\n--tail"
        with open(os.path.join(d, "data.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(d, "a.csv"), "wb") as f:
            f.write(b"x,y\n1,2\n")
        out = self.curl("-F", "title=two files", "-F", "bin=@" + os.path.join(d, "data.bin"),
                        "-F", "csv=@" + os.path.join(d, "a.csv") + ";type=text/csv",
                        self.url("/upload"))
        want = (b"bin|data.bin|application/octet-stream|%d|" % len(data)) + data + \
            b"\ncsv|a.csv|text/csv|8|x,y\n1,2\n\nfield title=two files"
        self.assertEqual(out, want)

    def test_curl_head_and_cookies(self):
        head = self.curl("-I", self.url("/status/200"))
        self.assertRegex(head, rb"(?i)content-length: 28\r\n")
        self.assertTrue(head.endswith(b"\r\n\r\n"), head)
        self.assertEqual(self.curl("-b", "sid=abc; theme=dark", self.url("/cookies")),
                         b"sid=abc;theme=dark;")
        verbose = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null",
                                  self.url("/cookies?set=a,b")],
                                 stdout=subprocess.PIPE, check=True).stdout
        self.assertEqual(len([l for l in verbose.split(b"\r\n")
                              if l.lower().startswith(b"set-cookie:")]), 2, verbose)


class StartupMessages(harness.ServerTestCase):

    def test_worker_plurals(self):
        for n, word in ((1, "1 worker,"), (2, "2 workers,")):
            srv = self.start_server({"main.lua": harness.HELLO_LUA}, ["--workers", str(n)])
            line = srv.err.wait_for(lambda l: "listening on" in l, 5)
            self.assertIn(word, line)

    def test_load_errors_once_per_instance_without_useless_tracebacks(self):
        srv = self.start_server({
            "app.lua": """return { handlers = { {url = "^/bad$", script = "bad"},
                {url = "^/boom$", script = "boom"}, {url = "^/", script = "main"} } }""",
            "bad.lua": "return function(req\n",
            "boom.lua": "local function f() error('boom at load') end\nf()\n",
            "main.lua": harness.HELLO_LUA}, ["--workers", "3"])
        self.assertOK(srv.get("/"), "hello")
        for _ in range(3):
            self.assertStatus(srv.get("/bad"), 500)
            self.assertStatus(srv.get("/boom"), 500)
        srv.stop()
        text = srv.stderr_text()
        # each request is one short line; the load error is not repeated
        self.assertEqual(text.count("failed to load"), 2, text)
        self.assertEqual(text.count("handler script 'bad' is not loaded"), 3, text)
        self.assertNotIn("[C]: in ?", text)
        head = text[:text.index("listening on")]
        self.assertEqual(head.count("handler script 'bad' failed to load"), 1, head)
        self.assertEqual(head.count("handler script 'boom' failed to load"), 1, head)
        self.assertIn("')' expected near <eof>", head)
        self.assertNotIn("[C]: in ?", head)
        # the syntax error has no traceback; the runtime error keeps its Lua frames
        bad = head[head.index("script 'bad'"):head.index("script 'boom'")
                   if head.index("script 'boom'") > head.index("script 'bad'") else None]
        self.assertNotIn("stack traceback", bad)
        boom = head[head.index("script 'boom'"):]
        self.assertIn("boom.lua:2: in main chunk", boom)


if __name__ == "__main__":
    unittest.main()
