"""End-to-end harness for luahost.

Starts the real binary (path from $LUAHOST, default build/luahost) on a
loopback port with an app written from a dict of files into a temporary
directory, and talks raw HTTP/1.1 to it over sockets. Only 127.0.0.1 is
ever contacted (each server on a port the kernel picks, so tests can run in
parallel). Every wait is bounded in time; every server started through
ServerTestCase.start_server or Server as a context manager is stopped
(SIGTERM, then SIGKILL) when the test ends, on failure too.

Every server a test starts is judged when it ends (close_and_check): it
must exit with `expected_exit` (0 unless the test sets another, or None
for "any") within STOP_TIMEOUT of the SIGTERM the harness sends, or of the
signal the test sent itself; one that had to be killed fails the test, and
so does a sanitizer report anywhere in its stderr.

Standard library only.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LUAHOST = os.environ.get(
    "LUAHOST",
    os.path.normpath(os.path.join(HERE, "..", "..", "build", "luahost")))
HOST = "127.0.0.1"
PORT_RE = re.compile(r"listening on http://[^:\s/]+:(\d+)")
STARTUP_TIMEOUT = 15.0
IO_TIMEOUT = 10.0
# Multiplies the performance bounds (not the protocol limits) the tests
# assert, for slow builds such as TSan: LUAHOST_E2E_TIME_SCALE=5.
TIME_SCALE = float(os.environ.get("LUAHOST_E2E_TIME_SCALE", "1"))
# A server given SIGTERM with nothing in flight exits at once; this bounds
# it on a loaded machine (and a sanitizer build's leak check at exit).
STOP_TIMEOUT = 10.0 * TIME_SCALE
MAX_HEAD = 1 << 20          # refuse to buffer response heads bigger than this
MAX_BODY = 64 << 20         # nor bodies bigger than this


def scaled(seconds):
    """A time bound in seconds, stretched by $LUAHOST_E2E_TIME_SCALE."""
    return seconds * TIME_SCALE


def lua(src):
    """Dedent an inline Lua source (so tests can indent it with Python)."""
    return textwrap.dedent(src).lstrip("\n")


class Symlink:
    """A file-dict value that makes a symbolic link to `target`."""

    def __init__(self, target):
        self.target = target


def write_tree(root, files):
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, Symlink):
            os.symlink(content.target, path)
        elif isinstance(content, bytes):
            with open(path, "wb") as f:
                f.write(content)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(lua(content))


def check_binary():
    if not (os.path.isfile(LUAHOST) and os.access(LUAHOST, os.X_OK)):
        raise AssertionError(
            "luahost binary not found or not executable at %r "
            "(set $LUAHOST)" % LUAHOST)


# --------------------------------------------------------------------------
# Lua snippets shared by several test files.

# A tiny JSON encoder so handlers can report what they saw. Control bytes,
# quotes, backslashes and bytes >= 0x7f are escaped as \u00XX, so a Python
# string decoded from it maps back to the original bytes with latin-1.
JSON_LUA = r'''
local M = {}

local function esc(s)
  return (s:gsub('[%c"\\\127-\255]', function(c)
    return string.format("\\u%04x", c:byte())
  end))
end

local function enc(v, out, depth)
  if depth > 20 then error("json: too deep") end
  local t = type(v)
  if t == "nil" then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then
    if math.type(v) == "integer" then out[#out + 1] = string.format("%d", v)
    elseif v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    else out[#out + 1] = string.format("%.17g", v) end
  elseif t == "string" then out[#out + 1] = '"' .. esc(v) .. '"'
  elseif t == "table" then
    if #v > 0 then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        enc(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      out[#out + 1] = "{"
      local first = true
      for k, x in pairs(v) do
        if not first then out[#out + 1] = "," end
        first = false
        out[#out + 1] = '"' .. esc(tostring(k)) .. '":'
        enc(x, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = '"' .. esc(tostring(v)) .. '"'
  end
end

function M.encode(v)
  local out = {}
  enc(v, out, 0)
  return table.concat(out)
end

return M
'''

# Handler that reports every req field as JSON.
ECHO_LUA = r'''
local json = require "jsonenc"
return function(req)
  return 200, {["content-type"] = "application/json"}, json.encode({
    method = req.method, path = req.path, query = req.query,
    args = req.args, headers = req.headers, body = req.body,
    body_len = req.body and #req.body, remote_addr = req.remote_addr,
    http_version = req.http_version, request_id = req.request_id,
  })
end
'''

# Handler that returns req.body unchanged (binary-safe).
RAW_ECHO_LUA = r'''
return function(req)
  return 200, {["content-type"] = "application/octet-stream"}, req.body
end
'''

HELLO_LUA = r'''
return function(req) return "hello" end
'''


# --------------------------------------------------------------------------
# Process output


class _Collector(threading.Thread):
    """Reads a pipe line by line into a list; lets tests wait for a line."""

    def __init__(self, stream, name):
        super().__init__(name=name, daemon=True)
        self.stream = stream
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()

    def run(self):
        try:
            for raw in iter(self.stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def text(self):
        return "\n".join(self.snapshot())

    def wait_for(self, pred, timeout, start=0):
        """First line (from index `start`) satisfying pred, or None once
        `timeout` seconds pass or the stream ends."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                if self.eof:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(min(remaining, 0.5))


class ServerError(AssertionError):
    pass


class Server:
    """One `luahost serve` process on 127.0.0.1 with a temporary app dir."""

    def __init__(self, files=None, args=(), app_dir=None,
                 listen=HOST + ":0", startup_timeout=STARTUP_TIMEOUT,
                 env=None, pass_app_dir=True):
        self.files = files if files is not None else {}
        self.args = list(args)
        self.listen = listen
        self.startup_timeout = startup_timeout
        self.env = env
        self._own_dir = app_dir is None
        self.app_dir = app_dir
        self.proc = None
        self.port = None
        self.out = None
        self.err = None
        self.returncode = None
        self.pass_app_dir = pass_app_dir   # False: `serve` without APP_DIR
        # What close_and_check requires of the exit: 0, another status, or
        # None (the test judges the exit itself).
        self.expected_exit = 0
        self.killed = False      # stop() had to SIGKILL it
        self.stop_signal = None  # the last signal stop() sent

    # -- lifecycle

    def start(self):
        check_binary()
        if self.app_dir is None:
            self.app_dir = tempfile.mkdtemp(prefix="luahost-e2e-")
        write_tree(self.app_dir, self.files)
        cmd = [LUAHOST, "serve"]
        if self.pass_app_dir:
            cmd.append(self.app_dir)
        if self.listen is not None:
            cmd += ["--listen", self.listen]
        cmd += self.args
        self.cmd = cmd
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.app_dir, env=env)
        self.out = _Collector(self.proc.stdout, "luahost-stdout")
        self.err = _Collector(self.proc.stderr, "luahost-stderr")
        self.out.start()
        self.err.start()
        line = self.err.wait_for(lambda l: PORT_RE.search(l) is not None,
                                 self.startup_timeout)
        if line is None:
            self.close()
            raise ServerError(
                "luahost did not report 'listening on' within %.0fs\n"
                "cmd: %s\nexit: %r\nstderr:\n%s" % (
                    self.startup_timeout, " ".join(cmd), self.returncode,
                    self.err.text()))
        self.port = int(PORT_RE.search(line).group(1))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit status, or None if still running after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send `sig`, wait up to `timeout`; returns the exit status, or
        None if it had to be killed (self.killed is then True and
        close_and_check fails the test)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            return self.returncode
        self.stop_signal = sig
        self.proc.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.killed = True
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.returncode = rc
        return rc

    def close(self):
        """Idempotent teardown: stop the process, reap readers, drop dir."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.stop()
            else:
                self.returncode = self.proc.returncode
            for c in (self.out, self.err):
                if c is not None:
                    c.join(timeout=3)
            for s in (self.proc.stdout, self.proc.stderr):
                if s is None:       # redirected elsewhere by the test
                    continue
                try:
                    s.close()
                except OSError:
                    pass
        if self._own_dir and self.app_dir and os.path.isdir(self.app_dir):
            shutil.rmtree(self.app_dir, ignore_errors=True)
            self.app_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- output

    def stderr_text(self):
        return self.err.text() if self.err else ""

    def stdout_lines(self):
        return self.out.snapshot() if self.out else []

    def wait_stderr(self, pattern, timeout=5.0):
        rx = re.compile(pattern)
        return self.err.wait_for(lambda l: rx.search(l) is not None, timeout)

    def wait_stdout(self, pred, timeout=5.0, start=0):
        return self.out.wait_for(pred, timeout, start)

    # -- HTTP

    def connect(self, timeout=IO_TIMEOUT):
        return Conn(self.port, timeout, server=self)

    def request(self, method="GET", target="/", headers=None, body=None,
                version="HTTP/1.1", timeout=IO_TIMEOUT):
        """One request on a fresh connection; returns the final Response."""
        with self.connect(timeout) as c:
            c.send(build_request(method, target, headers, body, version))
            return c.read_final_response(method, timeout)

    def get(self, target="/", headers=None, timeout=IO_TIMEOUT):
        return self.request("GET", target, headers, None, timeout=timeout)

    def raw(self, data, method="GET", timeout=IO_TIMEOUT):
        """Send raw bytes on a fresh connection; returns (response, conn)
        with the connection still open (caller closes)."""
        c = self.connect(timeout)
        try:
            c.send(data)
            return c.read_response(method, timeout), c
        except BaseException:
            c.close()
            raise


# --------------------------------------------------------------------------
# HTTP client side


def build_request(method="GET", target="/", headers=None, body=None,
                  version="HTTP/1.1", host=True):
    """Bytes of one request. headers: dict or list of (name, value), values
    str or bytes. Adds Host and (for a body) Content-Length unless given."""
    if headers is None:
        items = []
    elif isinstance(headers, dict):
        items = list(headers.items())
    else:
        items = list(headers)
    names = {n.lower() for n, _ in items}
    if host and "host" not in names:
        items.insert(0, ("Host", HOST))
    if isinstance(body, str):
        body = body.encode("utf-8")
    if (body is not None and "content-length" not in names
            and "transfer-encoding" not in names):
        items.append(("Content-Length", str(len(body))))
    out = bytearray(("%s %s %s\r\n" % (method, target, version)).encode("latin-1"))
    for n, v in items:
        out += n.encode("latin-1") + b": "
        out += v if isinstance(v, bytes) else str(v).encode("latin-1")
        out += b"\r\n"
    out += b"\r\n"
    if body is not None:
        out += body
    return bytes(out)


def chunked(*parts, extension=b""):
    """Chunked transfer coding of `parts` (bytes or str), ending chunk too."""
    out = bytearray()
    for p in parts:
        if isinstance(p, str):
            p = p.encode("utf-8")
        out += b"%x" % len(p) + extension + b"\r\n" + p + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class ConnectionClosed(Exception):
    pass


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value), as sent
        self.body = body                # bytes
        self.raw_head = raw_head        # bytes of status line + headers
        self.server = None              # Server it came from, for diagnostics

    def header(self, name, default=None):
        name = name.lower()
        found = default
        for n, v in self.headers:
            if n.lower() == name:
                found = v
        return found

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        body = self.body[:600]
        more = "" if len(self.body) <= 600 else "...(%d bytes)" % len(self.body)
        return "<Response\n%s\n\n%r%s>" % (
            self.raw_head.decode("latin-1").rstrip(), body, more)


class Conn:
    """A client connection with its own read buffer (keep-alive and
    pipelining read responses off it one at a time)."""

    def __init__(self, port, timeout=IO_TIMEOUT, server=None):
        self.server = server
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for response bytes; "
                                 "have %r" % bytes(self.buf[:300]))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed(
                "connection closed by server; unread buffer %r"
                % bytes(self.buf[:300]))
        self.buf += chunk

    def _read_until(self, sep, deadline, limit):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                data = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return data
            if len(self.buf) > limit:
                raise AssertionError("response head exceeds %d bytes" % limit)
            self._fill(deadline)

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _read_to_eof(self, deadline):
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                break
            if len(self.buf) > MAX_BODY:
                raise AssertionError("response body exceeds %d bytes" % MAX_BODY)
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def read_response(self, method="GET", timeout=None):
        """Next response (interim 1xx responses included) off the wire."""
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self._read_until(b"\r\n\r\n", deadline, MAX_HEAD)
        lines = head[:-4].split(b"\r\n")
        m = re.match(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        version = m.group(1).decode()
        status = int(m.group(2))
        reason = (m.group(3) or b"").decode("latin-1")
        headers = []
        for l in lines[1:]:
            if b":" not in l:
                raise AssertionError("bad response header line %r" % l)
            n, v = l.split(b":", 1)
            headers.append((n.decode("latin-1"), v.strip().decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", head)
        resp.server = self.server
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            resp.body = self._read_chunked(deadline)
        elif cl is not None:
            if len(resp.header_all("content-length")) != 1 or not cl.isdigit():
                raise AssertionError("bad Content-Length in %r" % resp)
            n = int(cl)
            if n > MAX_BODY:
                raise AssertionError("Content-Length %d too large" % n)
            resp.body = self._read_exact(n, deadline)
        else:
            resp.body = self._read_to_eof(deadline)
        return resp

    def read_final_response(self, method="GET", timeout=None):
        """Skips interim 1xx responses (at most 5)."""
        for _ in range(5):
            r = self.read_response(method, timeout)
            if not 100 <= r.status < 200:
                return r
        raise AssertionError("too many interim responses")

    def _read_chunked(self, deadline):
        body = bytearray()
        for _ in range(1 << 20):
            line = self._read_until(b"\r\n", deadline, 4096)
            size_s = line[:-2].split(b";", 1)[0].strip()
            size = int(size_s, 16)
            if size == 0:
                # trailers until an empty line
                for _ in range(1000):
                    if self._read_until(b"\r\n", deadline, 65536) == b"\r\n":
                        return bytes(body)
                raise AssertionError("too many trailers")
            body += self._read_exact(size, deadline)
            if self._read_exact(2, deadline) != b"\r\n":
                raise AssertionError("chunk not followed by CRLF")
            if len(body) > MAX_BODY:
                raise AssertionError("chunked body too large")
        raise AssertionError("too many chunks")

    def wait_closed(self, timeout=5.0):
        """True if the server closes (EOF or reset) within `timeout`.
        Bytes received meanwhile are left in self.buf."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except (socket.timeout, TimeoutError):
                return False
            except OSError:
                return True
            if len(self.buf) > MAX_BODY:
                return False


# --------------------------------------------------------------------------
# CLI runs


def run_luahost(args, timeout=15, cwd=None, input_data=None):
    """Runs luahost with args; returns CompletedProcess (text). A process
    still running after `timeout` is killed and reported as failure."""
    check_binary()
    try:
        return subprocess.run([LUAHOST] + list(args), cwd=cwd,
                              stdin=subprocess.DEVNULL if input_data is None else None,
                              input=input_data,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode("utf-8", "replace") if isinstance(b, bytes) else b
        raise AssertionError("luahost %s still running after %ss (killed); "
                             "stdout=%r stderr=%r" % (
                                 " ".join(args), timeout, text(e.stdout),
                                 text(e.stderr))) from None


def app_dir(testcase, files):
    """Temporary directory holding `files`, removed at test end."""
    d = tempfile.mkdtemp(prefix="luahost-e2e-")
    testcase.addCleanup(shutil.rmtree, d, True)
    write_tree(d, files)
    return d


# --------------------------------------------------------------------------
# unittest glue

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "WARNING: ThreadSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_report(text):
    """The first sanitizer report in `text` (with some context), or None."""
    found = [text.index(m) for m in SANITIZER_MARKERS if m in text]
    if not found:
        return None
    i = min(found)
    return text[max(0, i - 200):i + 3000]


def close_and_check(srv):
    """Stops the server (SIGTERM if it still runs) and judges how it
    ended: it must have exited by itself within STOP_TIMEOUT of the signal
    (never killed), with srv.expected_exit (0 unless the test said
    otherwise), and with no sanitizer report on its stderr (the sanitizer
    builds run this same suite)."""
    srv.close()
    text = srv.stderr_text()
    tail = "\n".join(text.splitlines()[-30:])
    report = sanitizer_report(text)
    if report is not None:
        raise AssertionError("luahost stderr has a sanitizer report:\n" + report)
    if srv.proc is None:
        return
    if srv.killed:
        raise AssertionError(
            "luahost did not exit within %.0f s of %s and was killed\n"
            "cmd: %s\nstderr (end):\n%s" % (
                STOP_TIMEOUT, signal.Signals(srv.stop_signal).name
                if srv.stop_signal else "its signal", " ".join(srv.cmd), tail))
    if srv.expected_exit is not None and srv.returncode != srv.expected_exit:
        raise AssertionError(
            "luahost exited with status %r, expected %r\ncmd: %s\nstderr (end):\n%s" % (
                srv.returncode, srv.expected_exit, " ".join(srv.cmd), tail))



class ServerTestCase(unittest.TestCase):
    maxDiff = None

    def start_server(self, files, args=(), **kw):
        srv = Server(files, args, **kw)
        self.addCleanup(close_and_check, srv)
        srv.start()
        return srv

    @classmethod
    def start_class_server(cls, files, args=(), **kw):
        srv = Server(files, args, **kw)
        cls.addClassCleanup(close_and_check, srv)
        srv.start()
        return srv

    @staticmethod
    def _context(resp):
        msg = repr(resp)
        srv = getattr(resp, "server", None)
        if srv is not None and srv.err is not None:
            tail = srv.err.snapshot()[-12:]
            msg += "\n--- last luahost stderr lines ---\n" + "\n".join(tail)
        return msg

    def assertStatus(self, resp, status):
        self.assertEqual(resp.status, status,
                         "unexpected status in " + self._context(resp))

    def assertOK(self, resp, body=None):
        self.assertStatus(resp, 200)
        if body is not None:
            self.assertEqual(resp.body, body if isinstance(body, bytes)
                             else body.encode("utf-8"), self._context(resp))

    def assertHeader(self, resp, name, value):
        self.assertEqual(resp.header(name), value,
                         "header %s in %r" % (name, resp))

    def assertServes(self, srv, target="/hello", body=b"hello"):
        """The server still answers a plain GET on a new connection."""
        r = srv.get(target)
        self.assertOK(r, body)
        self.assertTrue(srv.alive(), "server died; stderr:\n" + srv.stderr_text())
