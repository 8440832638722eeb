"""Static files (SPEC §3 `static_dir`, §8): URL prefix maps to a directory
under the app, content type by extension, HEAD, 404 for missing files and
for anything outside the directory (.., encoded .., symlinks)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, Symlink  # noqa: E402

CSS = b"body { color: red; }\n"
HTML = b"<!doctype html><p>hi</p>\n"
JS = b"console.log(1);\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
JSON_DATA = b'{"a": 1}\n'
BIG = bytes(range(256)) * 1200

FILES = {
    "app.lua": r'''
        return {
          handlers = {
            {url = "^/static/", static_dir = "public"},
            {url = "^/hello$", script = "hello"},
          },
        }
    ''',
    "hello.lua": harness.HELLO_LUA,
    "public/a/b.css": CSS,
    "public/index.html": HTML,
    "public/app.js": JS,
    "public/img.png": PNG,
    "public/data.json": JSON_DATA,
    "public/big.bin": BIG,
    "public/space name.txt": b"spaced\n",
    "public/blob.unknownext": b"\x00\x01\x02",
    "secret.txt": b"TOPSECRET outside\n",
    "private/inner.txt": b"TOPSECRET inner\n",
    "public/link_out.txt": Symlink("../secret.txt"),
    "public/link_abs.txt": Symlink("/etc/passwd"),
    "public/outdir": Symlink("../private"),
}

TYPES = {
    "/static/a/b.css": (CSS, "text/css"),
    "/static/index.html": (HTML, "text/html; charset=utf-8"),
    "/static/app.js": (JS, "application/javascript"),
    "/static/img.png": (PNG, "image/png"),
    "/static/data.json": (JSON_DATA, "application/json"),
    "/static/big.bin": (BIG, "application/octet-stream"),
    "/static/blob.unknownext": (b"\x00\x01\x02", "application/octet-stream"),
}

TRAVERSALS = [
    "/static/../secret.txt",
    "/static/a/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/a/%2e%2e/%2e%2e/secret.txt",
    "/static/%2e%2e/private/inner.txt",
    "/static/../../../../../../../../etc/passwd",
    "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/link_out.txt",
    "/static/link_abs.txt",
    "/static/outdir/inner.txt",
]


class StaticTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(FILES)

    def test_content_types_and_bodies(self):
        for path, (body, ctype) in TYPES.items():
            with self.subTest(path=path):
                r = self.srv.get(path)
                self.assertOK(r, body)
                self.assertHeader(r, "content-length", str(len(body)))
                got = r.header("content-type") or ""
                if ";" in ctype:
                    self.assertEqual(got, ctype)
                else:
                    self.assertEqual(got.split(";")[0].strip(), ctype, repr(r))
                self.assertTrue(r.header("x-request-id"))

    def test_query_string_ignored_for_file_lookup(self):
        self.assertOK(self.srv.get("/static/a/b.css?v=123"), CSS)

    def test_percent_decoded_file_name(self):
        self.assertOK(self.srv.get("/static/space%20name.txt"), b"spaced\n")

    def test_head_static(self):
        with self.srv.connect() as c:
            c.send(build_request("HEAD", "/static/big.bin"))
            h = c.read_response("HEAD")
            self.assertStatus(h, 200)
            self.assertHeader(h, "content-length", str(len(BIG)))
            c.send(build_request("GET", "/static/a/b.css"))
            self.assertOK(c.read_response(), CSS)

    def test_keep_alive_static(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/static/app.js")
                   + build_request("GET", "/static/img.png"))
            self.assertOK(c.read_response(), JS)
            self.assertOK(c.read_response(), PNG)

    def test_missing_file_is_404(self):
        for path in ("/static/nope.css", "/static/a/nope/deeper.js"):
            with self.subTest(path=path):
                self.assertStatus(self.srv.get(path), 404)

    def test_directory_without_index_is_not_listed(self):
        for path in ("/static/a", "/static/a/"):
            with self.subTest(path=path):
                r = self.srv.get(path)
                self.assertIn(r.status, (403, 404), repr(r))
                self.assertNotIn(b"b.css", r.body)

    def test_directory_with_index_serves_index_or_nothing(self):
        # Serving index.html for a directory is allowed; a listing is not.
        r = self.srv.get("/static/")
        if r.status == 200:
            self.assertEqual(r.body, HTML)
            self.assertHeader(r, "content-type", "text/html; charset=utf-8")
        else:
            self.assertIn(r.status, (403, 404), repr(r))

    def test_traversal_and_outside_symlinks_are_404(self):
        for path in TRAVERSALS:
            with self.subTest(path=path):
                r = self.srv.get(path)
                self.assertStatus(r, 404)
                self.assertNotIn(b"TOPSECRET", r.body)
                self.assertNotIn(b"root:", r.body)
        self.assertServes(self.srv)

    def test_large_file(self):
        big = bytes(range(251)) * (5 * 1024 * 1024 // 251)
        with open(os.path.join(self.srv.app_dir, "public", "large.bin"), "wb") as f:
            f.write(big)
        r = self.srv.get("/static/large.bin", timeout=20)
        self.assertOK(r, big)

    def test_fifo_is_not_opened(self):
        # A FIFO in static_dir must not hang a worker (open would block).
        path = os.path.join(self.srv.app_dir, "public", "pipe.txt")
        os.mkfifo(path)
        try:
            r = self.srv.get("/static/pipe.txt", timeout=5)
            self.assertIn(r.status, (403, 404), repr(r))
        finally:
            # unblock a host that did open it for reading
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        self.assertServes(self.srv)

    def test_nul_in_path_is_refused(self):
        r = self.srv.get("/static/a/b.css%00.png")
        self.assertIn(r.status, (400, 404), repr(r))
        self.assertServes(self.srv)


if __name__ == "__main__":
    unittest.main()
