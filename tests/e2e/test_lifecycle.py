"""Background threads in a served app: the backend lifecycle with real
signals (start hook, worker thread, shutdown hook, /_ah/stop, grace expiry
with a thread that never ends), joins that yield, and the frontend refusal."""

import os
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
