"""HTTP/1.1 behaviour of `luahost serve`: framing, keep-alive, pipelining,
chunked bodies, HEAD, 100-continue, HTTP/1.0, reserved /_ah/ paths and the
req fields a handler sees."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, chunked  # noqa: E402

IMF_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT$")

BIG_LUA = r'''
local chunk = {}
for i = 0, 255 do chunk[#chunk + 1] = string.char(i) end
chunk = table.concat(chunk)              -- 256 bytes, every byte value
local big = string.rep(chunk, 4096)      -- 1 MiB
return function(req) return 200, {["content-type"] = "application/octet-stream"}, big end
'''

FILES = {
    "app.lua": r'''
        return {
          workers = 2,
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/echo", script = "echo"},
            {url = "^/raw$", script = "raw"},
            {url = "^/big$", script = "big"},
            {url = "^/status$", script = "status"},
            {url = "^/badheaders$", script = "badheaders"},
          },
        }
    ''',
    "jsonenc.lua": harness.JSON_LUA,
    "echo.lua": harness.ECHO_LUA,
    "raw.lua": harness.RAW_ECHO_LUA,
    "hello.lua": harness.HELLO_LUA,
    "big.lua": BIG_LUA,
    "status.lua": r'''
        return function(req)
          return tonumber(req.args.code), req.args.body or ""
        end
    ''',
    # Header values a handler should not be able to smuggle onto the wire.
    "badheaders.lua": r'''
        return function(req)
          if req.args.kind == "crlf" then
            return 200, {["x-bad"] = "a\r\nInjected: yes"}, "body"
          elseif req.args.kind == "name" then
            return 200, {["x-bad\r\nInjected"] = "yes"}, "body"
          else -- a wrong content-length from the handler
            return 200, {["content-length"] = "100"}, "abc"
          end
        end
    ''',
}

BIG_BODY = bytes(range(256)) * 4096


class HttpTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(FILES)

    def test_plain_get_has_required_headers(self):
        r = self.srv.get("/hello")
        self.assertOK(r, b"hello")
        self.assertEqual(r.version, "HTTP/1.1", repr(r))
        self.assertHeader(r, "content-length", "5")
        self.assertHeader(r, "content-type", "text/plain; charset=utf-8")
        self.assertEqual(len(r.header_all("content-length")), 1, repr(r))
        self.assertRegex(r.header("date") or "", IMF_DATE)
        self.assertTrue(r.header("x-request-id"), repr(r))

    def test_request_fields(self):
        r = self.srv.request(
            "POST", "/echo/sub?a=1&b=x%20y&a=2",
            headers=[("X-Custom-Header", "Some Value"),
                     ("Content-Type", "text/plain")],
            body=b"payload")
        self.assertOK(r)
        j = r.json()
        self.assertEqual(j["method"], "POST")
        self.assertEqual(j["path"], "/echo/sub")
        self.assertEqual(j["query"], "a=1&b=x%20y&a=2")
        self.assertEqual(j["args"], {"a": "2", "b": "x y"})
        self.assertEqual(j["headers"].get("x-custom-header"), "Some Value", j)
        self.assertEqual(j["headers"].get("content-type"), "text/plain", j)
        self.assertNotIn("X-Custom-Header", j["headers"])
        self.assertEqual(j["body"], "payload")
        self.assertEqual(j["http_version"], "1.1")
        self.assertTrue(str(j["remote_addr"]).startswith("127.0.0.1"), j)
        self.assertEqual(j["request_id"], r.header("x-request-id"), repr(r))

    def test_request_ids_unique(self):
        ids = set()
        for _ in range(10):
            r = self.srv.get("/echo")
            self.assertOK(r)
            rid = r.header("x-request-id")
            self.assertTrue(rid)
            self.assertEqual(r.json()["request_id"], rid)
            ids.add(rid)
        self.assertEqual(len(ids), 10, ids)

    def test_keep_alive_sequential_requests(self):
        with self.srv.connect() as c:
            for i in range(20):
                c.send(build_request("GET", "/echo/%d" % i))
                r = c.read_response()
                self.assertOK(r)
                self.assertEqual(r.json()["path"], "/echo/%d" % i)
                self.assertNotEqual((r.header("connection") or "").lower(),
                                    "close", repr(r))

    def test_pipelining_responses_in_order(self):
        data = (build_request("GET", "/echo/1")
                + build_request("POST", "/echo/2", body=b"second")
                + build_request("GET", "/echo/3?x=3"))
        with self.srv.connect() as c:
            c.send(data)
            got = []
            for _ in range(3):
                r = c.read_response()
                self.assertOK(r)
                got.append((r.json()["path"], r.json()["body"]))
        self.assertEqual(got, [("/echo/1", ""), ("/echo/2", "second"),
                               ("/echo/3", "")])

    def test_pipelining_mixed_handlers(self):
        data = (build_request("GET", "/hello") + build_request("HEAD", "/hello")
                + build_request("GET", "/big") + build_request("GET", "/hello"))
        with self.srv.connect() as c:
            c.send(data)
            self.assertOK(c.read_response(), b"hello")
            h = c.read_response("HEAD")
            self.assertStatus(h, 200)
            self.assertHeader(h, "content-length", "5")
            self.assertOK(c.read_response(), BIG_BODY)
            self.assertOK(c.read_response(), b"hello")

    def test_chunked_request_body(self):
        req = build_request("POST", "/raw",
                            headers=[("Transfer-Encoding", "chunked")]) \
            + chunked(b"hello", b" ", b"chunked " * 100, b"world")
        with self.srv.connect() as c:
            c.send(req)
            r = c.read_response()
        self.assertOK(r, b"hello " + b"chunked " * 100 + b"world")

    def test_chunked_request_body_with_extension_and_trailer(self):
        req = (build_request("POST", "/raw",
                             headers=[("Transfer-Encoding", "chunked")])
               + b"5;name=value\r\nhello\r\n1A\r\n" + b"z" * 26
               + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")
        with self.srv.connect() as c:
            c.send(req)
            r = c.read_response()
            self.assertOK(r, b"hello" + b"z" * 26)
            # connection still usable afterwards
            c.send(build_request("GET", "/hello"))
            self.assertOK(c.read_response(), b"hello")

    def test_chunked_request_sent_in_pieces(self):
        with self.srv.connect() as c:
            c.send(build_request("POST", "/raw",
                                 headers=[("Transfer-Encoding", "chunked")]))
            for piece in (b"3\r\nab", b"c\r\n", b"4\r\ndefg\r\n", b"0\r\n", b"\r\n"):
                time.sleep(0.05)
                c.send(piece)
            self.assertOK(c.read_response(), b"abcdefg")

    def test_head_has_length_and_no_body(self):
        get = self.srv.get("/big")
        self.assertOK(get, BIG_BODY)
        with self.srv.connect() as c:
            c.send(build_request("HEAD", "/big"))
            h = c.read_response("HEAD")
            self.assertStatus(h, 200)
            self.assertHeader(h, "content-length", str(len(BIG_BODY)))
            self.assertTrue(h.header("x-request-id"))
            # If any body bytes followed the HEAD response, the next response
            # would not parse.
            c.send(build_request("GET", "/hello"))
            self.assertOK(c.read_response(), b"hello")

    def test_expect_100_continue(self):
        body = b"continued body"
        with self.srv.connect() as c:
            c.send(build_request("POST", "/raw", headers=[
                ("Content-Length", str(len(body))),
                ("Expect", "100-continue")]))
            interim = c.read_response(timeout=5)
            self.assertEqual(interim.status, 100, repr(interim))
            self.assertEqual(interim.raw_head.split(b"\r\n")[0][:12], b"HTTP/1.1 100")
            c.send(body)
            self.assertOK(c.read_response(), body)

    def test_http10_closes_after_response(self):
        with self.srv.connect() as c:
            c.send(b"GET /echo HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            r = c.read_response()
            self.assertOK(r)
            self.assertEqual(r.json()["http_version"], "1.0")
            self.assertTrue(c.wait_closed(5), "HTTP/1.0 connection left open")
            self.assertEqual(bytes(c.buf), b"")

    def test_http10_without_host(self):
        with self.srv.connect() as c:
            c.send(b"GET /hello HTTP/1.0\r\n\r\n")
            self.assertOK(c.read_response(), b"hello")
            self.assertTrue(c.wait_closed(5))

    def test_connection_close_honoured(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/hello", headers=[("Connection", "close")]))
            self.assertOK(c.read_response(), b"hello")
            self.assertTrue(c.wait_closed(5), "Connection: close ignored")

    def test_no_route_is_404(self):
        r = self.srv.get("/nothing/here")
        self.assertStatus(r, 404)
        self.assertTrue(r.header("x-request-id"), repr(r))
        self.assertEqual(r.header("content-length"), str(len(r.body)))

    def test_health_is_200(self):
        self.assertStatus(self.srv.get("/_ah/health"), 200)

    def test_reserved_paths_forbidden_to_clients(self):
        for path in ("/_ah/start", "/_ah/stop", "/_ah/warmup"):
            for method in ("GET", "POST"):
                with self.subTest(path=path, method=method):
                    r = self.srv.request(method, path,
                                         body=b"" if method == "POST" else None)
                    self.assertStatus(r, 403)

    def test_large_response_body(self):
        r = self.srv.get("/big")
        self.assertOK(r, BIG_BODY)
        self.assertHeader(r, "content-length", str(len(BIG_BODY)))

    def test_binary_request_body_roundtrip(self):
        body = bytes(range(256)) * 64
        r = self.srv.request("POST", "/raw", body=body)
        self.assertOK(r, body)

    def test_large_upload(self):
        body = bytes(range(256)) * (8 * 4096)          # 8 MiB
        r = self.srv.request("POST", "/raw", body=body, timeout=30)
        self.assertOK(r, body)

    def test_large_chunked_upload(self):
        part = bytes(range(256)) * 20                  # 5 KiB
        parts = [part] * 1000                          # ~5 MiB
        req = build_request("POST", "/raw",
                            headers=[("Transfer-Encoding", "chunked")]) \
            + chunked(*parts)
        with self.srv.connect(timeout=30) as c:
            c.send(req)
            self.assertOK(c.read_response(timeout=30), part * 1000)

    def test_empty_post_body(self):
        r = self.srv.request("POST", "/echo", body=b"")
        self.assertOK(r)
        self.assertEqual(r.json()["body"], "")

    def test_other_methods_reach_handler(self):
        for m in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            with self.subTest(method=m):
                r = self.srv.request(m, "/echo", body=b"x")
                self.assertOK(r)
                self.assertEqual(r.json()["method"], m)

    def test_request_split_across_writes(self):
        with self.srv.connect() as c:
            req = build_request("POST", "/raw", body=b"0123456789")
            for i in range(0, len(req), 7):
                c.send(req[i:i + 7])
                time.sleep(0.01)
            self.assertOK(c.read_response(), b"0123456789")

    def test_many_pipelined_requests(self):
        n = 100
        data = b"".join(build_request("GET", "/echo/%d" % i) for i in range(n))
        with self.srv.connect() as c:
            c.send(data)
            for i in range(n):
                r = c.read_response()
                self.assertOK(r)
                self.assertEqual(r.json()["path"], "/echo/%d" % i)

    def test_bodyless_statuses_keep_framing(self):
        # 204 and 304 carry no body even if the handler gives one; the next
        # pipelined response must still parse.
        for code in (204, 304):
            with self.subTest(code=code):
                with self.srv.connect() as c:
                    c.send(build_request("GET", "/status?code=%d&body=oops" % code)
                           + build_request("GET", "/hello"))
                    r = c.read_response()
                    self.assertStatus(r, code)
                    self.assertOK(c.read_response(), b"hello")

    def test_handler_status_codes_pass_through(self):
        for code in (200, 201, 301, 400, 404, 503):
            with self.subTest(code=code):
                r = self.srv.get("/status?code=%d&body=b%d" % (code, code))
                self.assertStatus(r, code)
                self.assertEqual(r.body, b"b%d" % code)

    def test_invalid_status_from_handler_is_500(self):
        for code in (0, 99, 1000):
            with self.subTest(code=code):
                r = self.srv.get("/status?code=%d" % code)
                self.assertStatus(r, 500)
                self.assertServes(self.srv)

    def test_handler_cannot_inject_headers(self):
        for kind in ("crlf", "name"):
            with self.subTest(kind=kind):
                with self.srv.connect() as c:
                    c.send(build_request("GET", "/badheaders?kind=" + kind)
                           + build_request("GET", "/hello"))
                    r = c.read_response()
                    self.assertIsNone(r.header("injected"), repr(r))
                    self.assertIn(r.status, (200, 500), repr(r))
                    self.assertOK(c.read_response(), b"hello")

    def test_handler_content_length_cannot_break_framing(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/badheaders?kind=cl")
                   + build_request("GET", "/hello"))
            r = c.read_response()
            self.assertEqual(r.header_all("content-length"), [str(len(r.body))],
                             repr(r))
            self.assertOK(c.read_response(), b"hello")

    def test_undecodable_query_does_not_break_request(self):
        r = self.srv.get("/echo?x=%ZZ&y=%4&z=ok")
        self.assertOK(r)
        j = r.json()
        self.assertEqual(j["query"], "x=%ZZ&y=%4&z=ok")
        self.assertEqual(j["args"].get("z"), "ok", j)

    def test_long_url_under_limit(self):
        target = "/echo?q=" + "a" * 8000
        r = self.srv.get(target)
        self.assertOK(r)
        self.assertEqual(r.json()["query"], "q=" + "a" * 8000)

    def test_url_over_64k_is_rejected(self):
        r, c = self.srv.raw(build_request("GET", "/echo?q=" + "a" * (70 * 1024)))
        c.close()
        self.assertIn(r.status, (414, 431), repr(r))
        self.assertOK(self.srv.get("/hello"), b"hello")


if __name__ == "__main__":
    unittest.main()
