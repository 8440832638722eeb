"""Command line and process lifecycle (SPEC §2, §3, §4 access log, §6
lifecycle): --version/--help, usage and configuration errors (exit 2 naming
the key), option precedence, signals, access log formats, backend
/_ah/start and /_ah/stop, shutdown hook, `luahost run` and `luahost test`."""

import datetime
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, run_luahost  # noqa: E402

HELLO_APP = {
    "app.lua": r'''
        return { handlers = { {url = "^/hello$", script = "hello"} } }
    ''',
    "hello.lua": harness.HELLO_LUA,
}


class CliTests(harness.ServerTestCase):

    def test_version(self):
        p = run_luahost(["--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout + p.stderr, r"\d+\.\d+")

    def test_help(self):
        p = run_luahost(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout + p.stderr
        for word in ("serve", "run", "test", "--listen", "--workers"):
            self.assertIn(word, out)

    def test_usage_errors_exit_2_naming_option(self):
        d = harness.app_dir(self, HELLO_APP)
        cases = [
            (["--bogus-flag"], "bogus-flag"),
            (["frobnicate"], "frobnicate"),
            (["serve", d, "--listen", "127.0.0.1:0", "--workers", "x"], "workers"),
            (["serve", d, "--listen", "127.0.0.1:0", "--workers", "0"], "workers"),
            (["serve", d, "--listen", "127.0.0.1:0", "--log-format", "xml"], "log-format"),
            (["serve", d, "--listen", "127.0.0.1:0", "--role", "middle"], "role"),
            (["serve", d, "--listen", "127.0.0.1:0", "--memory-limit", "lots"], "memory-limit"),
            (["serve", d, "--listen", "127.0.0.1:0", "--request-deadline", "soon"], "request-deadline"),
            (["serve", d, "--listen", "nonsense"], "listen"),
            (["serve", d, "--listen", "127.0.0.1:0", "--no-such-option"], "no-such-option"),
            (["serve", d, "--listen"], "listen"),
        ]
        for args, word in cases:
            with self.subTest(args=args):
                p = run_luahost(args, timeout=5)
                self.assertEqual(p.returncode, 2, "stderr: " + p.stderr)
                self.assertIn(word, p.stderr)

    def test_missing_app_dir_is_usage_error(self):
        p = run_luahost(["serve", "/nonexistent/luahost-app",
                         "--listen", "127.0.0.1:0"], timeout=5)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("/nonexistent/luahost-app", p.stderr)

    def test_config_errors_exit_2_naming_key(self):
        cases = [
            ('return {workers = "x"}', "workers"),
            ("return {bogus = 1}", "bogus"),
            ('return {role = "middle"}', "role"),
            ('return {memory_limit = "lots"}', "memory_limit"),
            ('return {max_body = "12 parsecs"}', "max_body"),
            ('return {handlers = "x"}', "handlers"),
            ('return {access_log = "yes"}', "access_log"),
            ('return {request_deadline = "soon"}', "request_deadline"),
            ('return {shutdown_grace = {}}', "shutdown_grace"),
            ('return {max_background_threads = "many"}', "max_background_threads"),
            ('return {handlers = {{url = "^/"}}}', "handlers"),
            ('return 5', "app.lua"),
        ]
        for src, word in cases:
            with self.subTest(app=src):
                d = harness.app_dir(self, {"app.lua": src + "\n",
                                           "main.lua": harness.HELLO_LUA})
                p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=5)
                self.assertEqual(p.returncode, 2, "stderr: " + p.stderr)
                self.assertIn(word, p.stderr)

    def test_app_lua_syntax_error_is_reported(self):
        d = harness.app_dir(self, {"app.lua": "return {workers = \n"})
        p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=5)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("app.lua", p.stderr)

    def test_listen_from_app_lua(self):
        srv = self.start_server(dict(HELLO_APP, **{"app.lua": r'''
            return { listen = "127.0.0.1:0",
                     handlers = { {url = "^/hello$", script = "hello"} } }
        '''}), listen=None)
        self.assertServes(srv)

    def test_cli_listen_overrides_app_lua(self):
        srv = self.start_server(dict(HELLO_APP, **{"app.lua": r'''
            return { listen = "127.0.0.1:1",
                     handlers = { {url = "^/hello$", script = "hello"} } }
        '''}))
        self.assertNotEqual(srv.port, 1)
        self.assertServes(srv)

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(sig=sig.name):
                srv = self.start_server(HELLO_APP)
                self.assertServes(srv)
                t0 = time.monotonic()
                rc = srv.stop(sig, timeout=10)
                self.assertEqual(rc, 0, "stderr:\n" + srv.stderr_text())
                self.assertLess(time.monotonic() - t0, harness.scaled(5.0))

    def test_sigterm_wakes_sleeping_request_and_answers_it(self):
        srv = self.start_server({
            "app.lua": r'''
                return { handlers = {
                  {url = "^/hello$", script = "hello"},
                  {url = "^/nap$", script = "nap"} } }
            ''',
            "hello.lua": harness.HELLO_LUA,
            "nap.lua": r'''
                local runtime = require "runtime"
                return function(req)
                  io.stderr:write("NAP-STARTED\n"); io.stderr:flush()
                  local ok = runtime.sleep(20)
                  return "slept " .. tostring(ok) .. " shutting "
                         .. tostring(runtime.is_shutting_down())
                end
            ''',
        })
        result = {}

        def client():
            try:
                result["resp"] = srv.get("/nap", timeout=15)
            except Exception as e:  # reported below
                result["err"] = e

        t = threading.Thread(target=client, daemon=True)
        t.start()
        self.assertIsNotNone(srv.wait_stderr("NAP-STARTED", 5), srv.stderr_text())
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        t.join(15)
        self.assertFalse(t.is_alive(), "client still waiting")
        self.assertNotIn("err", result, result.get("err"))
        self.assertOK(result["resp"], b"slept false shutting true")
        rc = srv.wait(10)
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertLess(time.monotonic() - t0, harness.scaled(5.0))

    def test_serve_without_app_dir_serves_example(self):
        srv = self.start_server({}, pass_app_dir=False)
        self.assertStatus(srv.get("/_ah/health"), 200)
        r = srv.get("/?name=e2e")
        # the bundled app's greeting (scripts/example/main.lua)
        self.assertOK(r)
        self.assertTrue(r.body.startswith(b"hello, e2e\nrole: frontend\n"), repr(r))
        self.assertIn(("request: %s" % r.header("x-request-id")).encode(), r.body)
        self.assertEqual(srv.stop(signal.SIGTERM), 0)

    def test_sigterm_lets_busy_request_finish(self):
        # A CPU-bound request in flight at SIGTERM still gets its answer.
        srv = self.start_server({
            "app.lua": r'''
                return { handlers = { {url = "^/busy$", script = "busy"} } }
            ''',
            "busy.lua": r'''
                local runtime = require "runtime"
                return function(req)
                  io.stderr:write("BUSY-STARTED\n"); io.stderr:flush()
                  local t0 = runtime.monotonic()
                  while runtime.monotonic() - t0 < 1.0 do end
                  return "done"
                end
            ''',
        })
        with srv.connect() as c:
            c.send(build_request("GET", "/busy"))
            self.assertIsNotNone(srv.wait_stderr("BUSY-STARTED", 5))
            srv.send_signal(signal.SIGTERM)
            self.assertOK(c.read_response(timeout=10), b"done")
        self.assertEqual(srv.wait(10), 0, srv.stderr_text())

    def test_shutdown_grace_ends_stuck_request_and_logs_its_id(self):
        srv = self.start_server({
            "app.lua": r'''
                return { shutdown_grace = 1,
                         handlers = { {url = "^/stuck$", script = "stuck"} } }
            ''',
            "stuck.lua": r'''
                local runtime = require "runtime"
                return function(req)
                  io.stderr:write("STUCK-ID " .. req.request_id .. "\n")
                  io.stderr:flush()
                  local t0 = runtime.monotonic()
                  while runtime.monotonic() - t0 < 30 do end
                  return "done"
                end
            ''',
        })
        with srv.connect() as c:
            c.send(build_request("GET", "/stuck"))
            line = srv.wait_stderr("STUCK-ID ", 5)
            self.assertIsNotNone(line)
            rid = line.split("STUCK-ID ", 1)[1].strip()
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            rc = srv.wait(8)
            took = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertLess(took, harness.scaled(4.0), "grace of 1 s took %.1fs" % took)
        after = srv.stderr_text().split(line, 1)[1]
        self.assertIn(rid, after, "stuck request id not logged at shutdown")


class AccessLogTests(harness.ServerTestCase):

    def test_text_access_log_line(self):
        srv = self.start_server(HELLO_APP)
        r = srv.get("/hello?x=1")
        self.assertOK(r, b"hello")
        rid = r.header("x-request-id")
        line = srv.wait_stdout(lambda l: rid in l, 3)
        self.assertIsNotNone(line, "no access log line on stdout for %s; "
                             "stdout=%r" % (rid, srv.stdout_lines()))
        fields = line.split()
        self.assertTrue(any(f.startswith("127.0.0.1") for f in fields), line)
        for word in ("GET", "200", rid):
            self.assertIn(word, fields, line)
        self.assertTrue(any(f.startswith("/hello") for f in fields), line)
        self.assertNotIn(rid, srv.stderr_text(), "access line also on stderr")

        r404 = srv.get("/nope")
        line = srv.wait_stdout(lambda l: r404.header("x-request-id") in l, 3)
        self.assertIsNotNone(line)
        self.assertIn("404", line.split())

    def test_json_access_log(self):
        srv = self.start_server(HELLO_APP, args=["--log-format", "json"])
        rids = []
        with srv.connect() as c:
            for _ in range(5):
                c.send(build_request("GET", "/hello"))
                r = c.read_response()
                self.assertOK(r, b"hello")
                rids.append(r.header("x-request-id"))
        # lines are written in answer order: the last one's means all
        self.assertIsNotNone(srv.wait_stdout(lambda l: rids[-1] in l, 3),
                             srv.stdout_lines())
        entries = []
        for line in srv.stdout_lines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                self.fail("stdout line is not JSON: %r" % line)
        for rid in rids:
            mine = [e for e in entries if e.get("request_id") == rid]
            self.assertEqual(len(mine), 1, "entries for %s: %r" % (rid, entries))
            e = mine[0]
            for key in ("time", "remote_addr", "method", "path", "status",
                        "bytes", "duration_ms", "request_id"):
                self.assertIn(key, e)
            self.assertEqual(e["method"], "GET")
            self.assertEqual(e["path"], "/hello")
            self.assertEqual(e["status"], 200)
            self.assertIsInstance(e["bytes"], int)
            self.assertGreaterEqual(e["bytes"], 5)
            self.assertIsInstance(e["duration_ms"], (int, float))
            self.assertGreaterEqual(e["duration_ms"], 0)
            self.assertTrue(str(e["remote_addr"]).startswith("127.0.0.1"), e)

    def test_json_access_log_escapes_odd_paths(self):
        srv = self.start_server(HELLO_APP, args=["--log-format", "json"])
        targets = ['/a"b', "/a\\b", "/%22%0a%00", "/\u00e9".encode("utf-8").decode("latin-1")]
        rids = []
        for t in targets + ["/hello"]:
            with srv.connect() as c:
                c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % t).encode("latin-1"))
                r = c.read_response()
                rids.append(r.header("x-request-id"))
        # each line is written just after its answer (by whichever worker)
        for rid in rids:
            self.assertIsNotNone(srv.wait_stdout(lambda l: rid in l, 5),
                                 "no line for %s: %r" % (rid, srv.stdout_lines()))
        lines = srv.stdout_lines()
        self.assertEqual(len(lines), len(targets) + 1, lines)
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                self.fail("access log line is not JSON: %r" % line)

    def test_access_log_false_writes_nothing(self):
        srv = self.start_server(dict(HELLO_APP, **{"app.lua": r'''
            return { access_log = false, workers = 1,
                     handlers = { {url = "^/hello$", script = "hello"},
                                  {url = "^/mark$", script = "mark"} } }
        ''', "mark.lua": r'''
            return function(req) io.stdout:write("MARK\n") io.stdout:flush() return "m" end
        '''}))
        for _ in range(3):
            self.assertOK(srv.get("/hello"), b"hello")
        # one worker writes a request's access line right after its answer,
        # before it reads the next request: any line for the requests
        # above would be on stdout before this marker
        self.assertOK(srv.get("/mark"), b"m")
        self.assertIsNotNone(srv.wait_stdout(lambda l: l == "MARK", 5), srv.stdout_lines())
        self.assertEqual(srv.stdout_lines(), ["MARK"])

    def test_access_log_time_bytes_duration(self):
        # SPEC §4: time, remote address, method, path, status, bytes,
        # duration and request ID, each checked against what the client saw.
        srv = self.start_server({
            "app.lua": 'return { handlers = { {url = "^/nap$", script = "nap"} } }',
            "nap.lua": r'''
                local runtime = require "runtime"
                return function(req)
                  runtime.sleep(0.25)
                  return 201, {["x-a"] = "b"}, string.rep("z", 1234)
                end
            ''',
        })
        t_before = time.time()
        t0 = time.monotonic()
        with srv.connect() as c:
            c.send(build_request("GET", "/nap"))
            r = c.read_response()
        took = time.monotonic() - t0
        t_after = time.time()
        self.assertStatus(r, 201)
        rid = r.header("x-request-id")
        line = srv.wait_stdout(lambda l: rid in l, 5)
        self.assertIsNotNone(line, srv.stdout_lines())
        m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z (\S+) GET /nap "
                     r"201 (\d+) (\d+(?:\.\d+)?)ms (\S+) (?:-|\".*\")$", line)
        self.assertIsNotNone(m, "access line %r" % line)
        stamp, remote, nbytes, dur_ms, logged_rid = m.groups()
        fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in stamp else "%Y-%m-%dT%H:%M:%S"
        when = datetime.datetime.strptime(stamp, fmt).replace(
            tzinfo=datetime.timezone.utc).timestamp()
        self.assertGreaterEqual(when, t_before - 1.0, line)   # UTC, second precision at worst
        self.assertLessEqual(when, t_after + 1.0, line)
        self.assertTrue(remote.startswith("127.0.0.1"), line)
        self.assertEqual(logged_rid, rid)
        # bytes: what went out for this response, whole or body only
        sent = len(r.raw_head) + len(r.body)
        self.assertIn(int(nbytes), (sent, len(r.body)),
                      "bytes %s, the client got %d (%d of body)" % (nbytes, sent, len(r.body)))
        self.assertEqual(len(r.body), 1234)
        # duration: the handler slept 0.25 s; the client waited at least that
        self.assertGreaterEqual(float(dur_ms), 250.0, line)
        self.assertLessEqual(float(dur_ms), took * 1000 + 1, line)


LIFECYCLE_APP = {
    "app.lua": r'''
        return { handlers = {
          {url = "^/_ah/start$", script = "ahstart"},
          {url = "^/_ah/stop$", script = "ahstop"},
          {url = "^/hello$", script = "hello"},
          {url = "^/sethook1$", script = "sethook1"},
          {url = "^/sethook2$", script = "sethook2"},
        } }
    ''',
    "hello.lua": harness.HELLO_LUA,
    "ahstart.lua": r'''
        return function(req)
          io.stderr:write("AH-START-RAN " .. req.method .. " " .. req.path .. "\n")
          io.stderr:flush()
          return 200, "started"
        end
    ''',
    "ahstop.lua": r'''
        return function(req)
          io.stderr:write("AH-STOP-RAN " .. req.path .. "\n"); io.stderr:flush()
          return 200, "stopped"
        end
    ''',
    "hooks.lua": r'''
        local M = {}
        function M.on_stop()
          io.stderr:write("MODULE-HOOK-RAN in " .. require("runtime").role() .. "\n")
          io.stderr:flush()
        end
        return M
    ''',
    "sethook1.lua": r'''
        local runtime = require "runtime"
        return function(req)
          return tostring(runtime.set_shutdown_hook("hooks:on_stop"))
        end
    ''',
    "sethook2.lua": r'''
        local runtime = require "runtime"
        return function(req)
          local prev = runtime.set_shutdown_hook(function()
            io.stderr:write("FUNCTION-HOOK-RAN\n"); io.stderr:flush()
          end)
          return tostring(prev)
        end
    ''',
}


def count(lines, word):
    return sum(1 for l in lines if word in l)


class LifecycleTests(harness.ServerTestCase):

    def test_backend_runs_start_before_listening_and_stop_at_exit(self):
        srv = self.start_server(LIFECYCLE_APP, args=["--role", "backend"])
        lines = srv.err.snapshot()
        starts = [i for i, l in enumerate(lines) if "AH-START-RAN" in l]
        listening = [i for i, l in enumerate(lines)
                     if harness.PORT_RE.search(l)]
        self.assertEqual(len(starts), 1, "\n".join(lines))
        self.assertIn("AH-START-RAN GET /_ah/start", lines[starts[0]])
        self.assertLess(starts[0], listening[0],
                        "/_ah/start ran after listening")
        # clients cannot call it
        self.assertStatus(srv.get("/_ah/start"), 403)
        self.assertStatus(srv.get("/_ah/stop"), 403)
        self.assertServes(srv)
        self.assertEqual(count(srv.err.snapshot(), "AH-START-RAN"), 1)
        self.assertEqual(count(srv.err.snapshot(), "AH-STOP-RAN"), 0)
        rc = srv.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertEqual(count(srv.err.snapshot(), "AH-STOP-RAN /_ah/stop"), 1,
                         srv.stderr_text())

    def test_frontend_does_not_run_start_or_stop(self):
        srv = self.start_server(LIFECYCLE_APP, args=["--role", "frontend"])
        self.assertServes(srv)
        rc = srv.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0)
        text = srv.stderr_text()
        self.assertNotIn("AH-START-RAN", text)
        self.assertNotIn("AH-STOP-RAN", text)

    def test_backend_without_start_route_starts(self):
        srv = self.start_server(HELLO_APP, args=["--role", "backend"])
        self.assertServes(srv)

    def test_backend_failing_start_exits_1(self):
        bodies = {
            "status 500": 'return function(req) return 500, "no" end\n',
            "error": 'return function(req) error("start-failed-marker") end\n',
        }
        for name, body in bodies.items():
            with self.subTest(case=name):
                d = harness.app_dir(self, {
                    "app.lua": 'return { role = "backend", handlers = {'
                               '{url = "^/_ah/start$", script = "ahstart"},'
                               '{url = "^/hello$", script = "hello"}} }\n',
                    "ahstart.lua": body,
                    "hello.lua": harness.HELLO_LUA,
                })
                p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=10)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertNotRegex(p.stderr, harness.PORT_RE)

    def test_shutdown_hook_last_one_runs(self):
        srv = self.start_server(LIFECYCLE_APP)
        self.assertOK(srv.get("/sethook1"), b"nil")
        self.assertOK(srv.get("/sethook2"), b"hooks:on_stop")
        rc = srv.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, srv.stderr_text())
        text = srv.stderr_text()
        self.assertEqual(text.count("FUNCTION-HOOK-RAN"), 1, text)
        self.assertNotIn("MODULE-HOOK-RAN", text)

    def test_shutdown_hook_module_target(self):
        srv = self.start_server(LIFECYCLE_APP)
        self.assertOK(srv.get("/sethook1"), b"nil")
        rc = srv.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertEqual(srv.stderr_text().count("MODULE-HOOK-RAN"), 1,
                         srv.stderr_text())
        # the hook's fresh state knows the instance's role (a frontend here)
        self.assertIn("MODULE-HOOK-RAN in frontend", srv.stderr_text())


class RunAndTestCommandTests(harness.ServerTestCase):

    def test_run_passes_args_and_exits_0(self):
        d = harness.app_dir(self, {"s.lua": r'''
            local runtime = require "runtime"
            print("args", #arg, arg[1], arg[2])
            print("role", runtime.role())
        '''})
        p = run_luahost(["run", os.path.join(d, "s.lua"), "a", "b c"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("args\t2\ta\tb c", p.stdout)
        self.assertIn("role\tbackend", p.stdout)

    def test_run_error_exits_1_with_traceback(self):
        d = harness.app_dir(self, {"s.lua": 'error("kaboom-77")\n'})
        p = run_luahost(["run", os.path.join(d, "s.lua")])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("kaboom-77", p.stderr)
        self.assertIn("traceback", p.stderr.lower())

    def test_run_waits_for_background_threads(self):
        d = harness.app_dir(self, {"s.lua": r'''
            local bt = require "background_thread"
            bt.start_new_background_thread(function()
              require("runtime").sleep(0.5)
              io.stdout:write("BT-DONE\n"); io.stdout:flush()
            end)
            io.stdout:write("MAIN-DONE\n"); io.stdout:flush()
        '''})
        p = run_luahost(["run", os.path.join(d, "s.lua")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), ["MAIN-DONE", "BT-DONE"])

    def test_test_command_pass_and_fail(self):
        d = harness.app_dir(self, {
            "ok/test_one.lua": r'''
                local lu = require "luaunit"
                TestOne = {}
                function TestOne:test_math() lu.assertEquals(1 + 1, 2) end
            ''',
            "ok/sub/test_two.lua": r'''
                local lu = require "luaunit"
                TestTwo = {}
                function TestTwo:test_runtime()
                  lu.assertEquals(type(require("runtime").monotonic()), "number")
                end
            ''',
            "bad/test_bad.lua": r'''
                local lu = require "luaunit"
                TestBad = {}
                function TestBad:test_fails() lu.assertEquals(1, 2) end
            ''',
        })
        # a symlink back up the tree is not followed (it would loop)
        os.symlink("..", os.path.join(d, "ok", "sub", "loop"))
        p = run_luahost(["test", os.path.join(d, "ok")], timeout=20)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # both files ran, the one in a subdirectory too (recursive discovery)
        self.assertIn("== " + os.path.join(d, "ok", "sub", "test_two.lua"), p.stdout)
        self.assertIn("luahost test: 2 files, 2 passed, 0 failed; 2 tests ran", p.stdout)
        p = run_luahost(["test", os.path.join(d, "bad")], timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("1 failed; 1 tests ran", p.stdout)

    def test_test_command_refuses_an_empty_run(self):
        # SPEC §2: a run in which no test ran exits 1 saying so.
        d = harness.app_dir(self, {
            "none/notes.txt": "no tests here\n",
            "empty/test_empty.lua": 'local lu = require "luaunit"\n',
            "selfrun/test_self.lua": r'''
                local lu = require "luaunit"
                os.exit(lu.LuaUnit.run())
            ''',
            "skipped/test_skip.lua": r'''
                local lu = require "luaunit"
                function test_skipped() lu.skip("not today") end
            ''',
        })
        for sub in ("none", "empty", "selfrun", "skipped"):
            with self.subTest(dir=sub):
                p = run_luahost(["test", os.path.join(d, sub)], timeout=20)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn("no tests found", p.stderr)

    def test_test_command_counts_a_self_running_file(self):
        d = harness.app_dir(self, {"test_self.lua": r'''
            local lu = require "luaunit"
            TestSelf = {}
            function TestSelf:test_a() lu.assertTrue(true) end
            function TestSelf:test_b() lu.assertTrue(true) end
            os.exit(lu.LuaUnit.run())
        '''})
        p = run_luahost(["test", d], timeout=20)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("; 2 tests ran", p.stdout)

    def test_test_command_with_app(self):
        d = harness.app_dir(self, dict(HELLO_APP, **{
            "t/test_app.lua": r'''
                local lu = require "luaunit"
                local apptest = require "apptest"
                TestApp = {}
                function TestApp:test_hello()
                  local status, headers, body = apptest.request{method = "GET", path = "/hello?a=1"}
                  lu.assertEquals(status, 200)
                  lu.assertEquals(body, "hello")
                end
                function TestApp:test_missing()
                  local status = apptest.request{method = "GET", path = "/nope"}
                  lu.assertEquals(status, 404)
                end
            ''',
            "f/test_app_fail.lua": r'''
                local lu = require "luaunit"
                local apptest = require "apptest"
                TestAppFail = {}
                function TestAppFail:test_wrong()
                  local status = apptest.request{method = "GET", path = "/hello"}
                  lu.assertEquals(status, 201)
                end
            ''',
        }))
        p = run_luahost(["test", "--app", d, os.path.join(d, "t")], timeout=20)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("; 2 tests ran", p.stdout)
        p = run_luahost(["test", "--app", d, os.path.join(d, "f")], timeout=20)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("1 failed; 1 tests ran", p.stdout)


# apptest answers a deadline, a memory error and os.exit with 500 alike;
# the log says which error it was (SPEC §2: "limits and error handling
# exactly as serve would"; §8).  Each test prints the request ID of its
# answer, and the log line of that ID must name the error.
APPTEST_LIMITS_APP = {
    "app.lua": r'''
        return { request_deadline = 1, memory_limit = "8m",
                 handlers = { {url = "^/", script = "main"} } }
    ''',
    "main.lua": r'''
        return function(req)
          if req.path == "/spin" then
            while true do pcall(function() while true do end end) end
          elseif req.path == "/hog" then
            local t = {}
            -- big pieces: the limit is reached in milliseconds, far
            -- from the deadline even on a loaded machine
            for i = 1, 1e8 do t[i] = ("x"):rep(65536) .. i end
          elseif req.path == "/exit" then
            os.exit(3)
          end
          return "ok"
        end
    ''',
    "t/test_limits.lua": r'''
        local lu = require "luaunit"
        local apptest = require "apptest"
        local runtime = require "runtime"
        TestLimits = {}
        local function call(path)
          local t0 = runtime.monotonic()
          local status, _, body = apptest.request { path = path }
          local rid = body:match("request id: (%S+)")
          print(string.format("RESULT %s %d %s %.3f", path, status, tostring(rid),
                              runtime.monotonic() - t0))
          lu.assertEquals(status, 500)
          lu.assertEquals((apptest.request { path = "/ok" }), 200)
        end
        function TestLimits:test_spin() call("/spin") end
        function TestLimits:test_hog() call("/hog") end
        function TestLimits:test_exit()
          -- luaunit wraps os.exit while it runs: call the host's own one,
          -- as a handler under serve would
          local wrapped = os.exit
          os.exit = lu.oldOsExit
          local ok, e = pcall(call, "/exit")
          os.exit = wrapped
          if not ok then error(e, 0) end
        end
    ''',
}


class AppTestLimits(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        d = tempfile.mkdtemp(prefix="luahost-e2e-")
        cls.addClassCleanup(shutil.rmtree, d, True)
        harness.write_tree(d, APPTEST_LIMITS_APP)
        cls.proc = run_luahost(["test", "--app", d, os.path.join(d, "t")], timeout=60)
        cls.results = {m.group(1): (int(m.group(2)), m.group(3), float(m.group(4)))
                       for m in re.finditer(r"RESULT (\S+) (\d+) (\S+) ([\d.]+)$",
                                            cls.proc.stdout, re.M)}

    def error_line(self, path):
        out = self.proc.stdout + self.proc.stderr
        self.assertIn(path, self.results, out)
        status, rid, took = self.results[path]
        self.assertEqual(status, 500, out)
        lines = [l for l in self.proc.stderr.splitlines()
                 if "request_id=%s]" % rid in l and " error " in l]
        self.assertTrue(lines, "no error logged for %s (%s):\n%s" % (path, rid, out))
        return lines[0], took

    def test_deadline(self):
        line, took = self.error_line("/spin")
        self.assertIn("DeadlineExceededError", line)
        self.assertGreaterEqual(took, 0.9, "answered before the 1 s deadline")

    def test_memory_limit(self):
        line, _ = self.error_line("/hog")
        self.assertIn("not enough memory", line)

    # Handlers run in the test's own state, whose os.exit is the test
    # runner's: inside a request it refuses as serve does (it used to
    # raise a table, logged as "table: 0x...").
    def test_os_exit_refused_as_serve_refuses_it(self):
        line, _ = self.error_line("/exit")
        self.assertIn("os.exit is not allowed", line)

    def test_run_passes(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout + self.proc.stderr)
        self.assertIn("; 3 tests ran", self.proc.stdout)


if __name__ == "__main__":
    unittest.main()
