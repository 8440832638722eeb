"""GET /_ah/metrics (SPEC §13): the Prometheus text format (checked by
`promtool check metrics` on a live scrape), requests and durations by route
(the url pattern, never the raw path), errors, heap per worker, threads,
shared dicts and queues; answered to loopback and to metrics_allow, 403 to
anyone else."""

import os
import re
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, run_luahost  # noqa: E402

APP = {
    "app.lua": r'''
        return {
          role = "backend",
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/item/(%d+)$", script = "hello"},
            {url = "^/boom$", script = "boom"},
            {url = "^/slow$", script = "slow"},
            {url = "^/fill$", script = "fill"},
            {url = "^/threads$", script = "threads"},
            {url = "^/fetch$", script = "fetch"},
          },
          shared = { dicts = { cache = "1m" }, queues = { jobs = 10 } },
        }
    ''',
    "hello.lua": harness.HELLO_LUA,
    "boom.lua": 'return function(req) error("kaboom") end',
    "slow.lua": r'''
        local runtime = require "runtime"
        return function(req) runtime.sleep(0.3) return "slow" end
    ''',
    "fill.lua": r'''
        local shared = require "shared"
        return function(req)
          shared.dict("cache"):set("a", "xyz")
          shared.dict("cache"):set("b", 1)
          shared.queue("jobs"):push({1, 2})
          return "ok"
        end
    ''',
    # one fetch that works (this server's /hello) and one refused (port 1)
    "fetch.lua": r'''
        local urlfetch = require "urlfetch"
        return function(req)
          local port = req.headers.host:match(":(%d+)$")
          local ok = urlfetch.fetch("http://127.0.0.1:" .. port .. "/hello", {deadline = 5})
          local bad, err = urlfetch.fetch("http://127.0.0.1:1/", {deadline = 5})
          return (ok and ok.status or "nil") .. " " .. tostring(bad) .. " " .. tostring(err)
        end
    ''',
    "threads.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local ok_id = bt.start_new_background_thread(function() return 1 end)
          local bad_id = bt.start_new_background_thread(function() error("thread fails") end)
          bt.join(ok_id, 5)
          bt.join(bad_id, 5)
          return "ok"
        end
    ''',
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{(name, frozenset(labels)): value} from an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


class MetricsTests(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(APP, args=["--workers", "2"])

    def scrape(self):
        r = self.srv.get("/_ah/metrics")
        self.assertOK(r)
        self.assertEqual(r.header("content-type").split(";")[0], "text/plain")
        self.assertIn("version=0.0.4", r.header("content-type"))
        return r.body.decode("utf-8")

    def test_live_scrape_passes_promtool(self):
        exe = shutil.which("promtool")
        self.assertIsNotNone(exe, "promtool not installed (Debian package prometheus; "
                             "tools/deps.sh installs it)")
        for t in ("/hello", "/item/7", "/boom", "/nope", "/fill", "/threads"):
            self.srv.get(t)
        text = self.scrape()
        p = subprocess.run([exe, "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + "\n---\n" + text)
        self.assertEqual(p.stdout.decode().strip(), "", text)

    def test_requests_by_route_and_status_never_by_raw_path(self):
        before = parse(self.scrape())
        for _ in range(3):
            self.assertOK(self.srv.get("/hello?x=1"), b"hello")
        for i in range(4):
            self.assertOK(self.srv.get("/item/%d" % (1000 + i)), b"hello")
        for _ in range(2):
            self.assertStatus(self.srv.get("/boom"), 500)
        self.assertStatus(self.srv.get("/unrouted-unique-path-q7"), 404)
        text = self.scrape()
        after = parse(text)

        def delta(route, status):
            k = lambda s: val(s, "luahost_http_requests_total", route=route, status=status) or 0
            return k(after) - k(before)
        self.assertEqual(delta("^/hello$", "200"), 3)
        self.assertEqual(delta("^/item/(%d+)$", "200"), 4)
        self.assertEqual(delta("^/boom$", "500"), 2)
        self.assertEqual(delta("(none)", "404"), 1)
        self.assertNotIn("unrouted-unique-path-q7", text)
        self.assertNotIn("/item/100", text)
        errs = lambda s: val(s, "luahost_handler_errors_total", ) or 0
        self.assertEqual(errs(after) - errs(before), 2)

    def test_duration_histogram(self):
        before = parse(self.scrape())
        self.assertOK(self.srv.get("/slow"), b"slow")
        after = parse(self.scrape())

        def d(le):
            k = lambda s: val(s, "luahost_http_request_duration_seconds_bucket",
                              route="^/slow$", le=le) or 0
            return k(after) - k(before)
        self.assertEqual(d("0.25"), 0)
        self.assertEqual(d("0.5"), 1)
        self.assertEqual(d("+Inf"), 1)
        les = sorted({dict(k[1])["le"] for k in after
                      if k[0] == "luahost_http_request_duration_seconds_bucket"},
                     key=lambda x: float("inf") if x == "+Inf" else float(x))
        self.assertEqual(les, ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                               "2.5", "5", "10", "+Inf"])
        s = val(after, "luahost_http_request_duration_seconds_sum", route="^/slow$")
        self.assertGreaterEqual(s, 0.3)

    def test_urlfetch_calls_and_errors(self):
        before = parse(self.scrape())
        r = self.srv.request("GET", "/fetch", headers={"Host": "127.0.0.1:%d" % self.srv.port})
        self.assertOK(r)
        self.assertTrue(r.body.startswith(b"200 nil "), r.body)
        after = parse(self.scrape())
        d = lambda n: (val(after, n) or 0) - (val(before, n) or 0)
        self.assertEqual(d("luahost_urlfetch_requests_total"), 2)
        self.assertEqual(d("luahost_urlfetch_errors_total"), 1)

    def test_workers_stores_and_threads(self):
        self.assertOK(self.srv.get("/fill"), b"ok")
        self.assertOK(self.srv.get("/threads"), b"ok")
        s = parse(self.scrape())
        self.assertEqual(val(s, "luahost_shared_dict_entries", dict="cache"), 2)
        self.assertGreater(val(s, "luahost_shared_dict_bytes", dict="cache"), 0)
        self.assertGreaterEqual(val(s, "luahost_shared_queue_length", queue="jobs"), 1)
        self.assertGreaterEqual(val(s, "luahost_background_threads_started_total"), 2)
        self.assertGreaterEqual(val(s, "luahost_background_threads_failed_total"), 1)
        self.assertIsNotNone(val(s, "luahost_background_threads_active"))
        heaps = [v for (n, _), v in s.items() if n == "luahost_lua_heap_bytes"]
        self.assertEqual(len(heaps), 2, heaps)   # one per worker
        self.assertGreater(max(heaps), 1000)
        self.assertGreaterEqual(val(s, "luahost_http_connections_open"), 1)
        self.assertGreaterEqual(val(s, "luahost_http_requests_in_flight"), 1)   # this scrape
        self.assertTrue(any(n == "luahost_build_info" and v == 1 for (n, _), v in s.items()))
        for name in ("luahost_urlfetch_requests_total", "luahost_urlfetch_errors_total",
                     "luahost_redis_commands_total", "luahost_redis_errors_total",
                     "luahost_deadlines_exceeded_total", "luahost_memory_limit_errors_total"):
            self.assertIsNotNone(val(s, name), name)


def non_loopback_ipv4():
    """An address of this machine that is not loopback, or None."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))      # no packet is sent
        addr = s.getsockname()[0]
        s.close()
        return None if addr.startswith("127.") else addr
    except OSError:
        return None


class MetricsAccessTests(harness.ServerTestCase):
    """A peer that is not loopback: the server listens on this machine's
    own non-loopback address and the test connects to it, so the host sees
    that address as the peer."""

    def get_from(self, srv, addr, target):
        with socket.create_connection((addr, srv.port), timeout=10) as so:
            so.sendall(build_request("GET", target))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = so.recv(65536)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1])

    def setUp(self):
        self.addr = non_loopback_ipv4()
        if not self.addr:
            self.skipTest("no non-loopback IPv4 address on this machine")

    def test_non_loopback_peer_gets_403(self):
        srv = self.start_server(dict(APP), listen=self.addr + ":0")
        self.assertEqual(self.get_from(srv, self.addr, "/_ah/metrics"), 403)
        self.assertEqual(self.get_from(srv, self.addr, "/_ah/health"), 200)
        self.assertEqual(self.get_from(srv, self.addr, "/hello"), 200)

    def test_metrics_allow_admits_the_network(self):
        files = dict(APP)
        net = ".".join(self.addr.split(".")[:3]) + ".0/24"
        files["app.lua"] = APP["app.lua"].replace(
            'role = "backend",', 'role = "backend", metrics_allow = {"10.9.0.0/16", "%s"},' % net)
        srv = self.start_server(files, listen=self.addr + ":0")
        self.assertEqual(self.get_from(srv, self.addr, "/_ah/metrics"), 200)

    def test_metrics_allow_other_network_still_403(self):
        files = dict(APP)
        files["app.lua"] = APP["app.lua"].replace(
            'role = "backend",', 'role = "backend", metrics_allow = {"10.9.0.0/16"},')
        srv = self.start_server(files, listen=self.addr + ":0")
        self.assertEqual(self.get_from(srv, self.addr, "/_ah/metrics"), 403)

    def test_bad_metrics_allow_is_a_config_error(self):
        d = harness.app_dir(self, {"app.lua": 'return { metrics_allow = {"10.0.0.0/40"} }'})
        p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("metrics_allow[1]", p.stderr)


if __name__ == "__main__":
    unittest.main()
