"""Limits and bad input (SPEC §8): malformed HTTP → 400 and close, header
block over 64 KiB → 431, body over max_body → 413, memory_limit → 500,
request_deadline → 500 with DeadlineExceededError logged, idle half-sent
request → disconnected. After each, the host keeps serving."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, chunked  # noqa: E402

BASE_FILES = {
    "jsonenc.lua": harness.JSON_LUA,
    "raw.lua": harness.RAW_ECHO_LUA,
    "hello.lua": harness.HELLO_LUA,
}

# ---------------------------------------------------------------------------
# Malformed requests, header and body limits

HTTP_FILES = dict(BASE_FILES, **{
    "app.lua": r'''
        return {
          workers = 2,
          max_body = "1k",
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/raw$", script = "raw"},
          },
        }
    ''',
})

H = b"Host: 127.0.0.1\r\n"

MALFORMED = {
    "bad method": b"G@T /hello HTTP/1.1\r\n" + H + b"\r\n",
    "bad version": b"GET /hello HTTP/1.x\r\n" + H + b"\r\n",
    "garbage request line": b"HELLO\r\n\r\n",
    "two different Content-Length":
        b"POST /raw HTTP/1.1\r\n" + H
        + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "Content-Length with chunked":
        b"POST /raw HTTP/1.1\r\n" + H
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5\r\nhello\r\n0\r\n\r\n",
    "bad chunk size":
        b"POST /raw HTTP/1.1\r\n" + H
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "NUL in header value":
        b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "negative Content-Length":
        b"POST /raw HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "space before colon":
        b"GET /hello HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
    "header line without colon":
        b"GET /hello HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n",
}


class HttpLimitTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(HTTP_FILES)

    def send_expect(self, data, status, must_close=True):
        c = self.srv.connect()
        try:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass    # server may answer and close before reading it all
            r = c.read_response(timeout=10)
            self.assertStatus(r, status)
            self.assertEqual(r.header("content-length"), str(len(r.body)),
                             repr(r))
            if must_close:
                self.assertTrue(c.wait_closed(5),
                                "connection not closed after %d" % status)
        finally:
            c.close()
        return r

    def test_malformed_requests_are_400_and_close(self):
        for name, data in MALFORMED.items():
            with self.subTest(case=name):
                self.send_expect(data, 400)
                self.assertServes(self.srv)

    def test_malformed_after_good_request_on_same_connection(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/hello"))
            self.assertOK(c.read_response(), b"hello")
            c.send(MALFORMED["bad method"])
            r = c.read_response()
            self.assertStatus(r, 400)
            self.assertTrue(c.wait_closed(5))
        self.assertServes(self.srv)

    def test_header_block_over_64k_is_431(self):
        data = build_request("GET", "/hello",
                             headers=[("X-Big", "a" * (70 * 1024))])
        self.send_expect(data, 431, must_close=False)
        self.assertServes(self.srv)

    def test_many_headers_over_64k_is_431(self):
        hdrs = [("X-H%03d" % i, "b" * 1000) for i in range(80)]
        self.send_expect(build_request("GET", "/hello", headers=hdrs), 431,
                         must_close=False)
        self.assertServes(self.srv)

    def test_header_block_under_64k_is_fine(self):
        r = self.srv.get("/hello", headers=[("X-Big", "a" * (60 * 1024))])
        self.assertOK(r, b"hello")

    def test_body_over_max_body_is_413(self):
        data = build_request("POST", "/raw", body=b"x" * 2000)
        self.send_expect(data, 413, must_close=False)
        self.assertServes(self.srv)

    def test_body_at_max_body_is_accepted(self):
        r = self.srv.request("POST", "/raw", body=b"y" * 1024)
        self.assertOK(r, b"y" * 1024)

    def test_chunked_body_over_max_body_is_413(self):
        data = build_request("POST", "/raw",
                             headers=[("Transfer-Encoding", "chunked")]) \
            + chunked(b"x" * 600, b"x" * 600)
        self.send_expect(data, 413, must_close=False)
        self.assertServes(self.srv)

    def test_expect_continue_over_max_body_is_413_without_100(self):
        with self.srv.connect() as c:
            c.send(build_request("POST", "/raw", headers=[
                ("Content-Length", "5000"), ("Expect", "100-continue")]))
            r = c.read_response(timeout=5)
            self.assertStatus(r, 413)
        self.assertServes(self.srv)


# ---------------------------------------------------------------------------
# Memory limit

MEM_HANDLERS = {
    # Bounded: ~2e6 distinct strings is ~150 MB if nothing stops it.
    "mem.lua": r'''
        return function(req)
          local t = {}
          for i = 1, 2000000 do
            t[i] = tostring(i) .. "-padding-padding-padding-padding"
          end
          return "built " .. #t
        end
    ''',
    "usage.lua": r'''
        local runtime = require "runtime"
        return function(req)
          collectgarbage()
          return tostring(runtime.memory_usage().lua)
        end
    ''',
}


def mem_app(limit_line, deadline_line="request_deadline = 20,"):
    return dict(BASE_FILES, **MEM_HANDLERS, **{
        "app.lua": r'''
            return {
              workers = 1,
              %s
              %s
              handlers = {
                {url = "^/hello$", script = "hello"},
                {url = "^/mem$", script = "mem"},
                {url = "^/usage$", script = "usage"},
              },
            }
        ''' % (limit_line, deadline_line),
    })


class MemoryLimitTests(harness.ServerTestCase):

    def test_over_memory_limit_is_500_then_recovers(self):
        srv = self.start_server(mem_app('memory_limit = "16m",'))
        for _ in range(2):
            r = srv.get("/mem", timeout=20)
            self.assertStatus(r, 500)
            rid = r.header("x-request-id")
            self.assertTrue(rid)
            self.assertIn(rid.encode(), r.body, repr(r))
            self.assertServes(srv)
        self.assertIsNotNone(srv.wait_stderr(r"(?i)memory", 3),
                             "memory error not logged:\n" + srv.stderr_text())
        u = srv.get("/usage")
        self.assertOK(u)
        self.assertLess(int(u.text), 16 * 1024 * 1024, repr(u))

    def test_cli_memory_limit_overrides_app(self):
        srv = self.start_server(mem_app('memory_limit = "1g",'),
                                args=["--memory-limit", "16m"])
        r = srv.get("/mem", timeout=20)
        self.assertStatus(r, 500)
        self.assertServes(srv)


# ---------------------------------------------------------------------------
# Request deadline

DEADLINE_HANDLERS = {
    "spin.lua": r'''
        return function(req) while true do end end
    ''',
    "spinpcall.lua": r'''
        return function(req)
          for i = 1, 1000000 do
            pcall(function() while true do end end)
          end
          return "escaped the deadline"
        end
    ''',
    "spinxpcall.lua": r'''
        return function(req)
          for i = 1, 1000000 do
            xpcall(function() while true do end end, function(e) return e end)
          end
          return "escaped the deadline"
        end
    ''',
    "sleep.lua": r'''
        local runtime = require "runtime"
        return function(req)
          local ok = runtime.sleep(tonumber(req.args.s))
          return "slept " .. tostring(ok)
        end
    ''',
}


def deadline_app(deadline_line):
    return dict(BASE_FILES, **DEADLINE_HANDLERS, **{
        "app.lua": r'''
            return {
              workers = 1,
              %s
              handlers = {
                {url = "^/hello$", script = "hello"},
                {url = "^/spin$", script = "spin"},
                {url = "^/spinpcall$", script = "spinpcall"},
                {url = "^/spinxpcall$", script = "spinxpcall"},
                {url = "^/sleep$", script = "sleep"},
              },
            }
        ''' % deadline_line,
    })


class DeadlineTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(deadline_app("request_deadline = 1,"))

    def timed_get(self, path):
        t0 = time.monotonic()
        r = self.srv.get(path, timeout=15)
        return r, time.monotonic() - t0

    def check_deadline(self, path):
        start_line = len(self.srv.err.snapshot())
        r, took = self.timed_get(path)
        self.assertStatus(r, 500)
        rid = r.header("x-request-id")
        self.assertIn(rid.encode(), r.body, repr(r))
        self.assertGreaterEqual(took, 0.8, "answered before the deadline")
        self.assertLess(took, 4.0, "deadline of 1 s took %.1f s" % took)
        line = self.srv.err.wait_for(
            lambda l: "DeadlineExceededError" in l, 3, start_line)
        self.assertIsNotNone(line, "DeadlineExceededError not logged:\n"
                             + self.srv.stderr_text())
        self.assertServes(self.srv)

    def test_busy_loop_hits_deadline(self):
        self.check_deadline("/spin")

    def test_pcall_cannot_swallow_deadline(self):
        self.check_deadline("/spinpcall")

    def test_xpcall_cannot_swallow_deadline(self):
        self.check_deadline("/spinxpcall")

    def test_short_sleep_within_deadline(self):
        r, took = self.timed_get("/sleep?s=0.2")
        self.assertOK(r, b"slept true")

    def test_deadline_applies_to_sleeping_handler(self):
        # The deadline is wall-clock time a handler may run (App Engine);
        # a handler sleeping past it answers 500 too.
        r, took = self.timed_get("/sleep?s=5")
        self.assertStatus(r, 500)
        self.assertLess(took, 4.0)
        self.assertServes(self.srv)


class DeadlineOverrideTests(harness.ServerTestCase):

    def test_cli_request_deadline_overrides_app(self):
        srv = self.start_server(deadline_app("request_deadline = 100,"),
                                args=["--request-deadline", "1"])
        t0 = time.monotonic()
        r = srv.get("/spin", timeout=15)
        took = time.monotonic() - t0
        self.assertStatus(r, 500)
        self.assertLess(took, 4.0)
        self.assertServes(srv)


# ---------------------------------------------------------------------------
# The one slow test: a client that stops mid request line.

class SlowClientTest(harness.ServerTestCase):

    def test_half_request_line_is_disconnected(self):
        srv = self.start_server(dict(BASE_FILES, **{
            "app.lua": r'''
                return { handlers = { {url = "^/hello$", script = "hello"} } }
            '''}))
        t0 = time.monotonic()
        with srv.connect(timeout=35) as c:
            c.send(b"GET /hel")
            # meanwhile the server keeps serving others
            self.assertServes(srv)
            closed = c.wait_closed(32)
            took = time.monotonic() - t0
            self.assertTrue(closed, "idle half-request still open after %.0fs"
                            % took)
            self.assertLessEqual(took, 31.0)
            # Anything sent before the close must be an error response.
            if c.buf:
                self.assertRegex(bytes(c.buf), rb"^HTTP/1\.[01] (408|400) ")
        self.assertServes(srv)


if __name__ == "__main__":
    unittest.main()
