"""One way to wait (SPEC §9) at shutdown: a SIGTERM ends every wait that
could last indefinitely (sleep, pop, push, join) with its shutdown answer,
in a request's coroutine, in a coroutine the handler made, in a background
thread and in the shutdown hook, and the server exits 0 well inside its
grace.  (Timeouts, deadlines and cancel: tests/lua/test_waits.lua.)"""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS_LUA = open(os.path.join(HERE, "..", "lua", "waits_app", "wait_kinds.lua")).read()
KINDS = ("sleep", "pop", "push", "join")
AT_SHUTDOWN = {"sleep": "false", "pop": "nil,shutting down", "push": "false,shutting down",
               "join": "nil,shutting down"}

FILES = {
    "wait_kinds.lua": KINDS_LUA,
    "app.lua": r'''
        return {
          role = "backend", workers = 6, shutdown_grace = 20,  -- a nested wait holds its worker
          shared = { queues = { empty = 10, full = 1 } },
          handlers = {
            { url = "^/_ah/start$", script = "start" },
            { url = "^/wait$", script = "wait" },
          },
        }
    ''',
    "report.lua": r'''
        local M = {}
        function M.answer(...)
          local r = table.pack(...)
          local out = {}
          for i = 1, r.n do out[i] = tostring(r[i]) end
          return table.concat(out, ",")
        end
        function M.thread(kind)
          local a = M.answer(require("wait_kinds").run(kind, 60, 120, 2, function()
            require("runtime").log("info", "WAITING thread " .. kind)
          end))
          print("THREAD " .. kind .. " " .. a)
        end
        function M.hook()
          -- the hook starts after shutdown began: its waits end at once
          -- (a join needs a new thread, which shutdown refuses)
          for _, kind in ipairs({"sleep", "pop", "push"}) do
            local ok, a = pcall(function() return M.answer(require("wait_kinds").run(kind, 60)) end)
            print("HOOK " .. kind .. " " .. tostring(a))
          end
        end
        return M
    ''',
    "start.lua": r'''
        local bt = require "background_thread"
        return function()
          for _, kind in ipairs({"sleep", "pop", "push", "join"}) do
            bt.start_new_background_thread("report:thread", { kind })
          end
          require("runtime").set_shutdown_hook("report:hook")
          return "started"
        end
    ''',
    "wait.lua": r'''
        local report = require "report"
        local waits = require "wait_kinds"
        return function(req)
          local ready = function()   -- logged once the wait is in place (a join's thread started)
            require("runtime").log("info", "WAITING request " .. req.args.kind)
          end
          local f = function() return report.answer(waits.run(req.args.kind, 60, 120, 2, ready)) end
          if req.args.nested then
            local co = coroutine.create(f)
            local ok, a = coroutine.resume(co)
            return a
          end
          return f()
        end
    ''',
}


class ShutdownEndsWaits(harness.ServerTestCase):
    def test_every_wait_ends_with_its_shutdown_answer(self):
        srv = self.start_server(FILES)
        results = {}

        def ask(target):
            try:
                r = srv.request("GET", target, timeout=harness.scaled(30))
                results[target] = (r.status, r.body.decode())
            except Exception as e:   # noqa: BLE001 - reported below
                results[target] = ("error", repr(e))

        def waiting():
            return sum("WAITING" in l for l in srv.err.snapshot())

        def wait_for_waiting(n):
            deadline = time.monotonic() + harness.scaled(10)
            while waiting() < n and time.monotonic() < deadline:
                srv.wait_stderr(r"WAITING", timeout=0.2)
            self.assertEqual(waiting(), n, srv.stderr_text())

        # A wait in a coroutine the handler made holds its worker: send
        # those first, one by one, and let each worker count as busy (the
        # balancer skips a worker whose Lua has run 10 ms) before the next.
        nested = ["/wait?kind=%s&nested=1" % k for k in KINDS]
        plain = ["/wait?kind=%s" % k for k in KINDS]
        targets = nested + plain
        clients = []
        wait_for_waiting(len(KINDS))   # the threads started by /_ah/start
        for t in targets:
            c = threading.Thread(target=ask, args=(t,))
            c.start()
            clients.append(c)
            if t in nested:
                wait_for_waiting(len(KINDS) + len(clients))
                time.sleep(0.05)
        wait_for_waiting(len(KINDS) + len(targets))
        self.assertEqual(results, {}, "a wait ended before shutdown")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        for c in clients:
            c.join(harness.scaled(15))
        rc = srv.wait(harness.scaled(15))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertLess(took, harness.scaled(10), "shutdown waited for the waits")
        for t in targets:
            kind = t.split("kind=")[1].split("&")[0]
            self.assertEqual(results.get(t), (200, AT_SHUTDOWN[kind]), t)
        out = "\n".join(srv.stdout_lines())
        for kind in KINDS:
            self.assertIn("THREAD %s %s" % (kind, AT_SHUTDOWN[kind]), out)
            if kind != "join":
                self.assertIn("HOOK %s %s" % (kind, AT_SHUTDOWN[kind]), out)


if __name__ == "__main__":
    unittest.main()
