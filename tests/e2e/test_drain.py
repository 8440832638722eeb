"""drain (SPEC §13): on SIGTERM the instance keeps serving for `drain`
seconds with /_ah/health answering 503 and every response carrying
Connection: close (new connections are still accepted), then shuts down as
usual; a second signal cuts the drain short; drain = 0 shuts down at
once."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import build_request, run_luahost  # noqa: E402

DRAIN = 1.5


def app(drain):
    return {
        "app.lua": 'return { drain = %s, shutdown_grace = 5, handlers = '
                   '{{url = "^/hello$", script = "hello"}} }' % drain,
        "hello.lua": harness.HELLO_LUA,
    }


class DrainTests(harness.ServerTestCase):

    def test_drain_serves_with_health_503_and_connection_close(self):
        srv = self.start_server(app(DRAIN), args=["--workers", "2"])
        self.assertOK(srv.get("/_ah/health"))
        kept = srv.connect()
        kept.send(build_request("GET", "/hello"))
        r = kept.read_response()
        self.assertOK(r, b"hello")
        self.assertNotEqual((r.header("connection") or "").lower(), "close")
        n = len(srv.err.snapshot())
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        self.assertIsNotNone(srv.err.wait_for(lambda l: "draining" in l, 5, start=n),
                             srv.stderr_text())
        # the kept-alive connection: served, then told to close
        kept.send(build_request("GET", "/hello"))
        r = kept.read_response()
        self.assertOK(r, b"hello")
        self.assertEqual(r.header("connection").lower(), "close")
        self.assertTrue(kept.wait_closed(5), "connection left open after Connection: close")
        kept.close()
        # health 503 and new connections served, for the whole drain
        seen = 0
        while time.monotonic() - t0 < DRAIN - 0.4:
            h = srv.get("/_ah/health")
            self.assertStatus(h, 503)
            self.assertEqual(h.header("connection").lower(), "close")
            r = srv.get("/hello")
            self.assertOK(r, b"hello")
            self.assertEqual(r.header("connection").lower(), "close")
            seen += 1
            time.sleep(0.1)
        self.assertGreater(seen, 2)
        self.assertTrue(srv.alive(), "stopped during the drain")
        rc = srv.wait(DRAIN + 10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertGreaterEqual(took, DRAIN - 0.05)
        self.assertLess(took, DRAIN + harness.scaled(2.0))
        self.assertIn("drain ended", srv.stderr_text())

    def test_second_signal_cuts_the_drain_short(self):
        srv = self.start_server(app(30))
        n = len(srv.err.snapshot())
        srv.send_signal(signal.SIGTERM)
        self.assertIsNotNone(srv.err.wait_for(lambda l: "draining" in l, 5, start=n))
        self.assertStatus(srv.get("/_ah/health"), 503)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGINT)
        rc = srv.wait(10)
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertLess(time.monotonic() - t0, harness.scaled(2.0))

    def test_no_drain_by_default(self):
        srv = self.start_server(app(0))
        self.assertOK(srv.get("/_ah/health"))
        t0 = time.monotonic()
        self.assertEqual(srv.stop(), 0)
        self.assertLess(time.monotonic() - t0, harness.scaled(2.0))
        self.assertNotIn("draining", srv.stderr_text())

    def test_drain_must_be_seconds(self):
        for v in ("-1", '"soon"', "{}"):
            d = harness.app_dir(self, {"app.lua": "return { drain = %s }" % v})
            p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=10)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("drain", p.stderr)


if __name__ == "__main__":
    unittest.main()
