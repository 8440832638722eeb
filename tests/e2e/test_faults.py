"""Faults from the environment, end to end: an access log that cannot be
written (a full disk: stdout on /dev/full) and a descriptor limit so low
that the connection cap is reached.  The host keeps serving."""

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FILES = {
    "hello.lua": harness.HELLO_LUA,
    "app.lua": r'''
        return { workers = 1, handlers = { {url = "^/hello$", script = "hello"} } }
    ''',
}


class FaultServer(harness.Server):
    """A Server whose stdout and process limits the test chooses."""

    def __init__(self, files, stdout_path=None, nofile=None):
        super().__init__(files)
        self.stdout_path = stdout_path
        self.nofile = nofile

    def start(self):
        harness.check_binary()
        import tempfile
        self.app_dir = tempfile.mkdtemp(prefix="luahost-e2e-")
        harness.write_tree(self.app_dir, self.files)
        cmd = [harness.LUAHOST, "serve", self.app_dir, "--listen", self.listen]
        self.cmd = cmd
        nofile = self.nofile

        def limits():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        out = open(self.stdout_path, "wb") if self.stdout_path else subprocess.PIPE
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.PIPE, cwd=self.app_dir,
                                     preexec_fn=limits)
        if self.stdout_path:
            out.close()
        else:
            self.out = harness._Collector(self.proc.stdout, "luahost-stdout")
            self.out.start()
        self.err = harness._Collector(self.proc.stderr, "luahost-stderr")
        self.err.start()
        line = self.err.wait_for(lambda l: harness.PORT_RE.search(l) is not None,
                                 self.startup_timeout)
        if line is None:
            self.close()
            raise harness.ServerError("luahost did not start:\n" + self.err.text())
        self.port = int(harness.PORT_RE.search(line).group(1))
        return self


class Faults(harness.ServerTestCase):

    def start_fault_server(self, **kw):
        srv = FaultServer(FILES, **kw)
        self.addCleanup(harness.close_and_check, srv)
        return srv.start()

    def test_full_disk_for_the_access_log_still_serves(self):
        srv = self.start_fault_server(stdout_path="/dev/full")
        for _ in range(50):
            self.assertOK(srv.get("/hello"), b"hello")
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(harness.scaled(10)), 0, srv.stderr_text())

    def test_connection_cap_closes_extra_connections_and_recovers(self):
        # With only 80 descriptors the host cannot hold 60 connections and
        # its files: some of them are closed at once, not all, and it
        # serves again once they go (whatever its exact cap).
        srv = self.start_fault_server(nofile=80)
        held = []
        try:
            for _ in range(60):
                s = socket.create_connection((harness.HOST, srv.port), timeout=5)
                held.append(s)
            # wait until the host has closed the connections over its cap
            # (it does so as it accepts them)
            closed, seen = 0, set()
            for s in held:
                s.setblocking(False)
            deadline = time.monotonic() + harness.scaled(5)
            while True:
                for i, s in enumerate(held):
                    if i in seen:
                        continue
                    try:
                        if s.recv(1) == b"":
                            seen.add(i)
                    except BlockingIOError:
                        pass
                    except OSError:
                        seen.add(i)
                closed = len(seen)
                if closed > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            self.assertGreater(closed, 0, "no connection over the cap was closed")
            self.assertLess(closed, 60, "every connection was closed")
            self.assertTrue(srv.alive(), srv.stderr_text())
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + harness.scaled(5)
        while True:
            try:
                r = srv.get("/hello", timeout=2)
                if r.status == 200:
                    break
            except (OSError, harness.ConnectionClosed):
                pass
            self.assertLess(time.monotonic(), deadline, "not serving after the burst")
            time.sleep(0.05)
        self.assertServes(srv)


LUA_FAULTS = {
    "hello.lua": harness.HELLO_LUA,
    "app.lua": r"""
        return { workers = 1, request_deadline = 5, handlers = {
          {url = "^/hello$", script = "hello"},
          {url = "^/f/", script = "faults"},
        } }
    """,
    # One handler per fault, chosen by the last path segment.
    "faults.lua": r"""
        local runtime = require "runtime"
        local shared = require "shared"
        local F = {}
        function F.gc_raises()
          setmetatable({}, {__gc = function() error("raised in __gc") end})
          collectgarbage(); collectgarbage()
          return "after gc"
        end
        function F.gc_later()   -- collected during some later request
          for i = 1, 100 do setmetatable({}, {__gc = function() error("later " .. i) end}) end
          return "left garbage"
        end
        function F.gc_sleeps()
          setmetatable({}, {__gc = function() runtime.sleep(0.01) end})
          collectgarbage(); collectgarbage()
          return "after gc sleep"
        end
        function F.yield_in_sort()
          local t = {3, 1, 2}
          table.sort(t, function(a, b) coroutine.yield() return a < b end)
          return "sorted"
        end
        function F.sleep_in_gsub()
          return (string.gsub("ab", ".", function(c) runtime.sleep(0.01) return c:upper() end))
        end
        function F.pop_in_metamethod()
          local q = shared.queue("lf")
          local t = setmetatable({}, {__index = function() return q:pop(0.01) end})
          return tostring(t.x)
        end
        function F.close_raises()
          local x <close> = setmetatable({}, {__close = function() error("raised in __close") end})
          return "closed"
        end
        function F.err_nil() error(nil) end
        function F.err_table() error({code = 7}) end
        function F.err_function() error(print) end
        function F.err_coroutine() error(coroutine.create(print)) end
        function F.err_bad_tostring()
          error(setmetatable({}, {__tostring = function() error("tostring raised") end}))
        end
        function F.err_tostring_table()
          error(setmetatable({}, {__tostring = function() return {} end}))
        end
        function F.err_in_error_handler()
          xpcall(error, function() error("handler raised") end, "x")
          return "xpcall survived"
        end
        function F.coroutine_into_queue()
          local ok, err = pcall(shared.queue("lf").push, shared.queue("lf"),
                                {co = coroutine.create(print)})
          return tostring(ok) .. " " .. tostring(err)
        end
        function F.coroutine_into_queue_unprotected()
          shared.queue("lf"):push(coroutine.running())
        end
        function F.coroutine_into_dict()
          local ok, err = pcall(shared.dict("lf").set, shared.dict("lf"), "k", coroutine.running())
          return tostring(ok) .. " " .. tostring(err)
        end
        return function(req)
          return F[req.path:match("^/f/(.*)$")]()
        end
    """,
}


class LuaFaults(harness.ServerTestCase):
    """Handlers that misbehave in the ways Lua allows: each is answered
    cleanly and the one worker goes on serving."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class_server(LUA_FAULTS, args=["--role", "backend"])

    def fault(self, name, status, body=None):
        t0 = time.monotonic()
        r = self.srv.get("/f/" + name, timeout=harness.scaled(6))
        self.assertLess(time.monotonic() - t0, harness.scaled(2.0), name)
        self.assertStatus(r, status)
        if status == 500:
            self.assertIn(r.header("x-request-id").encode(), r.body)
        if body is not None:
            self.assertEqual(r.body, body)
        self.assertServes(self.srv)
        return r

    def test_gc_metamethod_that_raises(self):
        r = self.fault("gc_raises", 200, b"after gc")
        # Lua turns it into a warning: logged with the request's ID
        self.assertIsNotNone(self.srv.wait_stderr(re.escape(
            "warning [request_id=%s] error in __gc" % r.header("x-request-id"))),
            self.srv.stderr_text())
        self.fault("gc_later", 200, b"left garbage")
        for _ in range(20):   # the garbage is collected during these
            self.fault("gc_raises", 200, b"after gc")

    def test_gc_metamethod_that_sleeps(self):
        self.fault("gc_sleeps", 200, b"after gc sleep")

    def test_yield_across_a_c_boundary(self):
        r = self.fault("yield_in_sort", 500)
        # the error line is logged before the answer, but read from the
        # server's stderr by another thread: wait for it
        rid = r.header("x-request-id")
        self.assertIsNotNone(self.srv.wait_stderr(re.escape(rid), harness.scaled(5)),
                             self.srv.stderr_text())
        # waiting host calls where Lua cannot yield: they wait in place
        self.fault("sleep_in_gsub", 200, b"AB")
        self.fault("pop_in_metamethod", 200, b"nil")

    def test_close_metamethod_that_raises(self):
        self.fault("close_raises", 500)

    def test_error_objects_that_are_not_strings(self):
        for name in ("err_nil", "err_table", "err_function", "err_coroutine",
                     "err_bad_tostring", "err_tostring_table"):
            with self.subTest(name=name):
                self.fault(name, 500)
        self.fault("err_in_error_handler", 200, b"xpcall survived")

    def test_coroutine_into_a_shared_queue_or_dict(self):
        r = self.fault("coroutine_into_queue", 200)
        self.assertIn(b"false", r.body)
        self.assertIn(b"value.co: cannot copy a thread", r.body)
        self.fault("coroutine_into_queue_unprotected", 500)
        r = self.fault("coroutine_into_dict", 200)
        self.assertIn(b"false", r.body)
        self.assertIn(b"thread", r.body)


if __name__ == "__main__":
    unittest.main()
