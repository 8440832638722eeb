"""Soak: the host under full load, bounded in time, loopback only.

- Mixed load: wrk at full speed on a mix of plain requests, handler
  errors, memory-limit hits, background-thread starts, shared dict and
  queue calls and short sleeps.  No crash, only the expected statuses, no
  socket errors, RSS flat after warm-up (sampled from /proc), and on the
  server's side every request it read has its answer in the access log.
- SIGTERM in the middle of full load, counted on both sides.  The client
  records the outcome of every request it sends (each with its own path);
  the server logs each request its handler accepted, and its access log
  has a line for each answer.  A request the server read completely (it
  got a request ID) must have been answered, and that answer must have
  reached the client whole: a request read and never answered, or answered
  and never received, is lost and fails the test, as does a half-written
  response or a client thread that died.  Only requests the server never
  read completely may see their connection closed before any byte of an
  answer (or be refused).  The process exits 0 within the grace.

Request IDs are issued in sequence (host/base/instance.c), so the IDs of
the access log and of the host's own lifecycle requests must be exactly
1..N: a gap is a request that was read and never answered.

wrk is required: without it the mixed-load test is skipped on a developer
machine and fails in CI (CI=true), where tools/deps.sh installs it.

LUAHOST_SOAK_SECONDS sets the mixed load's length (default 8; the report in
RELIABILITY.md uses 60).  The figures are printed on stderr.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from massconn import rss_kib  # noqa: E402

SOAK_SECONDS = float(os.environ.get("LUAHOST_SOAK_SECONDS", "8"))
SANITIZED = harness.TIME_SCALE > 1

APP = {
    "app.lua": r'''
        return {
          workers = 2,
          memory_limit = "16m",
          max_background_threads = 50,
          request_deadline = 10,
          handlers = {   -- prefixes: the SIGTERM client adds its own tokens
            {url = "^/hello", script = "hello"},
            {url = "^/err", script = "err"},
            {url = "^/mem", script = "mem"},
            {url = "^/spawn", script = "spawn"},
            {url = "^/shared", script = "sharedops"},
            {url = "^/sleep", script = "sleep"},
            {url = "^/big", script = "big"},
            {url = "^/busy", script = "busy"},
            {url = "^/nap", script = "nap"},
          },
        }
    ''',
    # accepted(req): the server's own record that a handler got the request
    "acc.lua": r'''
        local runtime = require "runtime"
        return function(req) runtime.log("info", "accepted %s", req.path) end
    ''',
    "hello.lua": r'''
        local accepted = require "acc"
        return function(req) accepted(req) return "hello" end
    ''',
    "err.lua": 'return function(req) error("soak error") end\n',
    "mem.lua": r'''
        return function(req)
          local t = {}
          for i = 1, 1e8 do t[i] = i end   -- past memory_limit: 500
        end
    ''',
    "spawn.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local ok, id = pcall(bt.start_new_background_thread,
                               function(n) return n * 2 end, {21})
          if ok then return "spawned " .. id end
          if bt.BackgroundThreadLimitReachedError:is_instance(id) then return "busy" end
          error(id)
        end
    ''',
    "sharedops.lua": r'''
        local shared = require "shared"
        local d, q = shared.dict("soak"), shared.queue("soak")
        local accepted = require "acc"
        return function(req)
          accepted(req)
          d:incr("n", 1, 0)
          d:set("k" .. (d:get("n") % 100), string.rep("v", 100))
          q:push({n = d:get("n")}, 0)
          q:pop(0)
          return "ok"
        end
    ''',
    "sleep.lua": r'''
        local runtime = require "runtime"
        local accepted = require "acc"
        return function(req) accepted(req) runtime.sleep(0.002) return "slept" end
    ''',
    "nap.lua": r'''
        local runtime = require "runtime"
        local accepted = require "acc"
        return function(req)   -- parked when SIGTERM comes; woken early, answers
          accepted(req)
          return "napped " .. tostring(runtime.sleep(0.25))
        end
    ''',
    "busy.lua": r'''
        local accepted = require "acc"
        return function(req)   -- 30 ms of CPU: in flight when SIGTERM comes
          accepted(req)
          local t = os.clock() + 0.03
          while os.clock() < t do end
          return "busy"
        end
    ''',
    "big.lua": r'''
        local body = string.rep("b", 256 * 1024)
        local accepted = require "acc"
        return function(req) accepted(req) return body end
    ''',
}

# wrk's request mix (weights), and per-thread status counts printed at the end.
WRK_SCRIPT = r'''
local paths = {"/hello", "/hello", "/hello", "/hello", "/err", "/mem", "/spawn",
               "/shared", "/shared", "/sleep", "/sleep"}
counts = {}   -- global: done() reads each thread's copy
local threads = {}
function setup(thread) table.insert(threads, thread) end
local i = 0
function request()
  i = i + 1
  return wrk.format("GET", paths[i % #paths + 1])
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("STATUS %d %d\n", k, v)) end
  local e = summary.errors
  io.write(string.format("ERRORS %d %d %d %d %d\n", e.connect, e.read, e.write,
                         e.status, e.timeout))
  io.write(string.format("REQUESTS %d\n", summary.requests))
end
'''


def report(msg):
    sys.stderr.write("soak: " + msg + "\n")
    sys.stderr.flush()


# time remote method path[?query] status bytes duration request-id user-agent
ACCESS_RE = re.compile(
    r"^\S+ \S+ (\S+) ([^\s?]+)\S* (\d{3}) (\d+) \S+ ([0-9a-f]{8})-([0-9a-f]+) (?:-|\".*\")$")
RID_RE = re.compile(r"\[request_id=([0-9a-f]{8})-([0-9a-f]+)\]")


def access_log(srv):
    """[(method, path, status, bytes, rid, seq)] from the text access log."""
    out = []
    for line in srv.stdout_lines():
        m = ACCESS_RE.match(line)
        if m:
            method, path, status, nbytes, prefix, seq = m.groups()
            out.append((method, path, int(status), int(nbytes),
                        prefix + "-" + seq, int(seq, 16)))
    return out


def server_side(test, srv, report_first=None):
    """Checks, from the server's logs once it has exited, that every
    request ID it issued (they run 1..N) was answered: an access log line
    with bytes written, or the log line of the host's own /_ah/start or
    /_ah/stop; and that every request a handler accepted was answered.
    Returns (access entries, {rid: (seq, path)} of the accepted requests);
    report_first(entries, accepted) runs before the checks."""
    entries = access_log(srv)
    seqs = {e[5] for e in entries}
    accepted = {}
    for line in srv.err.snapshot():
        m = RID_RE.search(line)
        if not m:
            continue
        rid, seq = m.group(1) + "-" + m.group(2), int(m.group(2), 16)
        if "/_ah/start answered" in line or "/_ah/stop answered" in line:
            seqs.add(seq)
        elif " accepted " in line:
            accepted[rid] = (seq, line.split(" accepted ", 1)[1])
    if report_first:
        report_first(entries, accepted)
    test.assertTrue(entries, "no access log")
    top = max(seqs | {seq for seq, _ in accepted.values()})
    missing = sorted(set(range(1, top + 1)) - seqs)
    test.assertEqual(missing, [], "request IDs issued and never answered (of 1..%d): %s"
                     % (top, missing[:20]))
    answered = {e[4] for e in entries if e[3] > 0}
    unanswered = sorted(r for r in accepted if r not in answered)
    test.assertEqual(unanswered, [], "requests a handler accepted and the server never "
                     "answered: %s" % [(r, accepted[r][1]) for r in unanswered[:20]])
    return entries, accepted


def require_wrk(test):
    if shutil.which("wrk"):
        return
    if os.environ.get("CI"):
        test.fail("wrk is not installed (tools/deps.sh installs it); "
                  "CI never skips the soak")
    test.skipTest("wrk is not installed (tools/deps.sh)")


class MixedLoad(harness.ServerTestCase):

    def test_mixed_load_no_crash_rss_flat(self):
        require_wrk(self)
        srv = self.start_server(APP, args=["--role", "backend"])
        d = tempfile.mkdtemp(prefix="luahost-soak-")
        self.addCleanup(shutil.rmtree, d, True)
        script = os.path.join(d, "mix.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c64", "-d%ds" % max(1, int(SOAK_SECONDS)), "--timeout", "10s",
             "-s", script, "http://127.0.0.1:%d/" % srv.port],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        samples = []
        t0 = time.monotonic()
        while wrk.poll() is None:
            samples.append((time.monotonic() - t0, rss_kib(srv.proc.pid)))
            time.sleep(0.25)
        out, _ = wrk.communicate()
        self.assertEqual(wrk.returncode, 0, out)
        self.assertTrue(srv.alive(), srv.stderr_text()[-3000:])

        statuses = {int(a): int(b) for a, b in re.findall(r"STATUS (\d+) (\d+)", out)}
        errors = [int(x) for x in re.search(r"ERRORS (\d+) (\d+) (\d+) (\d+) (\d+)",
                                            out).groups()]
        total = int(re.search(r"REQUESTS (\d+)", out).group(1))
        self.assertEqual(set(statuses) - {200, 500}, set(), out)
        self.assertGreater(statuses.get(200, 0), 0, out)
        self.assertGreater(statuses.get(500, 0), 0, out)   # errors and memory hits
        self.assertEqual(errors[:3] + errors[4:], [0, 0, 0, 0], "socket errors: " + out)

        warm = [r for t, r in samples if t >= SOAK_SECONDS * 0.25]
        self.assertTrue(warm, samples)
        after_warmup, peak, last = warm[0], max(warm), warm[-1]
        report("mixed load %.0f s: %d requests (%.0f/s), statuses %s; RSS after "
               "warm-up %.1f MiB, peak %.1f MiB, at the end %.1f MiB" % (
                   SOAK_SECONDS, total, total / SOAK_SECONDS, statuses,
                   after_warmup / 1024, peak / 1024, last / 1024))
        if not SANITIZED:   # ASan's quarantine holds freed memory on purpose
            self.assertLess(peak, after_warmup * 1.25 + 16 * 1024,
                            "RSS grew after warm-up: %r" % samples)
        self.assertEqual(srv.stop(timeout=harness.scaled(15)), 0, srv.stderr_text()[-3000:])
        # The server's side: every request it read was answered.  wrk
        # counts only the answers it read before its time was up: it drops
        # at most the one in flight on each of its 64 connections.
        entries, _ = server_side(self, srv)
        self.assertGreaterEqual(len(entries), total)
        self.assertLessEqual(len(entries) - total, 64, "answers wrk never counted")
        zero = [e for e in entries if e[3] == 0]
        self.assertEqual(zero, [], "requests answered with no byte written")
        report("mixed load: %d requests read and answered by the server, %d counted by wrk"
               % (len(entries), total))


class Outcomes:
    """Every request's outcome, counted across client threads; by token
    (the path each request carries), the outcome and the request ID of a
    complete answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"complete": 0, "closed_before_any_byte": 0, "refused": 0,
                       "partial": 0}
        self.partial_examples = []
        self.by_path = {}       # path -> (kind, request ID or None)
        self.errors = []        # client threads that died
        self.t_signal = None
        self.across_signal = 0  # sent before the signal, answered after it

    def add(self, kind, detail=None, path=None, rid=None):
        with self.lock:
            self.counts[kind] += 1
            if kind == "partial" and len(self.partial_examples) < 5:
                self.partial_examples.append(detail)
            if path is not None:
                self.by_path[path] = (kind, rid)


def one_request(sock, path):
    """Sends one request and reads its response:
    (outcome, keep_alive or detail, request ID)."""
    sock.sendall(("GET %s HTTP/1.1\r\nHost: soak\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout) as e:
            return (("closed_before_any_byte", False, None) if not buf
                    else ("partial", repr(e), None))
        if not chunk:
            return (("closed_before_any_byte", False, None) if not buf
                    else ("partial", buf[:200], None))
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    rid = re.search(rb"(?im)^x-request-id:\s*(\S+)", head)
    if not head.startswith(b"HTTP/1.1 ") or not m or not rid:
        return ("partial", head[:200], None)
    need = int(m.group(1))
    while len(body) < need:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout) as e:
            return ("partial", "%r after %d of %d body bytes" % (e, len(body), need), None)
        if not chunk:
            return ("partial", "closed after %d of %d body bytes" % (len(body), need), None)
        body += chunk
    if len(body) != need:
        return ("partial", "extra bytes after the body", None)
    keep = re.search(rb"(?im)^connection:\s*close", head) is None
    return ("complete", keep, rid.group(1).decode())


class ShutdownUnderLoad(harness.ServerTestCase):

    def test_sigterm_under_full_load_loses_nothing(self):
        grace = 5
        srv = self.start_server(APP, args=["--role", "backend", "--shutdown-grace", str(grace)])
        outcomes = Outcomes()
        stop_at = [None]
        paths = ["/hello", "/sleep", "/big", "/shared", "/hello", "/sleep", "/busy", "/nap"]

        def client(n):
            sock = None
            i = 0
            while stop_at[0] is None or time.monotonic() < stop_at[0]:
                if sock is None:
                    try:
                        sock = socket.create_connection((harness.HOST, srv.port), timeout=10)
                    except OSError:
                        outcomes.add("refused")
                        if stop_at[0] is not None:
                            return
                        time.sleep(0.01)
                        continue
                i += 1
                path = "%s/%d-%d" % (paths[(n + i) % len(paths)], n, i)
                t_sent = time.monotonic()
                try:
                    kind, detail, rid = one_request(sock, path)
                except (BrokenPipeError, ConnectionResetError):
                    kind, detail, rid = "closed_before_any_byte", False, None
                outcomes.add(kind, detail, path, rid)
                t_sig = outcomes.t_signal
                if kind == "complete" and t_sig is not None and t_sent < t_sig:
                    with outcomes.lock:
                        outcomes.across_signal += 1
                if kind != "complete" or not detail:
                    sock.close()
                    sock = None
            if sock is not None:
                sock.close()

        def guarded(n):
            try:
                client(n)
            except BaseException as e:  # noqa: BLE001 - a dead client fails the test
                with outcomes.lock:
                    outcomes.errors.append("client %d: %r" % (n, e))

        threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(24)]
        for t in threads:
            t.start()
        # load for a while: until enough answers came (bounded in time)
        deadline = time.monotonic() + harness.scaled(10)
        time.sleep(1.5)
        while outcomes.counts["complete"] < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = outcomes.counts["complete"]
        t_term = time.monotonic()
        outcomes.t_signal = t_term
        srv.send_signal(signal.SIGTERM)
        stop_at[0] = t_term + grace + 2
        rc = srv.wait(harness.scaled(grace + 5))
        took = time.monotonic() - t_term
        for t in threads:
            t.join(timeout=grace + 15)
        alive = sum(1 for t in threads if t.is_alive())
        srv.close()   # the log readers have all the server wrote

        def summary(entries, accepted):
            mine = [e for e in entries if e[1].count("/") == 2]
            report("SIGTERM under load: %d requests answered before the signal, %d in "
                   "flight at it and answered after; client outcomes %s; server: %d client "
                   "requests answered (%d with no byte written), %d accepted by handlers; "
                   "exit %r after %.2f s" % (
                       before, outcomes.across_signal, outcomes.counts, len(mine),
                       sum(1 for e in mine if e[3] == 0), len(accepted), rc, took))

        self.assertEqual(outcomes.errors, [], "client threads died")
        entries, accepted = server_side(self, srv, summary)
        mine = {e[1]: e for e in entries if e[1].count("/") == 2}
        lost = []
        for path, e in mine.items():       # answered by the server...
            kind, rid = outcomes.by_path.get(path, (None, None))
            if kind != "complete" or rid != e[4]:   # ...and not received whole
                lost.append((path, e[4], kind))
        for rid, (_, path) in accepted.items():
            if path not in mine:
                lost.append((path, rid, "accepted, no access line"))
        unseen = [p for p, (kind, _) in outcomes.by_path.items()
                  if kind == "complete" and p not in mine]
        closed = [p for p, (kind, _) in outcomes.by_path.items()
                  if kind == "closed_before_any_byte"]
        read_then_closed = [p for p in closed
                            if p in mine or p in {v[1] for v in accepted.values()}]
        self.assertEqual(alive, 0, "client threads still running")
        self.assertGreater(before, 100, outcomes.counts)
        self.assertGreater(outcomes.across_signal, 0, "no request was in flight at the signal")
        self.assertEqual(outcomes.counts["partial"], 0, outcomes.partial_examples)
        self.assertEqual(lost, [], "requests read by the server and never answered whole")
        self.assertEqual(unseen, [], "complete answers with no access log line")
        self.assertEqual(read_then_closed, [], "read by the server, closed without answer")
        self.assertEqual(len(mine), outcomes.counts["complete"])
        self.assertEqual(rc, 0, srv.stderr_text()[-3000:])
        self.assertLess(took, harness.scaled(grace + 1))


if __name__ == "__main__":
    unittest.main()
