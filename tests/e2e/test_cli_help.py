"""The command line people expect (SPEC §2, §13): `luahost <command>
--help` prints that command's usage (every option it takes) and exits 0;
`luahost test --filter PATTERN` runs the matching tests only, `--exclude`
skips, `-v` lists each test, for files that luahost runs and for files
that call lu.LuaUnit.run() themselves."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import run_luahost  # noqa: E402

SERVE_OPTIONS = ("--listen", "--role", "--workers", "--max-background-threads",
                 "--memory-limit", "--request-deadline", "--shutdown-grace",
                 "--log-format", "--reload")
TEST_OPTIONS = ("--app", "--role", "--filter", "--exclude", "-v")


class HelpTests(unittest.TestCase):

    def check_help(self, args, command, options):
        p = run_luahost(args, timeout=5)
        self.assertEqual(p.returncode, 0, "%r: %s" % (args, p.stderr))
        self.assertEqual(p.stderr, "", args)
        self.assertIn("luahost " + command, p.stdout, args)
        for opt in options:
            self.assertRegex(p.stdout, r"(^|[\s\[,])%s\b" % re.escape(opt),
                             "%r does not describe %s:\n%s" % (args, opt, p.stdout))
        others = {"serve", "run", "test"} - {command}
        for o in others:
            self.assertNotIn("luahost " + o, p.stdout, "%r prints %s's usage too" % (args, o))
        return p.stdout

    def test_serve_help(self):
        for flag in ("--help", "-h"):
            self.check_help(["serve", flag], "serve", SERVE_OPTIONS)
        # after other arguments too, and it starts no server
        d = harness.app_dir(self, {"app.lua": "return {}"})
        self.check_help(["serve", d, "--listen", "127.0.0.1:0", "--help"], "serve",
                        SERVE_OPTIONS)

    def test_run_help(self):
        for flag in ("--help", "-h"):
            out = self.check_help(["run", flag], "run", ())
            self.assertIn("SCRIPT.lua", out)

    def test_test_help(self):
        for flag in ("--help", "-h"):
            self.check_help(["test", flag], "test", TEST_OPTIONS)

    def test_top_level_help_lists_every_option(self):
        for args in (["--help"], ["-h"]):
            p = run_luahost(args, timeout=5)
            self.assertEqual(p.returncode, 0, p.stderr)
            for word in ("luahost serve", "luahost run", "luahost test", "--version"):
                self.assertIn(word, p.stdout)
            for opt in SERVE_OPTIONS + TEST_OPTIONS:
                self.assertIn(opt, p.stdout)

    def test_unknown_test_option_is_usage_error(self):
        for args, word in ((["test", "--frobnicate"], "--frobnicate"),
                           (["test", "-q"], "-q"),
                           (["test", "--filter"], "--filter"),
                           (["test", "--exclude"], "--exclude")):
            p = run_luahost(args, timeout=5)
            self.assertEqual(p.returncode, 2, "%r: %s" % (args, p.stderr))
            self.assertIn(word, p.stderr)


PLAIN = r'''
    TestAlpha = {}
    function TestAlpha:test_one() end
    function TestAlpha:test_two() end
    TestBeta = {}
    function TestBeta:test_three() end
    function TestBeta:test_broken() error("broken ran") end
'''
SELF_RUN = r'''
    local lu = require "luaunit"
    TestGamma = {}
    function TestGamma:test_four() end
    function TestGamma:test_broken() error("broken ran") end
    os.exit(lu.LuaUnit.run())
'''
RAN = re.compile(r"Ran (\d+) tests")


class FilterTests(unittest.TestCase):

    def setUp(self):
        self.d = harness.app_dir(self, {"t/test_plain.lua": PLAIN,
                                        "t/test_self.lua": SELF_RUN})
        self.t = os.path.join(self.d, "t")

    def ran(self, out):
        return sum(int(n) for n in RAN.findall(out))

    def test_without_filter_the_broken_tests_fail(self):
        p = run_luahost(["test", self.t], timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(self.ran(p.stdout), 6, p.stdout)

    def test_filter_runs_matching_tests_only(self):
        p = run_luahost(["test", "--filter", "test_[ot]", self.t], timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.ran(p.stdout), 3, p.stdout)   # one, two, three
        self.assertNotIn("broken ran", p.stdout + p.stderr)

    def test_filter_reaches_self_running_files(self):
        p = run_luahost(["test", "--filter=four", self.t], timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.ran(p.stdout), 1, p.stdout)
        self.assertNotIn("broken ran", p.stdout + p.stderr)

    def test_filters_repeat_and_exclude(self):
        p = run_luahost(["test", "--filter", "Alpha", "--filter", "Gamma",
                         "--exclude", "broken", self.t], timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.ran(p.stdout), 3, p.stdout)   # one, two, four

    def test_verbose_lists_each_test(self):
        p = run_luahost(["test", "-v", "-x", "broken", self.t], timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for name in ("TestAlpha.test_one", "TestAlpha.test_two",
                     "TestBeta.test_three", "TestGamma.test_four"):
            self.assertRegex(p.stdout, re.escape(name) + r"\s*\.\.\.\s*Ok", p.stdout)
        self.assertNotIn("test_broken", p.stdout)
        quiet = run_luahost(["test", "-x", "broken", self.t], timeout=30)
        self.assertEqual(quiet.returncode, 0)
        self.assertNotIn("TestAlpha.test_one", quiet.stdout)


CONSUMER_APP = {
    "app.lua": r'''
        return { role = "backend",
                 handlers = { {url = "^/_ah/start$", script = "start"},
                              {url = "^/push$", script = "push"} },
                 shared = { queues = { jobs = 100 }, dicts = { seen = "1m" } } }
    ''',
    # the app's long-lived consumer, started by /_ah/start as App Engine
    # apps do: it never ends by itself
    "start.lua": r'''
        local bt = require "background_thread"
        return function(req)
          bt.start_new_background_thread(function()
            local shared = require "shared"
            local q, d = shared.queue("jobs"), shared.dict("seen")
            while true do
              local v = q:pop(3600)
              if v then d:incr("n", 1, 0) end
            end
          end)
          return 200, "started"
        end
    ''',
    "push.lua": r'''
        return function(req) require("shared").queue("jobs"):push(req.args.v) return "ok" end
    ''',
    "tests/test_consumer.lua": r'''
        local lu = require "luaunit"
        local apptest = require "apptest"
        local shared = require "shared"
        local runtime = require "runtime"
        TestConsumer = {}
        function TestConsumer:test_start_runs_the_app_start()
          local status, ok = apptest.start()
          lu.assertEquals(status, 200)
          lu.assertTrue(ok)
          local st = apptest.request{method = "GET", path = "/push?v=x"}
          lu.assertEquals(st, 200)
          local t0 = runtime.monotonic()
          while shared.dict("seen"):get("n") ~= 1 and runtime.monotonic() - t0 < 5 do
            runtime.sleep(0.01)
          end
          lu.assertEquals(shared.dict("seen"):get("n"), 1)
        end
    ''',
    # a thread that spins on the CPU (no waits) and never ends
    "tests/test_spinner.lua": r'''
        local bt = require "background_thread"
        TestSpinner = {}
        function TestSpinner:test_leaves_a_spinning_thread()
          bt.start_new_background_thread(function() while true do end end)
        end
    ''',
}


class RunEndTests(unittest.TestCase):
    """Threads a test run leaves behind are cancelled and joined, so the run
    ends and prints its summary (SPEC §13)."""

    def test_run_ends_with_summary_despite_left_threads(self):
        d = harness.app_dir(self, CONSUMER_APP)
        t0 = time.monotonic()
        p = run_luahost(["test", "--app", d, "--role", "backend", os.path.join(d, "tests")],
                        timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"luahost test: 2 files, 2 passed, 0 failed")
        self.assertLess(time.monotonic() - t0, harness.scaled(15))

    def test_apptest_start_on_a_failing_start(self):
        files = dict(CONSUMER_APP)
        files["start.lua"] = 'return function(req) return 503, "not ready" end'
        files["tests/test_consumer.lua"] = r'''
            local lu = require "luaunit"
            local apptest = require "apptest"
            TestStart = {}
            function TestStart:test_reports_failure()
              local status, ok = apptest.start()
              lu.assertEquals(status, 503)
              lu.assertFalse(ok)
            end
        '''
        del files["tests/test_spinner.lua"]
        d = harness.app_dir(self, files)
        p = run_luahost(["test", "--app", d, os.path.join(d, "tests")], timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
