"""Faults from the environment, end to end: an access log that cannot be
written (a full disk: stdout on /dev/full) and a descriptor limit so low
that the connection cap is reached.  The host keeps serving."""

import os
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
        # 80 descriptors: the cap is the limit less 64 kept for files and
        # logs, and never under 16
        srv = self.start_fault_server(nofile=80)
        held = []
        try:
            for _ in range(60):
                s = socket.create_connection((harness.HOST, srv.port), timeout=5)
                held.append(s)
            time.sleep(harness.scaled(0.3))
            closed = 0
            for s in held:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
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


if __name__ == "__main__":
    unittest.main()
