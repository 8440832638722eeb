"""shared dicts and queues across workers, end to end: a pop waiting on
one worker is woken by a push on another; concurrent incr is exact; a
waiting pop never blocks the worker and returns at shutdown."""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FILES = {
    "hello.lua": harness.HELLO_LUA,
    "app.lua": r'''
        return {
          workers = 2,
          request_deadline = 5,
          shared = { dicts = { counters = "1m" }, queues = { jobs = 100 } },
          handlers = {
            {url = "^/hello$", script = "hello"},
            {url = "^/pop$", script = "pop"},
            {url = "^/push$", script = "push"},
            {url = "^/incr$", script = "incr"},
            {url = "^/get$", script = "get"},
          },
        }
    ''',
    # the state's identity: differs between the two workers' states
    "pop.lua": r'''
        local shared = require "shared"
        local me = tostring({}):match("0x%x+")
        return function(req)
          -- the marker is written just before the pop waits: tests wait for
          -- it instead of sleeping
          io.stdout:write("POP-WAITING ", me, "\n") io.stdout:flush()
          local v, err = shared.queue("jobs"):pop(tonumber(req.args.timeout))
          return string.format("%s %s %s", tostring(v), tostring(err), me)
        end
    ''',
    "push.lua": r'''
        local shared = require "shared"
        return function(req)
          local ok, err = shared.queue("jobs"):push(req.args.v, 0)
          return tostring(ok) .. " " .. tostring(err)
        end
    ''',
    "incr.lua": r'''
        local d = require("shared").dict("counters")
        return function(req)
          for i = 1, tonumber(req.args.n) do d:incr("hits", 1, 0) end
          return "ok"
        end
    ''',
    "get.lua": r'''
        local d = require("shared").dict("counters")
        return function(req) return tostring(d:get("hits")) end
    ''',
}


def wait_popping(test, srv, n):
    """Until n pop handlers have announced their wait on stdout."""
    deadline = time.monotonic() + harness.scaled(10)
    while sum(1 for l in srv.stdout_lines() if l.startswith("POP-WAITING ")) < n:
        test.assertLess(time.monotonic(), deadline, "pops did not start: %r"
                        % srv.stdout_lines())
        srv.wait_stdout(lambda l: False, 0.02)


class SharedAcrossWorkers(harness.ServerTestCase):

    def setUp(self):
        self.srv = self.start_server(FILES)

    def test_pops_on_both_workers_are_woken_by_pushes(self):
        # Pops on new connections, until both workers have some parked
        # (which worker takes a connection is the host's choice: by load).
        conns = []
        self.addCleanup(lambda: [c.close() for c in conns])
        deadline = time.monotonic() + harness.scaled(10)
        while True:
            for _ in range(8):
                c = self.srv.connect()
                c.send(harness.build_request("GET", "/pop?timeout=20"))
                conns.append(c)
            wait_popping(self, self.srv, len(conns))      # every pop is parked now
            states = {l.split()[1] for l in self.srv.stdout_lines()
                      if l.startswith("POP-WAITING ")}
            if len(states) == 2:
                break
            self.assertLess(time.monotonic(), deadline, "every pop went to one worker")
        n = len(conns)
        results = [None] * n
        t0 = time.monotonic()
        for i in range(n):
            r = self.srv.get("/push?v=job%d" % i)
            self.assertOK(r, b"true nil")
        for i, c in enumerate(conns):
            results[i] = c.read_response(timeout=harness.scaled(5)).body.decode()
            c.close()
        self.assertLess(time.monotonic() - t0, harness.scaled(2.0))
        got = sorted(r.split()[0] for r in results)
        self.assertEqual(got, sorted("job%d" % i for i in range(n)))
        states = {r.split()[2] for r in results}
        self.assertEqual(len(states), 2,
                         "pops did not wait on both workers: %r\n%s" % (results, self.srv.stderr_text()[-3000:]))

    def test_waiting_pop_does_not_block_its_worker(self):
        # one worker: the other requests must meet the waiting pop's worker
        srv = self.start_server(dict(FILES, **{
            "app.lua": FILES["app.lua"].replace("workers = 2", "workers = 1")}))
        with srv.connect() as c:
            c.send(harness.build_request("GET", "/pop?timeout=3"))
            wait_popping(self, srv, 1)
            t0 = time.monotonic()
            for _ in range(10):
                self.assertServes(srv)
            served = time.monotonic() - t0
            r = c.read_response(timeout=harness.scaled(10))
            self.assertTrue(r.body.startswith(b"nil timeout "), r.body)
            # all ten answered while the pop still waited its 3 s
            self.assertLess(served, 2.0)

    def test_concurrent_incr_is_exact(self):
        per, reqs = 1000, 100
        errors = []

        def worker(k):
            try:
                with self.srv.connect() as c:
                    for _ in range(k):
                        c.send(harness.build_request("GET", "/incr?n=%d" % per))
                        r = c.read_response(timeout=harness.scaled(10))
                        if r.status != 200:
                            errors.append(r.status)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(reqs // 8,)) for _ in range(8)]
        threads.append(threading.Thread(target=worker, args=(reqs % 8,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=harness.scaled(60))
        self.assertEqual(errors, [])
        self.assertOK(self.srv.get("/get"), str(per * reqs))

    def test_pop_without_timeout_ends_at_the_deadline(self):
        t0 = time.monotonic()
        r = self.srv.get("/pop", timeout=harness.scaled(15))
        took = time.monotonic() - t0
        self.assertStatus(r, 500)
        self.assertGreater(took, 4.5)
        self.assertLess(took, harness.scaled(8))
        self.assertIsNotNone(self.srv.err.wait_for(
            lambda l: "DeadlineExceededError" in l, 3))

    def test_waiting_pop_returns_shutting_down_at_sigterm(self):
        with self.srv.connect() as c:
            c.send(harness.build_request("GET", "/pop?timeout=20"))
            wait_popping(self, self.srv, 1)
            self.srv.send_signal(signal.SIGTERM)
            r = c.read_response(timeout=harness.scaled(5))
            self.assertTrue(r.body.startswith(b"nil shutting down"), r.body)
        self.assertEqual(self.srv.wait(harness.scaled(10)), 0)


ISOLATION = {
    "app.lua": r'''
        return { workers = 2, handlers = { {url = "^/who$", script = "who"} } }
    ''',
    # module upvalue, global and loaded module: each worker's own
    "who.lua": r'''
        local shared = require "shared"
        local me = tostring({}):match("0x%x+")
        local hits = 0
        return function(req)
          hits = hits + 1
          GLOBAL_HITS = (GLOBAL_HITS or 0) + 1
          package.loaded["counter_mod"] = (package.loaded["counter_mod"] or 0) + 1
          local total = shared.dict("iso"):incr("n", 1, 0)
          return string.format("%s %d %d %d %d", me, hits, GLOBAL_HITS,
                               package.loaded["counter_mod"], total)
        end
    ''',
}


class WorkersShareNothing(harness.ServerTestCase):
    """SPEC §4: Lua state a handler keeps lives in its worker's state;
    nothing is shared between workers except through `shared`."""

    def test_only_shared_is_shared(self):
        srv = self.start_server(ISOLATION)
        seen = {}      # state -> [(hits, global, module, total)]
        conns = []     # held open: the host gives a new one to the worker
        self.addCleanup(lambda: [c.close() for c in conns])   # with fewer
        n = 0

        def who(c):
            nonlocal n
            c.send(harness.build_request("GET", "/who"))
            r = c.read_response()
            self.assertOK(r)
            me, hits, glob, mod, total = r.text.split()
            seen.setdefault(me, []).append((int(hits), int(glob), int(mod), int(total)))
            n += 1
            return me

        deadline = time.monotonic() + harness.scaled(20)
        while len(seen) < 2:
            self.assertLess(time.monotonic(), deadline, "one worker only: %r" % seen)
            conns.append(srv.connect())
            who(conns[-1])
        for _ in range(3):                  # more on each, both workers
            for c in conns:
                who(c)
        self.assertEqual(len(seen), 2, seen)
        for me, rows in seen.items():
            k = len(rows)
            # each worker counts only its own requests, in every kind of state
            self.assertEqual([r[:3] for r in rows], [(i, i, i) for i in range(1, k + 1)],
                             "worker %s saw another's state: %r" % (me, seen))
        # the shared dict counts every request, whichever worker ran it
        totals = sorted(r[3] for rows in seen.values() for r in rows)
        self.assertEqual(totals, list(range(1, n + 1)))


if __name__ == "__main__":
    unittest.main()
