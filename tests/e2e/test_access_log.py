"""The access log (SPEC §4, §13): one line per request on stdout with time,
remote address, method, path, query string, status, bytes, duration,
request ID and user agent; `access_log = "json"` in app.lua writes each as
one JSON object (valid JSON whatever the client sent) while the host log
stays text; any other value is a configuration error naming the key."""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codecs  # noqa: E402
import harness  # noqa: E402
from harness import build_request, run_luahost  # noqa: E402

ROUTES = '''handlers = { {url = "^/hello$", script = "hello"},
                     {url = "^/big$", script = "big"} }'''
FILES = {
    "hello.lua": harness.HELLO_LUA,
    "big.lua": 'return function(req) return 201, string.rep("x", 1000) end',
}


codecs.register_error(
    "luahost-byte", lambda e: (chr(e.object[e.start]), e.start + 1))


def app(access_log):
    files = dict(FILES)
    files["app.lua"] = "return { access_log = %s, %s }" % (access_log, ROUTES)
    return files


# time remote method target status bytes duration request-id "agent"|-
TEXT_RE = re.compile(r'^(\S+) (\S+) (\S+) (\S+) (\d{3}) (\d+) ([\d.]+)ms (\S+) '
                     r'("(?:[^"\\]|\\.)*"|-)$')
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JSON_KEYS = {"time", "remote_addr", "method", "path", "query", "status", "bytes",
             "duration_ms", "request_id", "user_agent"}


class AccessLogCase(harness.ServerTestCase):

    def line_for(self, srv, rid):
        line = srv.wait_stdout(lambda l: rid in l, 5)
        self.assertIsNotNone(line, "no access line for %s: %r" % (rid, srv.stdout_lines()))
        return line

    def send(self, srv, target, headers=None):
        with srv.connect() as c:
            c.send(build_request("GET", target, headers))
            r = c.read_response()
        return r


class TextAccessLogTests(AccessLogCase):

    def test_every_field_in_the_text_line(self):
        srv = self.start_server(app("true"))
        t0 = time.time()
        r = self.send(srv, "/big?a=1&b=x%20y", {"User-Agent": "probe/1.0 (test; x)"})
        self.assertStatus(r, 201)
        rid = r.header("x-request-id")
        m = TEXT_RE.match(self.line_for(srv, rid))
        self.assertIsNotNone(m, self.line_for(srv, rid))
        when, remote, method, target, status, nbytes, dur, lrid, agent = m.groups()
        self.assertRegex(when, TIME_RE)
        self.assertEqual(remote, "127.0.0.1")
        self.assertEqual(method, "GET")
        self.assertEqual(target, "/big?a=1&b=x%20y")
        self.assertEqual(int(status), 201)
        self.assertGreaterEqual(int(nbytes), 1000)        # head and body sent
        self.assertLess(int(nbytes), 1400)
        self.assertGreaterEqual(float(dur), 0)
        self.assertLess(float(dur), (time.time() - t0) * 1000 + 1)
        self.assertEqual(lrid, rid)
        self.assertEqual(agent, '"probe/1.0 (test; x)"')

    def test_no_query_and_no_agent(self):
        srv = self.start_server(app("true"))
        r = self.send(srv, "/hello")
        m = TEXT_RE.match(self.line_for(srv, r.header("x-request-id")))
        self.assertIsNotNone(m)
        self.assertEqual(m.group(4), "/hello")
        self.assertEqual(m.group(9), "-")
        r = self.send(srv, "/hello?", {"User-Agent": ""})    # empty query, empty agent
        m = TEXT_RE.match(self.line_for(srv, r.header("x-request-id")))
        self.assertIsNotNone(m)
        self.assertEqual(m.group(4), "/hello")
        self.assertEqual(m.group(9), '""')

    def test_hostile_agent_cannot_forge_fields_or_lines(self):
        srv = self.start_server(app("true"))
        agent = b'evil" 200 0 0.1ms fake-id "x\\\t\xff'
        r = self.send(srv, "/hello?q=%22%0a", {"User-Agent": agent})
        self.assertOK(r, b"hello")
        rid = r.header("x-request-id")
        line = self.line_for(srv, rid)
        m = TEXT_RE.match(line)
        self.assertIsNotNone(m, line)
        self.assertEqual(m.group(8), rid)
        self.assertEqual(m.group(4), "/hello?q=%22%0a")
        self.assertTrue(m.group(9).startswith('"evil\\" 200'), line)
        self.assertIn("\\x09", m.group(9))
        self.assertEqual(sum(1 for l in srv.stdout_lines() if rid in l), 1)

    def test_long_query_and_agent_keep_the_fields_after_them(self):
        srv = self.start_server(app("true"))
        r = self.send(srv, "/hello?" + "q" * 6000, {"User-Agent": "a\t" * 1500})
        self.assertOK(r, b"hello")
        rid = r.header("x-request-id")
        m = TEXT_RE.match(self.line_for(srv, rid))
        self.assertIsNotNone(m)
        self.assertEqual(m.group(8), rid)
        self.assertEqual(m.group(5), "200")

    def test_refused_request_is_logged_with_its_query(self):
        srv = self.start_server(app("true"))
        with srv.connect() as c:
            c.send(b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n"
                   b"User-Agent: two-hosts\r\n\r\n")
            r = c.read_response()
        self.assertStatus(r, 400)
        m = TEXT_RE.match(self.line_for(srv, r.header("x-request-id")))
        self.assertIsNotNone(m)
        self.assertEqual(m.group(4), "/hello?x=1")
        self.assertEqual(m.group(5), "400")
        self.assertEqual(m.group(3), "GET")

    def test_garbage_is_logged_without_a_method(self):
        # no method was read: the line says "-", not llhttp's method 0 (DELETE)
        srv = self.start_server(app("true"))
        with srv.connect() as c:
            c.send(b"GARBAGE\r\n\r\n")
            r = c.read_response()
        self.assertStatus(r, 400)
        m = TEXT_RE.match(self.line_for(srv, r.header("x-request-id")))
        self.assertIsNotNone(m)
        self.assertEqual((m.group(3), m.group(4), m.group(5)), ("-", "-", "400"))


class JsonAccessLogTests(AccessLogCase):

    def entries(self, srv, rids):
        for rid in rids:
            self.line_for(srv, rid)
        out = {}
        for line in srv.stdout_lines():
            self.assertNotIn("\ufffd", line, "line is not valid UTF-8: %r" % line)
            try:
                e = json.loads(line)
            except ValueError:
                self.fail("access line is not JSON: %r" % line)
            self.assertIsInstance(e, dict)
            self.assertEqual(set(e), JSON_KEYS, line)
            out[e["request_id"]] = e
        return out

    def test_access_log_json_every_field(self):
        srv = self.start_server(app('"json"'))
        r1 = self.send(srv, "/big?a=1&b=%C3%A9", {"User-Agent": "curl/8.0"})
        r2 = self.send(srv, "/hello")
        self.assertStatus(r1, 201)
        rid1, rid2 = r1.header("x-request-id"), r2.header("x-request-id")
        got = self.entries(srv, [rid1, rid2])
        e = got[rid1]
        self.assertRegex(e["time"], TIME_RE)
        self.assertEqual(e["remote_addr"], "127.0.0.1")
        self.assertEqual(e["method"], "GET")
        self.assertEqual(e["path"], "/big")
        self.assertEqual(e["query"], "a=1&b=%C3%A9")
        self.assertEqual(e["status"], 201)
        self.assertIsInstance(e["bytes"], int)
        self.assertGreaterEqual(e["bytes"], 1000)
        self.assertIsInstance(e["duration_ms"], (int, float))
        self.assertGreaterEqual(e["duration_ms"], 0)
        self.assertEqual(e["user_agent"], "curl/8.0")
        e = got[rid2]
        self.assertEqual((e["path"], e["query"], e["status"], e["user_agent"]),
                         ("/hello", "", 200, None))

    def test_host_log_stays_text(self):
        srv = self.start_server(app('"json"'))
        self.assertOK(srv.get("/hello"), b"hello")
        line = srv.wait_stderr("listening on", 1)
        self.assertFalse(line.lstrip().startswith("{"), line)

    def test_hostile_bytes_are_escaped(self):
        srv = self.start_server(app('"json"'))
        agents = [b'a"b\\c', b"x\ty", b"\xff\xfe half \xc3", b"ok \xc3\xa9 \xe2\x82\xac",
                  b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong", b"\xf4\x90\x80\x80 big"]
        rids = {}
        for a in agents:
            r = self.send(srv, '/hello?x="\\', {"User-Agent": a})
            self.assertOK(r, b"hello")
            rids[r.header("x-request-id")] = a
        # a control byte llhttp refuses: 400, and its line is JSON too
        with srv.connect() as c:
            c.send(b"GET /hello?y=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x01b\r\n\r\n")
            r = c.read_response()
        self.assertStatus(r, 400)
        got = self.entries(srv, list(rids) + [r.header("x-request-id")])
        self.assertEqual(got[r.header("x-request-id")]["query"], "y=1")
        self.assertEqual(got[r.header("x-request-id")]["status"], 400)
        for rid, a in rids.items():
            e = got[rid]
            self.assertEqual(e["query"], 'x="\\')
            # valid UTF-8 is kept; any other byte is \u00XX (its latin-1 char)
            want = a.decode("utf-8", "luahost-byte")
            self.assertEqual(e["user_agent"], want, a)

    def test_long_fields_keep_the_line_valid(self):
        srv = self.start_server(app('"json"'))
        r = self.send(srv, "/hello?" + "%22" * 3000, {"User-Agent": b'"' * 4000})
        self.assertOK(r, b"hello")
        rid = r.header("x-request-id")
        e = self.entries(srv, [rid])[rid]
        self.assertTrue(e["query"].startswith("%22%22"))
        self.assertTrue(set(e["user_agent"]) <= {'"'}, e["user_agent"][:20])
        self.assertGreater(len(e["user_agent"]), 100)

    def test_log_format_json_also_gives_the_new_fields(self):
        srv = self.start_server(app("true"), args=["--log-format", "json"])
        r = self.send(srv, "/hello?k=v", {"User-Agent": "ua"})
        rid = r.header("x-request-id")
        e = self.entries(srv, [rid])[rid]
        self.assertEqual((e["query"], e["user_agent"]), ("k=v", "ua"))


class AccessLogConfigTests(unittest.TestCase):

    def test_bad_values_name_the_key(self):
        for v in ('"yes"', '"JSON"', "1", "{}"):
            d = harness.app_dir(self, app(v))
            p = run_luahost(["serve", d, "--listen", "127.0.0.1:0"], timeout=10)
            self.assertEqual(p.returncode, 2, "%s: %s" % (v, p.stderr))
            self.assertIn("access_log", p.stderr)
            self.assertIn('"json"', p.stderr)


if __name__ == "__main__":
    unittest.main()
