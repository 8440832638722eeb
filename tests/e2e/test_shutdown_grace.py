"""Shutdown at the end of the grace (SPEC §6, §13): the log names exactly
the request IDs and background thread IDs still running (none of those
that finished), and the process exits within 0.5 s after the grace."""

import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request  # noqa: E402

GRACE = 1.5

FILES = {
    "app.lua": r'''
        return {
          role = "backend", workers = 3, shutdown_grace = %s,
          handlers = {
            {url = "^/_ah/start$", script = "start"},
            {url = "^/spin$", script = "spin"},
            {url = "^/nap$", script = "nap"},
            {url = "^/quick$", script = "quick"},
            {url = "^/tids$", script = "tids"},
          },
          shared = { dicts = { d = "1m" } },
        }
    ''' % GRACE,
    # /_ah/start starts one thread that never ends (CPU) and one that ends
    # when shutdown wakes it
    "start.lua": r'''
        local bt = require "background_thread"
        local d = require("shared").dict("d")
        return function(req)
          d:set("stuck", bt.start_new_background_thread("targets:spin_thread"))
          d:set("polite", bt.start_new_background_thread("targets:polite_thread"))
          return 200, "ok"
        end
    ''',
    "targets.lua": r'''
        local M = {}
        function M.spin_thread()
          local runtime = require "runtime"
          local t0 = runtime.monotonic()
          while runtime.monotonic() - t0 < 60 do end
        end
        function M.polite_thread()
          local runtime = require "runtime"
          while runtime.sleep(1) do end
        end
        return M
    ''',
    "spin.lua": r'''
        local runtime = require "runtime"
        return function(req)
          io.stderr:write("SPIN-ID " .. req.request_id .. "\n") io.stderr:flush()
          local t0 = runtime.monotonic()
          while runtime.monotonic() - t0 < 60 do end
          return "spun"
        end
    ''',
    # sleeps until shutdown wakes it, then answers at once
    "nap.lua": r'''
        local runtime = require "runtime"
        return function(req)
          io.stderr:write("NAP-ID " .. req.request_id .. "\n") io.stderr:flush()
          runtime.sleep(60)
          return "napped"
        end
    ''',
    "quick.lua": 'return function(req) return "quick" end',
    "tids.lua": r'''
        local d = require("shared").dict("d")
        return function(req) return tostring(d:get("stuck")) .. " " .. tostring(d:get("polite")) end
    ''',
}
RID_LINE = re.compile(r"\[request_id=([^\]]+)\] request \S+ still (running|waiting)")
TID_LINE = re.compile(r"\[thread_id=(\d+)\] background thread \d+ still running after")


class ShutdownGraceTests(harness.ServerTestCase):

    def test_logs_exactly_what_still_runs_and_exits_within_half_a_second(self):
        srv = self.start_server(FILES)
        stuck_tid, polite_tid = srv.get("/tids").body.decode().split()
        self.assertOK(srv.get("/quick"), b"quick")
        quick_rid = srv.get("/quick").header("x-request-id")
        spin = srv.connect()
        spin.send(build_request("GET", "/spin"))
        spin_line = srv.wait_stderr("SPIN-ID ", 5)
        self.assertIsNotNone(spin_line, srv.stderr_text())
        spin_rid = spin_line.split("SPIN-ID ", 1)[1].strip()
        nap = srv.connect()
        nap.send(build_request("GET", "/nap"))
        nap_line = srv.wait_stderr("NAP-ID ", 5)
        self.assertIsNotNone(nap_line, srv.stderr_text())
        nap_rid = nap_line.split("NAP-ID ", 1)[1].strip()
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(GRACE + 10)
        took = time.monotonic() - t0
        spin.close()
        nap.close()
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertGreaterEqual(took, GRACE - 0.05, "exited before the grace")
        self.assertLess(took - GRACE, harness.scaled(0.5),
                        "exited %.2f s after the grace of %s s" % (took - GRACE, GRACE))
        err = srv.stderr_text()
        rids = {m.group(1) for m in RID_LINE.finditer(err)}
        tids = {m.group(1) for m in TID_LINE.finditer(err)}
        self.assertEqual(rids, {spin_rid}, err)            # not the nap, not the quick one
        self.assertNotIn(quick_rid, rids)
        self.assertNotIn(nap_rid, rids)
        self.assertEqual(tids, {stuck_tid}, err)           # not the polite thread
        self.assertRegex(err, r"grace of 1.5 s ended with 1 request and 1 background thread "
                              r"still running")

    def test_nothing_left_means_no_still_running_line(self):
        files = {"app.lua": 'return { shutdown_grace = 5, handlers = {{url = "^/quick$", '
                            'script = "quick"}} }',
                 "quick.lua": FILES["quick.lua"]}
        srv = self.start_server(files)
        self.assertOK(srv.get("/quick"), b"quick")
        t0 = time.monotonic()
        self.assertEqual(srv.stop(), 0)
        self.assertLess(time.monotonic() - t0, harness.scaled(2.0))
        self.assertNotIn("still running", srv.stderr_text())


if __name__ == "__main__":
    unittest.main()
