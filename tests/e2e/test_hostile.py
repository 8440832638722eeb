"""Hostile input (README, Limits): request smuggling attempts, slowloris,
resource exhaustion and path traversal fuzzing of static_dir. What
test_limits.py already covers (the basic malformed-request table, 64 KiB
header block, max_body, memory and deadline limits) is not repeated.

The strict requirement for every smuggling case is that no second request
is ever taken from the bytes behind a refused (or mis-framed) request: each
case hides a complete `GET /smuggled` behind it, and the /smuggled handler
writes a marker to stdout that must never appear.

Slowloris, the one slow test (~25 s), is in test_slowloris.py, its own
ctest entry, so that it runs beside the rest."""

import os
import selectors
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, Symlink  # noqa: E402

H = b"Host: 127.0.0.1\r\n"
MARKER = "SMUGGLED-MARKER-7f3a"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"

BASE_FILES = {
    "jsonenc.lua": harness.JSON_LUA,
    "echo.lua": harness.ECHO_LUA,
    "raw.lua": harness.RAW_ECHO_LUA,
    "hello.lua": harness.HELLO_LUA,
    "smuggled.lua": r'''
        return function(req)
          io.stdout:write("%s\n")
          io.stdout:flush()
          return "smuggled"
        end
    ''' % MARKER,
}


def rss_mib(srv):
    """The server's resident set size in MiB (from /proc)."""
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS in /proc/%d/status" % srv.proc.pid)


# ---------------------------------------------------------------------------
# 1. Request smuggling

SMUGGLE_FILES = dict(BASE_FILES, **{
    "app.lua": r'''
        return {
          workers = 2,
          max_body = "1m",
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/raw$", script = "raw"},
            {url = "^/echo$", script = "echo"},
            {url = "^/smuggled$", script = "smuggled"},
          },
        }
    ''',
})


def post(headers, body):
    """A POST /raw head with the given raw header lines, then body, then the
    smuggled request (which a misframing server would answer)."""
    return (b"POST /raw HTTP/1.1\r\n" + H + b"".join(h + b"\r\n" for h in headers)
            + b"\r\n" + body + SMUGGLED)


LAST_CHUNK = b"0\r\n\r\n"
SL = str(len(SMUGGLED)).encode()

# Each must be answered 400 and the connection closed; none may ever reach
# /smuggled. The comment says how a lax parser would smuggle.
SMUGGLING = {
    # CL.TE / TE.CL: one framing ends after "0\r\n\r\n", the other after SMUGGLED.
    "Content-Length then chunked": post(
        [b"Content-Length: " + str(len(LAST_CHUNK) + len(SMUGGLED)).encode(),
         b"Transfer-Encoding: chunked"], LAST_CHUNK),
    "chunked then Content-Length": post(
        [b"Transfer-Encoding: chunked",
         b"Content-Length: " + str(len(LAST_CHUNK) + len(SMUGGLED)).encode()],
        LAST_CHUNK),
    # First CL (0) leaves SMUGGLED as the next request; the last consumes it.
    "two different Content-Length": post(
        [b"Content-Length: 0", b"Content-Length: " + SL], b""),
    "Content-Length list 0, N": post([b"Content-Length: 0, " + SL], b""),
    "two equal Content-Length": post(
        [b"Content-Length: 0", b"Content-Length: 0"], b""),
    # chunked not last: the body has no defined framing.
    "Transfer-Encoding: chunked, identity": post(
        [b"Transfer-Encoding: chunked, identity"], LAST_CHUNK),
    # identity ignored: no body, SMUGGLED next.
    "Transfer-Encoding: identity": post([b"Transfer-Encoding: identity"], b""),
    "Transfer-Encoding: identity with Content-Length": post(
        [b"Content-Length: 0", b"Transfer-Encoding: identity"], b""),
    "two Transfer-Encoding headers": post(
        [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"],
        LAST_CHUNK),
    "Transfer-Encoding with space before colon": post(
        [b"Content-Length: " + str(len(LAST_CHUNK) + len(SMUGGLED)).encode(),
         b"Transfer-Encoding : chunked"], LAST_CHUNK),
    "bare LF line endings":
        b"POST /raw HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 0\n\n" + SMUGGLED,
    "bare LF inside a CRLF header block":
        b"POST /raw HTTP/1.1\r\n" + H + b"X-A: b\nContent-Length: 0\r\n\r\n"
        + SMUGGLED,
    "NUL in request line":
        b"GET /hel\x00lo HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED,
    "NUL in header value":
        b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n" + SMUGGLED,
    "NUL in Content-Length":
        post([b"Content-Length: 0\x00" + SL], b""),
    # Overflowing sizes that wrap to 0 would end the body at once.
    "overlong chunk size ffffffffffffffffff": post(
        [b"Transfer-Encoding: chunked"], b"ffffffffffffffffff\r\n\r\n"),
    "chunk size 2**64 (wraps to 0)": post(
        [b"Transfer-Encoding: chunked"], b"10000000000000000\r\n\r\n"),
    "chunk size with junk 5x": post(
        [b"Transfer-Encoding: chunked"], b"5x\r\nhello\r\n" + LAST_CHUNK),
    "chunk size 0x5 (read as 0)": post(
        [b"Transfer-Encoding: chunked"], b"0x5\r\nhello\r\n" + LAST_CHUNK),
    "negative chunk size": post(
        [b"Transfer-Encoding: chunked"], b"-1\r\n\r\n" + LAST_CHUNK),
    "method with a space (G ET)":
        b"G ET /hello HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED,
    "lower-case method (get)":
        b"get /hello HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED,
    "version HTTX/1.1":
        b"GET /hello HTTX/1.1\r\n" + H + b"\r\n" + SMUGGLED,
}

# What the server does with versions it does not speak (checked first:
# HTTP/1.2 is refused like any other, which the README's "bad version" allows).
BAD_VERSIONS = ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTX/1.1",
                "HTTP/11.1", "http/1.1"]


class SmugglingTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(SMUGGLE_FILES)

    def exchange(self, data, timeout=5):
        """Sends data on a fresh connection; returns (first response or the
        exception reading it, closed within 5 s, bytes after the response).
        A response without Connection: close is given 0.5 s to be followed
        by anything (a keep-alive connection stays open)."""
        with self.srv.connect() as c:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass        # answered and closed before reading it all
            try:
                r = c.read_response(timeout=timeout)
            except harness.ConnectionClosed as e:
                return e, True, bytes(c.buf)
            except OSError as e:        # no answer in time: don't wait more
                return e, False, bytes(c.buf)
            keep = (r.header("connection") or "").lower() != "close"
            closed = c.wait_closed(0.5 if keep else 5)
            return r, closed, bytes(c.buf)

    def assertNoMarker(self, start, what, wait=0.5):
        """/smuggled never ran (marker or access-log line) since stdout line
        `start`. Waits `wait` s for the stdout reader to catch up."""
        line = self.srv.wait_stdout(
            lambda l: MARKER in l or " /smuggled " in l, timeout=wait,
            start=start)
        self.assertIsNone(line, "%s: the smuggled request was served: %r"
                          % (what, line))

    def assertRefused(self, name, data, statuses=(400,), wait=0.05):
        start = len(self.srv.stdout_lines())
        r, closed, extra = self.exchange(data)
        self.assertIsInstance(
            r, harness.Response,
            "%s: no response (%r) to %r" % (name, r, data))
        self.assertIn(r.status, statuses, "%s: request bytes %r\ngot %s"
                      % (name, data, self._context(r)))
        self.assertTrue(closed, "%s: connection left open after %d"
                        % (name, r.status))
        self.assertEqual(extra, b"", "%s: bytes after the %d response: %r"
                         % (name, r.status, extra))
        self.assertNoMarker(start, name, wait)

    def test_marker_detects_a_served_request(self):
        # Control: the detection below works (stdout is not buffered away).
        start = len(self.srv.stdout_lines())
        self.assertOK(self.srv.get("/smuggled"), b"smuggled")
        self.assertIsNotNone(
            self.srv.wait_stdout(lambda l: MARKER in l, 3, start),
            "marker not seen on stdout:\n" + "\n".join(self.srv.stdout_lines()))
        # Let this request's access-log line arrive too, so that the tests
        # after this one (same server) do not see it as theirs.
        self.assertIsNotNone(
            self.srv.wait_stdout(lambda l: " /smuggled " in l, 3, start),
            "access log line not seen:\n" + "\n".join(self.srv.stdout_lines()))

    def test_smuggling_attempts_are_400_and_close(self):
        start = len(self.srv.stdout_lines())
        for name, data in SMUGGLING.items():
            with self.subTest(case=name):
                self.assertRefused(name, data)
        self.assertNoMarker(start, "any smuggling case")
        self.assertServes(self.srv)

    def test_bad_versions_are_refused(self):
        # README: bad version -> 400 (505 would do too); and behind it the
        # smuggled request is never served.
        start = len(self.srv.stdout_lines())
        for v in BAD_VERSIONS:
            with self.subTest(version=v):
                data = (b"GET /echo " + v.encode() + b"\r\n" + H + b"\r\n"
                        + SMUGGLED)
                self.assertRefused(v, data, statuses=(400, 505))
        self.assertNoMarker(start, "any bad version")
        self.assertServes(self.srv)

    def test_obs_fold_is_unfolded_or_refused(self):
        # RFC 9112 5.2: reject with 400, or replace the fold by SP.
        data = b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"
        r, closed, extra = self.exchange(data)
        self.assertIsInstance(r, harness.Response, repr(r))
        if r.status == 400:
            self.assertTrue(closed)
        else:
            self.assertStatus(r, 200)
            hdrs = r.json()["headers"]
            self.assertEqual(hdrs.get("x-a"), "a b", repr(r))
            self.assertEqual(sorted(hdrs), ["host", "x-a"], repr(r))
        self.assertEqual(extra, b"")

    def test_obs_fold_content_length_cannot_smuggle(self):
        # A parser that dropped the folded line would see no Content-Length
        # and take SMUGGLED as the next request.
        start = len(self.srv.stdout_lines())
        data = (b"POST /raw HTTP/1.1\r\n" + H + b"Content-Length:\r\n " + SL
                + b"\r\n\r\n" + SMUGGLED)
        with self.srv.connect() as c:
            c.send(data)
            r = c.read_response()
            if r.status == 400:
                self.assertTrue(c.wait_closed(5))
            else:
                self.assertOK(r, SMUGGLED)     # the body, echoed
                try:
                    extra = c.read_response(timeout=1)
                except (harness.ConnectionClosed, OSError):
                    extra = None
                self.assertIsNone(extra, "second response: %r" % extra)
        self.assertNoMarker(start, "folded Content-Length")
        # A folded line that looks like a header stays part of the value.
        data = (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                b"X-A: a\r\n Transfer-Encoding: chunked\r\n\r\nhello")
        r, closed, extra = self.exchange(data)
        self.assertIsInstance(r, harness.Response, repr(r))
        if r.status != 400:
            self.assertStatus(r, 200)
            j = r.json()
            self.assertEqual(j["body"], "hello", repr(r))
            self.assertNotIn("transfer-encoding", j["headers"], repr(r))

    def test_chunk_size_over_max_body_is_refused_at_once(self):
        # A chunk-size line is a declaration of body size, like
        # Content-Length (refused with 413 at once, README); a chunk that
        # alone exceeds max_body ("1m") can never be accepted, so waiting
        # for its data (up to the 20 s body timeout) only holds the
        # connection for the attacker.
        for size in (b"ffffffffffffffff", b"8000000000000000", b"100001"):
            with self.subTest(chunk_size=size):
                start = len(self.srv.stdout_lines())
                data = post([b"Transfer-Encoding: chunked"],
                            size + b"\r\nhello\r\n" + LAST_CHUNK)
                r, closed, extra = self.exchange(data, timeout=harness.scaled(2))
                self.assertIsInstance(
                    r, harness.Response,
                    "request bytes %r: expected 413 (or 400) at once, got no "
                    "response within %.0f s (%r)"
                    % (data, harness.scaled(2), r))
                self.assertIn(r.status, (400, 413), self._context(r))
                self.assertTrue(closed)
                self.assertNoMarker(start, "chunk size %r" % size)

    def test_huge_chunk_size_body_cannot_smuggle(self):
        # Whatever the answer to a chunk of 2**64-1 bytes, the bytes after it
        # are chunk data, never a request.
        start = len(self.srv.stdout_lines())
        data = post([b"Transfer-Encoding: chunked"],
                    b"ffffffffffffffff\r\nhello\r\n" + LAST_CHUNK)
        with self.srv.connect() as c:
            c.send(data)
            try:
                r = c.read_response(timeout=1)
            except (harness.ConnectionClosed, OSError):
                r = None
            if r is not None:
                self.assertIn(r.status, (400, 413), repr(r))
        self.assertNoMarker(start, "chunk of 2**64-1 bytes")
        self.assertServes(self.srv)


# ---------------------------------------------------------------------------
# 3. Resource exhaustion

RSS_LIMIT_MIB = 200
EXHAUST_FILES = dict(BASE_FILES, **{
    "app.lua": r'''
        return {
          workers = 2,
          max_body = "1m",
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/raw$", script = "raw"},
          },
        }
    ''',
})


class ExhaustionTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(EXHAUST_FILES)

    def tearDown(self):
        # after each attack: memory bounded and still serving
        rss = rss_mib(self.srv)
        self.assertLess(rss, RSS_LIMIT_MIB, "server RSS %.1f MiB" % rss)
        self.assertServes(self.srv)

    def test_ten_thousand_tiny_headers_is_431(self):
        hdrs = [("X-%d" % i, "v") for i in range(10000)]
        with self.srv.connect() as c:
            try:
                c.send(build_request("GET", "/hello", headers=hdrs))
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response(timeout=harness.scaled(5))
            self.assertStatus(r, 431)
            self.assertTrue(c.wait_closed(5), "not closed after 431")

    def test_declared_1gib_body_is_413_at_once(self):
        with self.srv.connect() as c:
            t0 = time.monotonic()
            c.send(build_request("POST", "/raw",
                                 headers=[("Content-Length", "1073741824")]))
            r = c.read_response(timeout=harness.scaled(2))
            took = time.monotonic() - t0
            self.assertStatus(r, 413)
            self.assertLess(took, harness.scaled(1.0),
                            "413 after %.2f s" % took)
            self.assertTrue(c.wait_closed(5), "not closed after 413")

    def test_100mb_chunked_body_is_413_and_closed_early(self):
        total_chunks = 100 * 1024 * 1024 // 65536      # 1600 x 64 KiB
        chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
        sent = 0
        with self.srv.connect(timeout=harness.scaled(5)) as c:
            c.send(build_request("POST", "/raw",
                                 headers=[("Transfer-Encoding", "chunked")]))
            t0 = time.monotonic()
            sel = selectors.DefaultSelector()
            try:
                sel.register(c.sock, selectors.EVENT_READ)
                for _ in range(total_chunks):
                    if sel.select(timeout=0):
                        break       # the server answered: stop sending
                    if time.monotonic() - t0 > harness.scaled(15):
                        self.fail("still sending after %.0f s (%d bytes)"
                                  % (harness.scaled(15), sent))
                    try:
                        c.send(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    except (socket.timeout, TimeoutError):
                        break       # server stopped reading
                    sent += len(chunk)
            finally:
                sel.close()
            r = c.read_response(timeout=harness.scaled(5))
            self.assertStatus(r, 413)
            self.assertTrue(c.wait_closed(5), "not closed after 413")
            took = time.monotonic() - t0
        self.assertLess(sent, 32 * 1024 * 1024,
                        "server took %d bytes past a 1 MiB max_body" % sent)
        self.assertLess(took, harness.scaled(10), "took %.1f s" % took)


# ---------------------------------------------------------------------------
# 4. Path traversal fuzzing of static_dir

SECRET = b"HOSTILE-SECRET-5b1e outside the static dir\n"
SIBLING_SECRET = b"HOSTILE-SECRET-5b1e in a sibling dir\n"
SECRET_MARK = b"HOSTILE-SECRET-5b1e"

STATIC_FILES = dict(BASE_FILES, **{
    "app.lua": r'''
        return {
          handlers = {
            {url = "^/static/", static_dir = "public"},
            {url = "^/hello$", script = "hello"},
          },
        }
    ''',
    "public/index.html": b"<p>index</p>\n",
    "public/a/b/c.txt": b"deep\n",
    "secret.txt": SECRET,                       # beside the static dir
    "public-secret/s.txt": SIBLING_SECRET,      # a prefix-sharing sibling
    "public/link_secret.txt": Symlink("../secret.txt"),
    "public/a/link_up": Symlink("../.."),
    "public/link_sibling": Symlink("../public-secret"),
})

DOTDOTS = ["..", "%2e%2e", "%2E%2E", "%2e%2E", ".%2e", "%2e.", ".%2E", "%2E.",
           "%c0%ae%c0%ae", "%252e%252e", "...", "..%00"]
SEPS = ["/", "%2f", "%2F", "%5c", "%5C", "\\", "//", "/./", "%2f.%2f"]


def traversal_targets():
    """~300 request targets that try to reach secret.txt (beside the static
    dir) or the sibling public-secret/s.txt."""
    out = []
    for dd in DOTDOTS:
        for sep in SEPS:
            out.append("/static/" + dd + sep + "secret.txt")
            out.append("/static/a/b/" + (dd + sep) * 3 + "secret.txt")
            out.append("/static/" + dd + sep + "public-secret" + sep + "s.txt")
    for dd in ("..", "%2e%2e", ".%2e", "%c0%ae%c0%ae"):
        for tail in ("%00", "%00.html", "%00/", "/", ".", "%20"):
            out.append("/static/" + dd + "/secret.txt" + tail)
        out.append("/static//" + dd + "//secret.txt")
        out.append("/static/./" + dd + "/./secret.txt")
        out.append("/static/a/./../" + dd + "/secret.txt")
        out.append("/static/" + dd + "/public/../secret.txt")
        out.append("/static/" + dd + ";/secret.txt")
        out.append("/static/" + dd + "/" + dd + "/" + dd + "/" + dd
                   + "/" + dd + "/" + dd + "/etc/passwd")
    out += [
        "/static/link_secret.txt", "/static/link_abs_secret.txt",
        "/static/a/link_up/secret.txt", "/static/a/link_up/public-secret/s.txt",
        "/static/link_sibling/s.txt", "/static/link_sibling/",
        "/static/%6c%69%6e%6b_secret.txt",          # encoded symlink name
        "/static/a/link_up%2fsecret.txt",
        "/static/" + "%2e%2e%2f" * 20 + "etc/passwd",
        "/static/../" * 1 + "secret.txt?x=/static/index.html",
        "/static/..#/secret.txt",
        "/static/%2e%2e/%2e%2e/" + "%2e%2e/" * 10 + "etc/passwd",
        "/STATIC/../secret.txt", "/static/../Secret.txt",
        "/static/.%00./secret.txt", "/static/%2e%00%2e/secret.txt",
    ]
    return out


class TraversalFuzzTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        # Our own app dir, so a symlink can point at secret.txt by its
        # absolute path.
        d = tempfile.mkdtemp(prefix="luahost-e2e-")
        cls.addClassCleanup(shutil.rmtree, d, True)
        files = dict(STATIC_FILES)
        files["public/link_abs_secret.txt"] = Symlink(
            os.path.join(d, "secret.txt"))
        cls.srv = cls.start_class_server(files, app_dir=d)

    def fetch(self, target):
        """GET target (sent as is) on a fresh connection."""
        data = b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\n" + H + b"\r\n"
        with self.srv.connect() as c:
            c.send(data)
            return c.read_response(timeout=5)

    def test_traversal_variants_never_leak(self):
        targets = traversal_targets()
        self.assertGreaterEqual(len(targets), 300)
        leaks, bad = [], []
        for t in targets:
            try:
                r = self.fetch(t)
            except (harness.ConnectionClosed, OSError) as e:
                bad.append((t, "no response: %r" % e))
                continue
            if SECRET_MARK in r.body or b"root:" in r.body:
                leaks.append((t, r.status, r.body[:80]))
            elif r.status not in (400, 403, 404):
                bad.append((t, r.status))
        self.assertEqual(leaks, [], "secret content served for: %r" % leaks)
        self.assertEqual(bad, [], "unexpected answers (want 400/403/404): %r"
                         % bad)
        self.assertServes(self.srv)
        # the same server does serve its static files
        self.assertOK(self.srv.get("/static/a/b/c.txt"), b"deep\n")


if __name__ == "__main__":
    unittest.main()
