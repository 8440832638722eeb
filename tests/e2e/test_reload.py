"""Reload (SPEC §13): SIGHUP re-reads app.lua and every worker builds
fresh states with the current code, without dropping a connection or
failing a request; requests in flight finish on their old states;
background threads keep running and shared dicts keep their data; an
invalid app.lua or a handler that does not load is logged and the running
code stays; settings that need a restart are logged.  `serve --reload`
does the same when a file of the app changes."""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request  # noqa: E402

APP_LUA = r'''
    return {
      role = "backend",
      handlers = {
        {url = "^/_ah/start$", script = "start"},
        {url = "^/v$", script = "v"},
        {url = "^/slow$", script = "slow"},
        {url = "^/count$", script = "count"},
        {url = "^/ticks$", script = "ticks"},
      },
      shared = { dicts = { d = "1m" } },
    }
'''


def version_lua(tag):
    return 'return function(req) return "%s" end' % tag


def slow_lua(tag):
    return r'''
        local runtime = require "runtime"
        return function(req) runtime.sleep(tonumber(req.args.s or "1")) return "%s" end
    ''' % tag


FILES = {
    "app.lua": APP_LUA,
    "v.lua": version_lua("v1"),
    "slow.lua": slow_lua("old-slow"),
    # module state: counts the requests this state served
    "count.lua": r'''
        local n = 0
        return function(req) n = n + 1 return tostring(n) end
    ''',
    # a long-lived background thread started by /_ah/start ticks a dict
    "start.lua": r'''
        local bt = require "background_thread"
        local shared = require "shared"
        return function(req)
          shared.dict("d"):set("kept", "before-reload")
          bt.start_new_background_thread(function()
            local runtime = require "runtime"
            local d = require("shared").dict("d")
            while runtime.sleep(0.02) do d:incr("ticks", 1, 0) end
          end)
          return 200, "started"
        end
    ''',
    "ticks.lua": r'''
        local d = require("shared").dict("d")
        return function(req) return tostring(d:get("ticks")) .. " " .. tostring(d:get("kept")) end
    ''',
}


class Load(threading.Thread):
    """One keep-alive connection sending GET /v back to back; records every
    answer in order; any failure or closed connection is recorded."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.stop = threading.Event()
        self.answers = []
        self.errors = []
        self.conn = srv.connect()

    def run(self):
        try:
            while not self.stop.is_set():
                self.conn.send(build_request("GET", "/v"))
                r = self.conn.read_response()
                if r.status != 200:
                    self.errors.append(repr(r))
                elif (r.header("connection") or "").lower() == "close":
                    self.errors.append("server closed the connection: %r" % r)
                    return
                else:
                    self.answers.append((time.monotonic(), r.body.decode()))
        except Exception as e:   # noqa: BLE001 (any failure fails the test)
            self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            self.conn.close()


class ReloadTests(harness.ServerTestCase):

    def reload_and_wait(self, srv, mark="reloaded|reload refused"):
        n = len(srv.err.snapshot())
        srv.send_signal(signal.SIGHUP)
        line = srv.err.wait_for(lambda l: "reloaded" in l or "reload refused" in l, 10, start=n)
        self.assertIsNotNone(line, "no reload outcome logged:\n" + srv.stderr_text())
        return line, "\n".join(srv.err.snapshot()[n:])

    def write(self, srv, name, text):
        harness.write_tree(srv.app_dir, {name: text})

    def wait_body(self, srv, target, want, timeout=5.0):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = srv.get(target).body.decode()
            if got == want:
                return
            time.sleep(0.05)
        self.fail("%s answered %r, not %r, %.0f s after the change:\n%s"
                  % (target, got, want, timeout, srv.stderr_text()))

    def test_reload_under_load_drops_nothing_and_runs_new_code(self):
        srv = self.start_server(FILES, args=["--workers", "2"])
        loads = [Load(srv) for _ in range(6)]
        for ld in loads:
            ld.start()
        # requests in flight across the reload: they finish on the old code
        slow = [srv.connect() for _ in range(3)]
        for c in slow:
            c.send(build_request("GET", "/slow?s=1"))
        time.sleep(0.3)
        self.write(srv, "v.lua", version_lua("v2"))
        self.write(srv, "slow.lua", slow_lua("new-slow"))
        line, _ = self.reload_and_wait(srv)
        self.assertIn("reloaded", line)
        t_reloaded = time.monotonic()
        for c in slow:
            r = c.read_response()
            self.assertOK(r, b"old-slow")
            c.send(build_request("GET", "/slow?s=0"))   # same connection, new code
            self.assertOK(c.read_response(), b"new-slow")
            c.close()
        time.sleep(0.5)
        for ld in loads:
            ld.stop.set()
        for ld in loads:
            ld.join(10)
        for i, ld in enumerate(loads):
            self.assertEqual(ld.errors, [], "connection %d" % i)
            bodies = [b for _, b in ld.answers]
            self.assertIn("v1", bodies, "connection %d never ran before the reload" % i)
            self.assertEqual(bodies[-1], "v2", "connection %d still runs the old code" % i)
            first_v2 = bodies.index("v2")
            self.assertEqual(set(bodies[first_v2:]), {"v2"}, "old code after the new, conn %d" % i)
            self.assertTrue(set(bodies) <= {"v1", "v2"})
            # new code within a moment of the reload on every connection
            t_first = ld.answers[first_v2][0]
            self.assertLess(t_first - t_reloaded, harness.scaled(1.0))
        self.assertOK(srv.get("/v"), b"v2")
        self.assertTrue(srv.alive())

    def test_states_are_fresh_threads_and_dicts_survive(self):
        srv = self.start_server(FILES, args=["--workers", "1"])
        with srv.connect() as c:
            for i in range(1, 4):
                c.send(build_request("GET", "/count"))
                self.assertOK(c.read_response(), str(i).encode())
        deadline = time.monotonic() + 5
        while srv.get("/ticks").body.startswith(b"nil") and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = int(srv.get("/ticks").body.split()[0])
        line, _ = self.reload_and_wait(srv)
        self.assertIn("reloaded", line)
        self.wait_body(srv, "/count", "1")    # module state started over
        time.sleep(0.3)
        ticks, kept = srv.get("/ticks").body.decode().split()
        self.assertGreater(int(ticks), t0, "the background thread stopped at the reload")
        self.assertEqual(kept, "before-reload")

    def test_invalid_app_lua_keeps_running_config(self):
        srv = self.start_server(FILES, args=["--workers", "2"])
        self.write(srv, "app.lua", "return { workers = 'many' }")
        self.write(srv, "v.lua", version_lua("v2"))
        line, log = self.reload_and_wait(srv)
        self.assertIn("reload refused", line)
        self.assertIn("workers", line)
        for _ in range(4):
            self.assertOK(srv.get("/v"), b"v1")
        # a fixed app.lua reloads
        self.write(srv, "app.lua", APP_LUA)
        line, _ = self.reload_and_wait(srv)
        self.assertIn("reloaded", line)
        self.wait_body(srv, "/v", "v2")

    def test_syntax_error_in_a_handler_keeps_running_code(self):
        srv = self.start_server(FILES, args=["--workers", "2"])
        self.write(srv, "v.lua", 'return function(req) return "v2" end end')
        line, log = self.reload_and_wait(srv)
        self.assertIn("reload refused", line)
        self.assertIn("v.lua", log)
        for _ in range(4):
            self.assertOK(srv.get("/v"), b"v1")
        self.assertTrue(srv.alive())

    def test_settings_that_need_a_restart_are_logged(self):
        files = dict(FILES, **{"app.lua": APP_LUA.replace('role = "backend",',
                                                          'role = "backend", workers = 2,')})
        srv = self.start_server(files)
        self.write(srv, "app.lua", APP_LUA.replace('role = "backend",',
                                                   'role = "frontend", workers = 3,'))
        self.write(srv, "v.lua", version_lua("v2"))
        line, log = self.reload_and_wait(srv)
        self.assertIn("reloaded", line, log)
        self.assertRegex(log, r"workers changed to 3; it needs a restart")
        self.assertRegex(log, r"role changed to frontend; it needs a restart")
        self.wait_body(srv, "/v", "v2")
        # still a backend: background threads are allowed
        self.assertNotIn(b"None", srv.get("/ticks").body)

    def test_redis_settings_need_a_restart(self):
        app = APP_LUA.replace('role = "backend",',
                              'role = "backend", redis = { main = "redis://127.0.0.1:1/0" },')
        srv = self.start_server(dict(FILES, **{"app.lua": app}))
        self.write(srv, "app.lua", app.replace("127.0.0.1:1/0", "127.0.0.1:2/1"))
        self.write(srv, "v.lua", version_lua("v2"))
        line, log = self.reload_and_wait(srv)
        self.assertIn("reloaded", line, log)
        self.assertRegex(log, r"redis, shared.store, shared.timeout or store_prefix changed; "
                              r"they need a restart")
        self.wait_body(srv, "/v", "v2")

    def test_reload_changes_routes_and_limits(self):
        srv = self.start_server(FILES, args=["--workers", "2"])
        self.assertStatus(srv.get("/new"), 404)
        self.write(srv, "app.lua", APP_LUA.replace(
            '{url = "^/v$", script = "v"},',
            '{url = "^/v$", script = "v"}, {url = "^/new$", script = "v"},'))
        line, _ = self.reload_and_wait(srv)
        self.assertIn("reloaded", line)
        deadline = time.monotonic() + 5
        while srv.get("/new").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertOK(srv.get("/new"), b"v1")


class WatchReloadTests(harness.ServerTestCase):

    def wait_body(self, srv, want, timeout):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = srv.get("/v").body.decode()
            if got == want:
                return
            time.sleep(0.05)
        self.fail("/v answered %r, not %r:\n%s" % (got, want, srv.stderr_text()))

    def test_reload_flag_follows_file_changes(self):
        files = dict(FILES)
        files["lib/deep/helper.lua"] = 'return {tag = "h1"}'
        files["h.lua"] = 'local h = require "lib.deep.helper" return function() return h.tag end'
        files["app.lua"] = APP_LUA.replace('{url = "^/v$", script = "v"},',
                                          '{url = "^/v$", script = "v"}, {url = "^/h$", script = "h"},')
        srv = self.start_server(files, args=["--reload", "--workers", "2"])
        self.assertOK(srv.get("/v"), b"v1")
        harness.write_tree(srv.app_dir, {"v.lua": version_lua("v2")})
        self.wait_body(srv, "v2", harness.scaled(5))
        # a module in a subdirectory is watched too: its change brings a
        # reload of its own (a worker whose state was made after the write
        # may show h2 sooner: wait for the reload, then ask both workers)
        n = len(srv.err.snapshot())
        harness.write_tree(srv.app_dir, {"lib/deep/helper.lua": 'return {tag = "h2"}'})
        line = srv.err.wait_for(lambda l: "reloaded" in l, harness.scaled(5), start=n)
        self.assertIsNotNone(line, "no reload after the change in lib/deep:\n" + srv.stderr_text())
        for _ in range(6):
            self.assertOK(srv.get("/h"), b"h2")
        # a syntax error is logged and the running code keeps serving
        n = len(srv.err.snapshot())
        harness.write_tree(srv.app_dir, {"v.lua": 'return function() return "v3" end end'})
        line = srv.err.wait_for(lambda l: "reload refused" in l, harness.scaled(5), start=n)
        self.assertIsNotNone(line, srv.stderr_text())
        for _ in range(3):
            self.assertOK(srv.get("/v"), b"v2")
        harness.write_tree(srv.app_dir, {"v.lua": version_lua("v4")})
        self.wait_body(srv, "v4", harness.scaled(5))

    def test_without_the_flag_changes_wait_for_sighup(self):
        srv = self.start_server(FILES, args=["--workers", "1"])
        harness.write_tree(srv.app_dir, {"v.lua": version_lua("v2")})
        time.sleep(1.0)
        self.assertOK(srv.get("/v"), b"v1")


if __name__ == "__main__":
    unittest.main()
