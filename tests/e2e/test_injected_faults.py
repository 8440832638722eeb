"""Injected faults, end to end (a -DLUAHOST_FAULTS=ON build; skipped
otherwise).  LUAHOST_FAULTS arms fault points at start-up: `accept`
failing with EMFILE, `thread_create` failing, `state_alloc` failing while
a Lua state is built.  Each ends in a clean error or a pause, and the host
keeps serving."""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def fault_build():
    r = harness.run_luahost(["--version"])
    return "fault injection build" in r.stdout


APP = {
    "hello.lua": harness.HELLO_LUA,
    "start.lua": r'''
        local bt = require "background_thread"
        return function(req)
          local ok, err = pcall(bt.start_new_background_thread, function() return 1 end)
          return string.format("%s|%s|%s|%d", tostring(ok), tostring(err),
                               tostring(bt.Error:is_instance(err)), bt.active_count())
        end
    ''',
    "app.lua": r'''
        return { workers = 1, handlers = {
          {url = "^/hello$", script = "hello"},
          {url = "^/start$", script = "start"},
        } }
    ''',
}


@unittest.skipUnless(fault_build(), "not a fault injection build")
class InjectedFaults(harness.ServerTestCase):

    def start_with(self, faults, args=()):
        return self.start_server(APP, args=list(args), env={"LUAHOST_FAULTS": faults})

    def test_accept_emfile_pauses_then_serves(self):
        srv = self.start_with("accept=0:3")
        t0 = time.monotonic()
        r = srv.get("/hello", timeout=harness.scaled(5))
        took = time.monotonic() - t0
        self.assertOK(r, b"hello")
        # the three refused accepts are each logged as a warning naming the
        # cause, and the waiting client is answered soon after
        self.assertLess(took, harness.scaled(2.0))
        warnings = [l for l in srv.err.snapshot()
                    if " warning " in l and "Too many open files" in l]
        self.assertEqual(len(warnings), 3, srv.stderr_text())
        self.assertServes(srv)

    def test_thread_create_failure_is_bt_error_and_frees_the_slot(self):
        srv = self.start_with("thread_create=0:-1",
                              ["--role", "backend", "--max-background-threads", "1"])
        for _ in range(3):   # the one slot is released every time
            r = srv.get("/start")
            self.assertOK(r)
            ok, err, is_error, active = r.body.decode().split("|")
            self.assertEqual(ok, "false")
            self.assertEqual(err, "background_thread.Error: cannot create a thread: "
                                  "Resource temporarily unavailable")
            self.assertEqual(is_error, "true")
            self.assertEqual(active, "0")
        self.assertServes(srv)

    def test_state_alloc_failure_at_start_up_is_a_clean_exit(self):
        d = harness.app_dir(self, APP)
        env = dict(os.environ, LUAHOST_FAULTS="state_alloc=0:-1")
        r = subprocess.run([harness.LUAHOST, "serve", d, "--listen", "127.0.0.1:0"],
                           env=env, capture_output=True, text=True,
                           timeout=harness.scaled(10))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot build a Lua state", r.stderr)
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, r.stderr)

    def test_bad_fault_spec_is_refused(self):
        d = harness.app_dir(self, APP)
        env = dict(os.environ, LUAHOST_FAULTS="disk=1:1")
        r = subprocess.run([harness.LUAHOST, "serve", d], env=env,
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown fault point", r.stderr)


if __name__ == "__main__":
    unittest.main()
