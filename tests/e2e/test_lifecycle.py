"""Background threads in a served app: the backend lifecycle with real
signals (start hook, worker thread, shutdown hook, /_ah/stop, grace expiry
with a thread that never ends), joins that yield, and the frontend refusal."""

import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LIFECYCLE = {
    "hello.lua": harness.HELLO_LUA,
    "app.lua": r'''
        return {
          role = "backend",
          workers = 2,
          shutdown_grace = %(grace)s,
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/_ah/start$", script = "start"},
            {url = "^/_ah/stop$", script = "stop"},
            {url = "^/enqueue$", script = "enqueue"},
            {url = "^/stats$", script = "stats"},
            {url = "^/spin$", script = "spin"},
            {url = "^/join$", script = "join"},
          },
        }
    ''',
    "start.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local id = bt.start_new_background_thread("worker:run")
          require("runtime").set_shutdown_hook("worker:hook")
          print("START-HOOK thread " .. id)
          return "started"
        end
    ''',
    "worker.lua": r'''
        local shared = require "shared"
        local M = {}
        function M.run()
          local q, d = shared.queue("jobs"), shared.dict("stats")
          while true do
            local job, err = q:pop()
            if not job then print("WORKER-STOPS " .. err) return end
            d:incr("done", 1, 0)
          end
        end
        function M.hook()
          print("SHUTDOWN-HOOK done=" .. tostring(shared.dict("stats"):get("done")))
        end
        function M.forever() while true do end end
        return M
    ''',
    "stop.lua": r'''
        return function(req) print("AH-STOP " .. req.path) return "bye" end
    ''',
    "enqueue.lua": r'''
        return function(req)
          return tostring(require("shared").queue("jobs"):push(req.args.v, 1))
        end
    ''',
    "stats.lua": r'''
        return function(req)
          return tostring(require("shared").dict("stats"):get("done"))
        end
    ''',
    "spin.lua": r'''
        local bt = require "background_thread"
        return function(req) return tostring(bt.start_new_background_thread("worker:forever")) end
    ''',
    "join.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local id = bt.start_new_background_thread(function(x)
            require("runtime").sleep(1.5)
            return x * 2
          end, {21})
          print("JOINING " .. id) io.stdout:flush()
          local ok, v = bt.join(id, 5)
          return tostring(ok) .. " " .. tostring(v)
        end
    ''',
}


def app(grace=5):
    files = dict(LIFECYCLE)
    files["app.lua"] = LIFECYCLE["app.lua"] % {"grace": grace}
    return files


class BackendLifecycle(harness.ServerTestCase):

    def test_worker_thread_fed_by_requests_stops_cleanly(self):
        srv = self.start_server(app())
        # /_ah/start ran before the host took traffic (its line may reach
        # the reader of the server's stdout a little after the port opens)
        line = srv.wait_stdout(lambda l: "START-HOOK thread " in l, 3)
        self.assertIsNotNone(line, srv.stdout_lines())
        # SPEC §5: an ID is a positive integer (which one is not promised)
        self.assertRegex(line, r"START-HOOK thread [1-9]\d*$")
        for i in range(5):
            self.assertOK(srv.get("/enqueue?v=%d" % i), b"true")
        deadline = time.monotonic() + harness.scaled(3)
        while srv.get("/stats").body != b"5" and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertOK(srv.get("/stats"), b"5")
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(harness.scaled(10)), 0, srv.stderr_text())
        out = "\n".join(srv.stdout_lines())
        self.assertIn("WORKER-STOPS shutting down", out)
        self.assertIn("SHUTDOWN-HOOK done=5", out)
        self.assertIn("AH-STOP /_ah/stop", out)

    def test_grace_expires_with_a_thread_that_never_ends(self):
        srv = self.start_server(app(grace=1))
        r = srv.get("/spin")
        self.assertStatus(r, 200)
        tid = r.body.decode()
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(harness.scaled(10)), 0, srv.stderr_text())
        self.assertLess(time.monotonic() - t0, harness.scaled(5))
        err = srv.stderr_text()
        self.assertIn("background thread %s still running after the shutdown grace" % tid, err)

    def test_join_in_a_handler_yields(self):
        # one worker, so that the second request meets the joining one's
        files = app()
        files["app.lua"] = files["app.lua"].replace("workers = 2", "workers = 1")
        srv = self.start_server(files)
        with srv.connect() as c:
            c.send(harness.build_request("GET", "/join"))
            self.assertIsNotNone(srv.wait_stdout(lambda l: l.startswith("JOINING "), 5),
                                 srv.stdout_lines())
            t0 = time.monotonic()
            self.assertServes(srv)     # the joining request does not hold its worker
            served = time.monotonic() - t0
            r = c.read_response(timeout=harness.scaled(5))
            self.assertOK(r, b"true 42")
            # answered while the joined thread still slept its 1.5 s: a
            # worker held by the join would have answered after it
            self.assertLess(served, 1.0)


CONTRACT = {
    "app.lua": r'''
        return {
          role = "backend",
          workers = 1,
          shutdown_grace = 5,
          handlers = {
            {url = "^/late$", script = "late"},
            {url = "^/failing$", script = "failing"},
            {url = "^/hold$", script = "hold"},
            {url = "^/release$", script = "release"},
            {url = "^/hook$", script = "hook"},
            {url = "^/hello$", script = "hello"},
          },
        }
    ''',
    "hello.lua": harness.HELLO_LUA,
    # parked until shutdown wakes it, then tries to start a thread
    "late.lua": r'''
        local bt = require "background_thread"
        local runtime = require "runtime"
        return function(req)
          io.stdout:write("LATE-PARKED\n") io.stdout:flush()
          local slept = runtime.sleep(30)
          local ok, e = pcall(bt.start_new_background_thread, function() return 1 end)
          return string.format("%s|%s|%s|%s", tostring(slept), tostring(ok),
                               tostring(bt.Error:is_instance(e)), tostring(e))
        end
    ''',
    # a thread nobody joins: it logs, then raises
    "failing.lua": r'''
        local bt = require "background_thread"
        return function(req)
          return tostring(bt.start_new_background_thread(function()
            require("runtime").log("info", "thread-log-marker")
            local function deeper() error("unjoined-marker") end
            deeper()
          end))
        end
    ''',
    # threads that wait on a queue: they hold slots until /release
    "hold.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local ok, e = pcall(bt.start_new_background_thread, function()
            require("shared").queue("release"):pop(20)
          end)
          return string.format("%s|%s|%d", tostring(ok),
            tostring(bt.BackgroundThreadLimitReachedError:is_instance(e)), bt.max_threads())
        end
    ''',
    "release.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local q = require("shared").queue("release")
          for i = 1, tonumber(req.args.n) do q:push(i, 1) end
          return "released"
        end
    ''',
    # the hook's state must hold nothing of the request that set it
    "mod_marker.lua": "return {}\n",
    "hook.lua": r'''
        local runtime = require "runtime"
        return function(req)
          LEAKED_GLOBAL = "from the request"
          require "mod_marker"
          runtime.set_shutdown_hook(function()
            print(string.format("HOOK-STATE global=%s module=%s request=%s shutting=%s",
              tostring(rawget(_G, "LEAKED_GLOBAL")),
              tostring(package.loaded["mod_marker"]),
              tostring(require("runtime").request_id()),
              tostring(require("runtime").is_shutting_down())))
            io.stdout:flush()
          end)
          return "set " .. tostring(rawget(_G, "LEAKED_GLOBAL")) .. " "
                 .. tostring(package.loaded["mod_marker"] ~= nil)
        end
    ''',
}


class ThreadContract(harness.ServerTestCase):
    """SPEC §5/§6 points with no other test: starts refused during
    shutdown, unjoined errors logged, log lines of threads, the
    --max-background-threads option, the hook's fresh state."""

    def test_start_during_shutdown_is_refused_with_bt_error(self):
        srv = self.start_server(CONTRACT)
        with srv.connect() as c:
            c.send(harness.build_request("GET", "/late"))
            self.assertIsNotNone(srv.wait_stdout(lambda l: l == "LATE-PARKED", 5))
            srv.send_signal(signal.SIGTERM)
            r = c.read_response(timeout=harness.scaled(10))
        self.assertOK(r)
        slept, ok, is_error, msg = r.text.split("|", 3)
        self.assertEqual((slept, ok, is_error), ("false", "false", "true"), r.text)
        self.assertTrue(msg.startswith("background_thread.Error: "), msg)
        self.assertEqual(srv.wait(harness.scaled(10)), 0, srv.stderr_text())

    def test_unjoined_thread_error_logged_with_id_and_traceback(self):
        srv = self.start_server(CONTRACT)
        r = srv.get("/failing")
        self.assertOK(r)
        tid = r.text
        self.assertRegex(tid, r"^[1-9]\d*$")
        tag = "[thread_id=%s]" % tid
        # runtime.log in a thread: the line carries the thread ID (SPEC §6)
        line = srv.wait_stderr(re.escape(tag) + r".*thread-log-marker", 5)
        self.assertIsNotNone(line, srv.stderr_text())
        self.assertIn(" info ", line)
        # the error that ended it, with its ID, though nobody joins it
        line = srv.wait_stderr(re.escape(tag) + r".*unjoined-marker", 5)
        self.assertIsNotNone(line, srv.stderr_text())
        self.assertIn(" error ", line)
        i = srv.err.snapshot().index(line)
        tb = srv.err.wait_for(lambda l: "stack traceback" in l, 5, i)
        self.assertIsNotNone(tb, srv.stderr_text())
        j = srv.err.snapshot().index(tb, i)
        self.assertIsNotNone(srv.err.wait_for(lambda l: "deeper" in l, 5, j),
                             "traceback does not show where it raised:\n" + srv.stderr_text())

    def test_max_background_threads_option(self):
        # the command line overrides app.lua's default of 10 (SPEC §2, §3)
        srv = self.start_server(CONTRACT, args=["--max-background-threads", "2"])
        self.assertOK(srv.get("/hold"), b"true|false|2")
        self.assertOK(srv.get("/hold"), b"true|false|2")
        self.assertOK(srv.get("/hold"), b"false|true|2")     # a third is refused
        self.assertOK(srv.get("/release?n=2"), b"released")
        # the slots come back as the threads end
        deadline = time.monotonic() + harness.scaled(5)
        while True:
            r = srv.get("/hold")
            if r.body.startswith(b"true"):
                break
            self.assertLess(time.monotonic(), deadline, "slots never released: %r" % r)
            time.sleep(0.02)
        self.assertOK(srv.get("/release?n=1"), b"released")

    def test_shutdown_hook_runs_in_a_fresh_state(self):
        srv = self.start_server(CONTRACT)
        self.assertOK(srv.get("/hook"), b"set from the request true")
        srv.send_signal(signal.SIGTERM)
        line = srv.wait_stdout(lambda l: l.startswith("HOOK-STATE "), harness.scaled(10))
        self.assertEqual(line, "HOOK-STATE global=nil module=nil request=nil shutting=true",
                         srv.stderr_text())
        self.assertEqual(srv.wait(harness.scaled(10)), 0, srv.stderr_text())


class FrontendRefusal(harness.ServerTestCase):

    def test_frontend_refuses_background_threads(self):
        files = dict(LIFECYCLE)
        files["app.lua"] = r'''
            return { handlers = { {url = "^/spin$", script = "spin"} } }
        '''
        srv = self.start_server(files)
        r = srv.get("/spin")
        self.assertStatus(r, 500)
        self.assertIsNotNone(srv.err.wait_for(
            lambda l: "background_thread.FrontendsNotSupported" in l, 3))


if __name__ == "__main__":
    unittest.main()
