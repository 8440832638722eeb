"""A client that sends half a request line and stops is disconnected by
the header timeout, not at once, while others are served meanwhile.
Split from test_limits.py because it waits ~20 s: its own ctest entry
runs beside the others."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_limits import BASE_FILES  # noqa: E402


class SlowClientTest(harness.ServerTestCase):

    def test_half_request_line_is_disconnected(self):
        srv = self.start_server(dict(BASE_FILES, **{
            "app.lua": r'''
                return { handlers = { {url = "^/hello$", script = "hello"} } }
            '''}))
        t0 = time.monotonic()
        with srv.connect(timeout=35) as c:
            c.send(b"GET /hel")
            # meanwhile the server keeps serving others
            self.assertServes(srv)
            closed = c.wait_closed(32)
            took = time.monotonic() - t0
            self.assertTrue(closed, "idle half-request still open after %.0fs"
                            % took)
            self.assertLessEqual(took, 31.0)
            # not at once: a slow client is given time (the header timeout)
            self.assertGreaterEqual(took, 5.0, "cut off after %.1f s" % took)
            # Anything sent before the close must be an error response.
            if c.buf:
                self.assertRegex(bytes(c.buf), rb"^HTTP/1\.[01] (408|400) ")
        self.assertServes(srv)


if __name__ == "__main__":
    unittest.main()
