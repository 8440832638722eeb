"""Limits and bad input (SPEC §8): malformed HTTP → 400 and close, header
block over 64 KiB → 431, body over max_body → 413, memory_limit → 500,
request_deadline → 500 with DeadlineExceededError logged, idle half-sent
request → disconnected. After each, the host keeps serving."""

import os
import re
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
    "lower-case method": b"get /hello HTTP/1.1\r\n" + H + b"\r\n",
    "Content-Length not a number":
        b"POST /raw HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\nhello",
    "chunk data longer than size":
        b"POST /raw HTTP/1.1\r\n" + H
        + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
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
            if status is not None:
                self.assertStatus(r, status)
            self.assertEqual(r.header("content-length"), str(len(r.body)),
                             repr(r))
            if must_close:
                self.assertTrue(c.wait_closed(5),
                                "connection not closed after %d" % r.status)
        finally:
            c.close()
        return r

    def test_malformed_requests_are_400_and_close(self):
        for name, data in MALFORMED.items():
            with self.subTest(case=name):
                self.send_expect(data, 400)
                self.assertServes(self.srv)

    def test_error_responses_carry_required_headers(self):
        for data, status in ((MALFORMED["bad method"], 400),
                             (build_request("POST", "/raw", body=b"x" * 2000), 413)):
            with self.subTest(status=status):
                r = self.send_expect(data, status, must_close=False)
                self.assertTrue(r.header("date"), repr(r))
                self.assertTrue(r.header("x-request-id"), repr(r))

    # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request
    # without a Host header, or with more than one.
    def test_http11_without_host_is_400(self):
        self.send_expect(b"GET /hello HTTP/1.1\r\n\r\n", 400)
        self.assertServes(self.srv)

    def test_two_host_headers_is_400(self):
        self.send_expect(b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
        self.assertServes(self.srv)

    def assertNoSmuggledResponse(self, data, status):
        """`data` ends with a second request hidden in an unread body; after
        the error response, it must not be answered."""
        with self.srv.connect() as c:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
            self.assertStatus(r, status)
            try:
                extra = c.read_response(timeout=1)
            except (harness.ConnectionClosed, OSError):
                extra = None
            self.assertIsNone(extra, "smuggled request answered: %r" % extra)

    def test_unread_413_body_is_not_parsed_as_request(self):
        smuggled = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        body = smuggled * (2000 // len(smuggled) + 1)
        data = build_request("POST", "/raw", headers=[
            ("Content-Length", str(len(body)))]) + body
        self.assertNoSmuggledResponse(data, 413)

    def test_unread_413_expect_body_is_not_parsed_as_request(self):
        smuggled = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        body = smuggled * (2000 // len(smuggled) + 1)
        with self.srv.connect() as c:
            c.send(build_request("POST", "/raw", headers=[
                ("Content-Length", str(len(body))), ("Expect", "100-continue")]))
            r = c.read_response(timeout=5)
            self.assertStatus(r, 413)
            try:
                c.send(body)   # a client that ignores the 413
                extra = c.read_response(timeout=1)
            except (harness.ConnectionClosed, OSError):
                extra = None
            self.assertIsNone(extra, "smuggled request answered: %r" % extra)

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

    def test_huge_content_length_is_refused(self):
        data = (b"POST /raw HTTP/1.1\r\n" + H
                + b"Content-Length: 99999999999999999999999\r\n\r\nx")
        r = self.send_expect(data, None, must_close=False)
        self.assertIn(r.status, (400, 413), repr(r))
        self.assertServes(self.srv)

    def test_unknown_transfer_encoding_is_refused(self):
        data = (b"POST /raw HTTP/1.1\r\n" + H
                + b"Transfer-Encoding: gzip\r\n\r\nhello")
        r = self.send_expect(data, None)
        self.assertIn(r.status, (400, 501), repr(r))
        self.assertServes(self.srv)

    def test_chunked_body_at_max_body_is_accepted(self):
        data = build_request("POST", "/raw",
                             headers=[("Transfer-Encoding", "chunked")]) \
            + chunked(b"z" * 1000, b"z" * 24)
        with self.srv.connect() as c:
            c.send(data)
            self.assertOK(c.read_response(), b"z" * 1024)

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
    "bigstring.lua": r'''
        return function(req)
          local s = string.rep("x", 100 * 1024 * 1024)
          return "made " .. #s
        end
    ''',
    # Keeps everything it allocates in a module upvalue, so the state is
    # still full after the memory error.
    "leak.lua": r'''
        local keep = {}
        return function(req)
          for i = 1, 2000000 do
            keep[#keep + 1] = tostring(i) .. "-leaked-leaked-leaked-leaked"
          end
          return "kept " .. #keep
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
                {url = "^/bigstring$", script = "bigstring"},
                {url = "^/leak$", script = "leak"},
              },
            }
        ''' % (limit_line, deadline_line),
    })


def assert_memory_error(test, srv, r):
    """r is a 500 whose request ID is in its body and whose error line in
    the log is the memory limit's (SPEC §8), not some other error."""
    test.assertStatus(r, 500)
    rid = r.header("x-request-id")
    test.assertTrue(rid)
    test.assertIn(rid.encode(), r.body, repr(r))
    line = srv.wait_stderr(re.escape(rid) + r"\].*handler error", 5)
    test.assertIsNotNone(line, "error of %s not logged:\n%s" % (rid, srv.stderr_text()))
    test.assertIn("not enough memory", line)


class MemoryLimitTests(harness.ServerTestCase):

    def test_over_memory_limit_is_500_then_recovers(self):
        srv = self.start_server(mem_app('memory_limit = "16m",'))
        for _ in range(2):
            r = srv.get("/mem", timeout=20)
            assert_memory_error(self, srv, r)
            self.assertServes(srv)
        # the failed requests' garbage was collected: the heap is back to
        # a fraction of the limit the handler reached
        u = srv.get("/usage")
        self.assertOK(u)
        self.assertLess(int(u.text), 4 * 1024 * 1024, repr(u))

    def test_single_huge_allocation_is_500(self):
        srv = self.start_server(mem_app('memory_limit = "16m",'))
        r = srv.get("/bigstring", timeout=20)
        assert_memory_error(self, srv, r)
        self.assertServes(srv)

    def test_state_filled_by_module_upvalue_recovers(self):
        # The handler keeps its garbage reachable: after the memory error the
        # worker's state is still at the limit. Later requests must succeed
        # anyway (SPEC §8), e.g. because the host replaces the state.
        srv = self.start_server(mem_app('memory_limit = "16m",'))
        r = srv.get("/leak", timeout=20)
        assert_memory_error(self, srv, r)
        for _ in range(3):
            self.assertServes(srv)

    def test_cli_memory_limit_overrides_app(self):
        srv = self.start_server(mem_app('memory_limit = "1g",'),
                                args=["--memory-limit", "16m"])
        r = srv.get("/mem", timeout=20)
        assert_memory_error(self, srv, r)
        self.assertServes(srv)


# ---------------------------------------------------------------------------
# Request deadline

DEADLINE_HANDLERS = {
    "unhook.lua": r'''
        return function(req)
          -- refused (it raises) or not: the loop must still end at the deadline
          if debug and debug.sethook then pcall(debug.sethook) end
          while true do end
        end
    ''',
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
    # The loop runs in a coroutine the handler made before the deadline.
    "spincoro.lua": r'''
        return function(req)
          local co = coroutine.wrap(function() while true do end end)
          co()
          return "escaped the deadline"
        end
    ''',
    "spincoropcall.lua": r'''
        return function(req)
          local co = coroutine.create(function()
            for i = 1, 1000000 do pcall(function() while true do end end) end
          end)
          for i = 1, 1000000 do coroutine.resume(co) end
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
                {url = "^/spincoro$", script = "spincoro"},
                {url = "^/spincoropcall$", script = "spincoropcall"},
                {url = "^/unhook$", script = "unhook"},
                {url = "^/sleep$", script = "sleep"},
              },
            }
        ''' % deadline_line,
    })


def assert_deadline(test, srv, r, took, start_line):
    """r is the 500 of a 1 s request_deadline: answered after the deadline
    (not before: an instant 500 is some other error), not long after it,
    with DeadlineExceededError logged for its request ID (SPEC §8)."""
    test.assertStatus(r, 500)
    rid = r.header("x-request-id")
    test.assertIn(rid.encode(), r.body, repr(r))
    test.assertGreaterEqual(took, 0.95, "answered %.2f s in, before the deadline" % took)
    test.assertLess(took, harness.scaled(4.0), "deadline of 1 s took %.1f s" % took)
    line = srv.err.wait_for(lambda l: rid in l and "handler error" in l, 5, start_line)
    test.assertIsNotNone(line, "error of %s not logged:\n%s" % (rid, srv.stderr_text()))
    test.assertIn("DeadlineExceededError", line)


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
        assert_deadline(self, self.srv, r, took, start_line)
        self.assertServes(self.srv)

    def test_busy_loop_hits_deadline(self):
        self.check_deadline("/spin")

    def test_pcall_cannot_swallow_deadline(self):
        self.check_deadline("/spinpcall")

    def test_xpcall_cannot_swallow_deadline(self):
        self.check_deadline("/spinxpcall")

    def test_loop_in_coroutine_hits_deadline(self):
        self.check_deadline("/spincoro")

    def test_pcall_loop_in_resumed_coroutine_hits_deadline(self):
        self.check_deadline("/spincoropcall")

    def test_short_sleep_within_deadline(self):
        r, took = self.timed_get("/sleep?s=0.2")
        self.assertOK(r, b"slept true")

    def test_deadline_applies_to_sleeping_handler(self):
        # The deadline is wall-clock time a handler may run (App Engine);
        # a handler sleeping past it answers 500 too.
        start_line = len(self.srv.err.snapshot())
        r, took = self.timed_get("/sleep?s=5")
        assert_deadline(self, self.srv, r, took, start_line)
        self.assertServes(self.srv)


class DeadlineUnhookTest(harness.ServerTestCase):
    """A handler that clears hooks with debug.sethook() must not escape the
    deadline (its own server: if it does, the worker spins until killed)."""

    def test_debug_sethook_cannot_disable_deadline(self):
        srv = self.start_server(deadline_app("request_deadline = 1,"),
                                args=["--shutdown-grace", "1"])
        t0 = time.monotonic()
        try:
            r = srv.get("/unhook", timeout=6)
        except (OSError, harness.ConnectionClosed) as e:
            self.fail("no answer %.1fs after a 1 s deadline: %r"
                      % (time.monotonic() - t0, e))
        assert_deadline(self, srv, r, time.monotonic() - t0, 0)
        self.assertServes(srv)


class DeadlineOverrideTests(harness.ServerTestCase):

    def test_cli_request_deadline_overrides_app(self):
        srv = self.start_server(deadline_app("request_deadline = 100,"),
                                args=["--request-deadline", "1"])
        t0 = time.monotonic()
        r = srv.get("/spin", timeout=15)
        took = time.monotonic() - t0
        self.assertStatus(r, 500)
        self.assertLess(took, harness.scaled(4.0))
        self.assertServes(srv)


# ---------------------------------------------------------------------------
# The one slow test: a client that stops mid request line.


if __name__ == "__main__":
    unittest.main()
