"""urlfetch over a real `luahost serve` (SPEC §9, §10): a handler waiting
on a slow upstream does not hold its worker (the failure issue 11 started
from), 1,000 fetches wait at once on one worker, a fetch whose request
ends at its deadline is freed (the upstream sees its connection closed), a
background thread started at /_ah/start fetches, hostile upstreams give
clear errors while the host keeps serving, and a fetch in flight at
SIGTERM runs on so that its request finishes within shutdown_grace.

Upstreams: tests/e2e/delay_upstream.py (one epoll loop: thousands of slow
requests at once, and what became of each) and tests/c/fetch_upstream.py
(reset, garbage, huge, trickle), both on 127.0.0.1.
"""

import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from massconn import connect_many, rss_kib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DELAY_UPSTREAM = os.path.join(HERE, "delay_upstream.py")
HOSTILE_UPSTREAM = os.path.join(HERE, "..", "c", "fetch_upstream.py")
NOFILE_WANTED = 8192


def setUpModule():
    # 1,000 client sockets here; luahost (a child: it inherits the limit)
    # holds 1,000 client and 1,000 upstream connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Upstream:
    """A python3 upstream script on 127.0.0.1 (it prints "PORT n")."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen([sys.executable, script] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        line = b""
        ready = select.select([self.proc.stdout], [], [], harness.STARTUP_TIMEOUT)[0]
        if ready:
            line = self.proc.stdout.readline()
        m = re.match(rb"PORT (\d+)", line)
        if not m:
            self.close()
            raise AssertionError("upstream %s did not start: %r" % (script, line))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def get(self, target, timeout=harness.IO_TIMEOUT):
        with harness.Conn(self.port, timeout) as c:
            c.send(harness.build_request("GET", target))
            return c.read_final_response("GET", timeout).body.decode()

    def stats(self, rid=None):
        """/stats as a dict; rid "reset" restarts max_pending and span_ms."""
        q = "?reset=1" if rid == "reset" else "?id=%s" % rid if rid else ""
        text = self.get("/stats" + q)
        return {k: (v if k == "state" else int(v))
                for k, v in (kv.split("=") for kv in text.split())}

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


def wait_until(pred, timeout, what):
    """Polls pred (an upstream's state, over HTTP) until true; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


APP_FILES = {
    "conf.lua": None,   # filled in per server: the upstreams' URLs
    "hello.lua": "return function() return \"hello\" end\n",
    # /fetch?ms=N[&id=X]: a fetch from the delay upstream, its body back
    "fetch.lua": r'''
        local urlfetch = require "urlfetch"
        local conf = require "conf"
        return function(req)
          local u = conf.delay .. "/delay?ms=" .. req.args.ms .. (req.args.id and ("&id=" .. req.args.id) or "")
          local res, err = urlfetch.fetch(u, { deadline = 30 })
          if not res then return 504, tostring(err) end
          return res.status, res.body
        end
    ''',
    # /abandon?ms=N&id=X: starts a fetch, then waits on something else;
    # the request's deadline ends the coroutine with the fetch in flight
    "abandon.lua": r'''
        local urlfetch = require "urlfetch"
        local conf = require "conf"
        return function(req)
          local rpc = urlfetch.start(conf.delay .. "/delay?ms=" .. req.args.ms .. "&id=" .. req.args.id,
                                     { deadline = 30 })
          require("runtime").sleep(30)
          return "the deadline did not end the sleep"
        end
    ''',
    # /fire?ms=N&id=X: starts a fetch, lets it reach the upstream (a short
    # sleep), and answers without ever waiting for it
    "fire.lua": r'''
        local urlfetch = require "urlfetch"
        local conf = require "conf"
        return function(req)
          urlfetch.start(conf.delay .. "/delay?ms=" .. req.args.ms .. "&id=" .. req.args.id,
                         { deadline = 30 })
          require("runtime").sleep(0.3)
          return "started"
        end
    ''',
    # /hostile?path=P[&max=S][&deadline=S][&port=N]: a fetch from the hostile
    # upstream; 502 with the error's text
    "hostile.lua": r'''
        local urlfetch = require "urlfetch"
        local conf = require "conf"
        return function(req)
          local base = req.args.port and ("http://127.0.0.1:" .. req.args.port) or conf.hostile
          local res, err = urlfetch.fetch(base .. req.args.path, {
            max_response_size = req.args.max, deadline = tonumber(req.args.deadline) })
          if not res then return 502, tostring(err) end
          return res.status, #res.body .. " " .. res.body:sub(1, 64)
        end
    ''',
    # /bt: what the thread started by /_ah/start found
    "btstate.lua": r'''
        return function(req)
          local d = require("shared").dict("bt")
          return (d:get("state") or "none") .. "|" .. (d:get("detail") or "")
        end
    ''',
    "start.lua": r'''
        return function(req)
          require("background_thread").start_new_background_thread("jobs:fetcher", {})
          return "started"
        end
    ''',
    # The thread: three fetches of 300 ms at once (start/wait), then one more
    "jobs.lua": r'''
        local M = {}
        function M.fetcher()
          local urlfetch = require "urlfetch"
          local runtime = require "runtime"
          local conf = require "conf"
          local d = require("shared").dict("bt")
          d:set("state", "running")
          local t0 = runtime.monotonic()
          local rpcs = {}
          for i = 1, 3 do rpcs[i] = urlfetch.start(conf.delay .. "/delay?ms=300&id=bt" .. i) end
          local bodies = {}
          for i = 1, 3 do
            local res, err = rpcs[i]:wait()
            bodies[i] = res and (res.status .. ":" .. res.body) or tostring(err)
          end
          local took = runtime.monotonic() - t0
          local res, err = urlfetch.fetch(conf.delay .. "/hello")
          bodies[4] = res and (res.status .. ":" .. res.body) or tostring(err)
          d:set("detail", table.concat(bodies, ",") .. string.format(";%.3f", took))
          d:set("state", "done")
        end
        return M
    ''',
}

ROUTES = '''
  handlers = {
    { url = "^/_ah/start$", script = "start" },
    { url = "^/fetch$", script = "fetch" },
    { url = "^/abandon$", script = "abandon" },
    { url = "^/fire$", script = "fire" },
    { url = "^/hostile$", script = "hostile" },
    { url = "^/bt$", script = "btstate" },
    { url = "^/hello$", script = "hello" },
  },
'''


class UrlfetchServe(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.delay = Upstream(DELAY_UPSTREAM)
        cls.addClassCleanup(cls.delay.close)
        cls.hostile = Upstream(HOSTILE_UPSTREAM)
        cls.addClassCleanup(cls.hostile.close)

    def serve(self, settings):
        files = dict(APP_FILES)
        files["conf.lua"] = 'return { delay = "%s", hostile = "%s" }\n' % (
            self.delay.url, self.hostile.url)
        files["app.lua"] = "return {\n  access_log = false,\n%s\n%s}\n" % (settings, ROUTES)
        return self.start_server(files)

    # (a) the failure issue 11 started from
    def test_slow_fetches_do_not_hold_the_workers(self):
        srv = self.serve("workers = 2,")
        results = {}

        def ask(i):
            try:
                r = srv.get("/fetch?ms=2000&id=a%d" % i, timeout=harness.scaled(20))
                results[i] = (r.status, r.body)
            except Exception as e:   # noqa: BLE001 - reported below
                results[i] = ("error", repr(e))

        t0 = time.monotonic()
        clients = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for c in clients:
            c.start()
        wait_until(lambda: all(self.delay.stats("a%d" % i)["state"] == "pending"
                               for i in range(4)),
                   harness.scaled(5), "the 4 fetches to reach the upstream")
        for _ in range(5):
            p0 = time.monotonic()
            self.assertOK(srv.get("/hello"), "hello")
            took = time.monotonic() - p0
            self.assertLess(took, harness.scaled(0.5),
                            "a trivial route waited %.2fs behind 4 fetching handlers" % took)
        # the probes ran while all four still waited on the upstream
        self.assertEqual([self.delay.stats("a%d" % i)["state"] for i in range(4)],
                         ["pending"] * 4)
        for c in clients:
            c.join(harness.scaled(20))
        elapsed = time.monotonic() - t0
        self.assertEqual(results, {i: (200, b"delayed 2000") for i in range(4)})
        # 4 x 2 s on 2 workers one after another would take 4 s
        self.assertLess(elapsed, harness.scaled(3.5), "the fetches did not wait together")

    # (b) 1,000 fetches wait at once in one worker.  The bound leaves 0.5 s
    # for 1,000 requests and fetches on a 2-core machine shared with the
    # client and the upstream: the best of up to 5 bursts must meet it, so
    # that a passing spike of load elsewhere does not fail it.
    def test_a_thousand_concurrent_fetches_on_one_worker(self):
        n = 1000
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < n + 200:
            self.skipTest("RLIMIT_NOFILE %d is below %d" % (soft, n + 200))
        srv = self.serve("workers = 1,")
        times = []
        for _ in range(5):
            before = self.delay.stats("reset")
            socks = connect_many(srv.port, n, harness.scaled(30))
            try:
                statuses, bodies, elapsed = exchange(socks, b"GET /fetch?ms=1000 HTTP/1.1\r\n"
                                                     b"Host: 127.0.0.1\r\n\r\n",
                                                     harness.scaled(30))
            finally:
                for s in socks:
                    s.close()
            after = self.delay.stats()
            self.assertEqual(statuses, {200: n}, "statuses of %d fetching requests" % n)
            self.assertEqual(bodies, {b"delayed 1000": n})
            self.assertEqual(after["answered"] - before["answered"], n)
            times.append(round(elapsed, 3))
            if elapsed < harness.scaled(1.5):
                break
        self.assertLess(min(times), harness.scaled(1.5),
                        "%d requests each waiting 1 s on a fetch, on one worker, took %s s "
                        "(each burst)" % (n, times))
        self.assertServes(srv)

    # (c) the request's deadline ends its coroutine: the fetch is freed
    def test_fetch_of_a_request_past_its_deadline_is_freed(self):
        srv = self.serve("workers = 1, request_deadline = 1,")
        for route, rid in (("fetch", "c1"), ("abandon", "c2")):
            t0 = time.monotonic()
            r = srv.get("/%s?ms=5000&id=%s" % (route, rid), timeout=harness.scaled(10))
            took = time.monotonic() - t0
            if route == "fetch" and r.status == 504:
                # the fetch's own timeout (clamped to the deadline) came first
                self.assertTrue(r.text.startswith("urlfetch.DeadlineExceededError: "), r)
            else:
                self.assertStatus(r, 500)
            self.assertLess(took, harness.scaled(2.5), "%s answered after %.2fs" % (route, took))
            st = wait_until(lambda: (lambda s: s if s["state"] != "pending" else None)(
                self.delay.stats(rid)), harness.scaled(3),
                "the upstream to see %s's connection closed" % rid)
            self.assertEqual(st["state"], "aborted", "%s: %r" % (rid, st))
            self.assertGreater(st["after_ms"], 800, "%s closed before the deadline" % rid)
            self.assertLess(st["after_ms"], harness.scaled(2.5) * 1000,
                            "%s: the upstream connection stayed open past the deadline" % rid)
        self.assertIn("DeadlineExceededError", srv.stderr_text())
        # the worker keeps serving, fetches included
        self.assertServes(srv)
        self.assertOK(srv.get("/fetch?ms=10"), "delayed 10")

    # (c') a fetch started and never waited for ends with its request
    # (SPEC §9), not at its own 30 s deadline or at some later collection
    def test_fetch_left_running_ends_with_its_request(self):
        srv = self.serve("workers = 1,")
        self.assertOK(srv.get("/fire?ms=20000&id=f1"), "started")
        st = wait_until(lambda: (lambda s: s if s["state"] != "pending" else None)(
            self.delay.stats("f1")), harness.scaled(3),
            "the upstream to see the abandoned fetch's connection closed")
        self.assertEqual(st["state"], "aborted", st)
        self.assertGreater(st["after_ms"], 250, st)   # after the handler's sleep
        self.assertLess(st["after_ms"], harness.scaled(1.5) * 1000, st)
        self.assertServes(srv)

    # (d) a background thread started at /_ah/start fetches on its own loop
    def test_fetch_in_a_background_thread_started_at_ah_start(self):
        srv = self.serve('role = "backend", workers = 1, shared = { dicts = { bt = "64k" } },')
        state = wait_until(lambda: (lambda b: b if b.startswith("done|") else None)(
            srv.get("/bt").text), harness.scaled(10), "the thread's fetches")
        detail, took = state[len("done|"):].split(";")
        self.assertEqual(detail.split(","), ["200:delayed 300"] * 3 + ["200:hello"])
        self.assertLess(float(took), harness.scaled(0.85), "the thread's 3 fetches ran one by one")
        for i in (1, 2, 3):
            self.assertEqual(self.delay.stats("bt%d" % i)["state"], "answered")
        self.assertServes(srv)

    # (e) hostile upstreams: clear errors, the host keeps serving
    def test_hostile_upstreams_give_clear_errors(self):
        srv = self.serve("workers = 1,")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]   # bound, not listening: refused
            cases = [
                ("/hostile?path=/reset", "DownloadError"),
                ("/hostile?path=/garbage", "DownloadError"),
                ("/hostile?path=/huge%3Fsize%3D8000000%26cl%3D0&max=1m", "ResponseTooLargeError"),
                ("/hostile?path=/huge%3Fsize%3D8000000%26cl%3D1&max=1m", "ResponseTooLargeError"),
                ("/hostile?path=/trickle%3Fn%3D100&deadline=0.5", "DeadlineExceededError"),
                ("/hostile?path=/bigheaders%3Fn%3D2000", "DownloadError"),
                ("/hostile?path=/redirect-file", "DownloadError"),
                ("/hostile?path=/&port=%d" % closed_port, "DownloadError"),
            ]
            for target, cls in cases:
                t0 = time.monotonic()
                r = srv.get(target, timeout=harness.scaled(20))
                took = time.monotonic() - t0
                self.assertStatus(r, 502)
                self.assertTrue(r.text.startswith("urlfetch.%s: " % cls),
                                "%s: %r" % (target, r.text))
                self.assertGreater(len(r.text), len("urlfetch.%s: " % cls) + 3,
                                   "%s: no message" % target)
                self.assertLess(took, harness.scaled(5), target)
                self.assertServes(srv)
        ok = srv.get("/hostile?path=/plain")
        self.assertOK(ok, "5 hello")
        rss = rss_kib(srv.proc.pid)
        self.assertLess(rss, 256 * 1024, "RSS %d KiB after refused 8 MB bodies" % rss)

    # (f) SIGTERM: a fetch in flight runs on; its request finishes in the grace
    def test_fetch_in_flight_at_sigterm_finishes_within_grace(self):
        srv = self.serve("workers = 1, shutdown_grace = 10,")
        result = {}

        def ask():
            try:
                r = srv.get("/fetch?ms=1500&id=f1", timeout=harness.scaled(15))
                result["r"] = (r.status, r.body, time.monotonic())
            except Exception as e:   # noqa: BLE001 - reported below
                result["r"] = ("error", repr(e), time.monotonic())

        c = threading.Thread(target=ask)
        c.start()
        wait_until(lambda: self.delay.stats("f1")["state"] == "pending", harness.scaled(5),
                   "the fetch to reach the upstream")
        t_term = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        c.join(harness.scaled(15))
        rc = srv.wait(harness.scaled(10))
        t_exit = time.monotonic()
        status, body, t_answer = result["r"]
        self.assertEqual((status, body), (200, b"delayed 1500"), srv.stderr_text())
        self.assertEqual(self.delay.stats("f1")["state"], "answered")
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertLess(t_answer - t_term, harness.scaled(5))
        self.assertLess(t_exit - t_answer, harness.scaled(3), "exit lagged the last request")


def exchange(socks, request, timeout):
    """Sends `request` on every socket, reads one response from each.
    Returns ({status: count}, {body: count}, seconds from the first send
    to the last complete response)."""
    ep = select.epoll()
    bufs = {}
    statuses, bodies = {}, {}
    try:
        t0 = time.monotonic()
        for s in socks:
            s.send(request)
            bufs[s.fileno()] = bytearray()
            ep.register(s.fileno(), select.EPOLLIN)
        by_fd = {s.fileno(): s for s in socks}
        deadline = t0 + timeout
        last = t0
        while bufs:
            if time.monotonic() > deadline:
                raise AssertionError("%d of %d responses missing after %.0fs"
                                     % (len(bufs), len(socks), timeout))
            for fd, _ in ep.poll(0.1):
                buf = bufs.get(fd)
                if buf is None:
                    continue
                try:
                    data = by_fd[fd].recv(65536)
                except BlockingIOError:
                    continue
                buf += data
                end = buf.find(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", buf[:end]) if end >= 0 else None
                if not data and not (m and len(buf) >= end + 4 + int(m.group(1))):
                    raise AssertionError("connection closed before a full response: %r" % buf[:200])
                if m and len(buf) >= end + 4 + int(m.group(1)):
                    last = time.monotonic()
                    status = int(buf[9:12])
                    body = bytes(buf[end + 4:end + 4 + int(m.group(1))])
                    statuses[status] = statuses.get(status, 0) + 1
                    bodies[body] = bodies.get(body, 0) + 1
                    ep.unregister(fd)
                    del bufs[fd]
        return statuses, bodies, last - t0
    finally:
        ep.close()


if __name__ == "__main__":
    unittest.main()
