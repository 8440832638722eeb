#!/usr/bin/env python3
"""Stdlib-only helpers for bench/shared.

Both servers have several workers behind one listening port, and which
worker accepts a connection is up to the kernel and the servers (nginx
tends to hand every connection of an idle server to the same worker). So
the client pins its connections: GET /whoami answers the worker's identity
(nginx: ngx.worker.id(); luahost: an ID of the worker's Lua state, one per
worker), and to reach a worker that has no connection yet the client keeps
the already-served workers busy with GET /spin (a CPU loop of ~150 ms that
does not yield, so that worker does not accept) while it connects again.

  shared_helper.py freeport
      print a free TCP port on 127.0.0.1
  shared_helper.py load PORT PATH SECONDS CONNS WORKERS EXPECT
      CONNS keep-alive connections spread evenly over WORKERS workers, each
      in its own thread sending GET PATH back to back for SECONDS; every
      answer must be 200 with body EXPECT (surrounding whitespace ignored).
      Prints key=value: requests, req_s, errors, spread (requests served
      by each worker, "/"-separated), workers (their IDs); on stderr a note
      if the connections could not be spread, and the first error.
  shared_helper.py queue PORT ITERS [GAP_MS]
      queue push->pop latency. Two keep-alive connections pinned to two
      different workers: A sends GET /pop (the server parks it: a blocking
      pop in luahost, a polling loop in nginx); after a random 1-2x GAP_MS
      (default 2 ms, so that the pop is surely waiting) B sends GET /push,
      which pushes the server's monotonic clock; A's answer is "LAT_US WHO"
      (latency measured inside the server, and who popped). Repeated ITERS
      times. Prints key=value: server-measured p50/p90/p99/max in
      microseconds, the client-observed time from sending /push to having
      /pop's answer, and how many round trips had /pop and /push in
      different workers. Exit status 1 if any /pop or /push failed.
"""
import math
import random
import socket
import sys
import threading
import time


def freeport():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


class HTTPError(Exception):
    pass


class Conn:
    """Minimal keep-alive HTTP/1.1 client: GET only, Content-Length or
    chunked answers (nginx's ngx.say answers chunked)."""

    def __init__(self, port, timeout=15.0):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, path):
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise HTTPError("connection closed by the server")
        self.buf += chunk

    def _take_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self):
        """Return (status, headers dict, body str) of the next answer."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HTTPError(f"bad status line {lines[0][:100]!r}")
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._take_line().split(b";")[0], 16)
                if size == 0:
                    while self._take_line():      # trailers, then the empty line
                        pass
                    break
                parts.append(self._take(size))
                self._take(2)
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:
            raise HTTPError("answer has neither Content-Length nor chunked encoding")
        if headers.get("connection", "").lower() == "close":
            raise HTTPError(f"server closed the keep-alive connection (status {status})")
        return status, headers, body.decode("utf-8", "replace")

    def get(self, path):
        self.send(path)
        return self.recv()


def whoami(c):
    st, _, body = c.get("/whoami")
    if st != 200 or not body.strip():
        raise HTTPError(f"GET /whoami -> {st} {body.strip()[:200]!r}")
    return body.strip()


def pinned_conns(port, conns, workers, max_attempts=40):
    """CONNS connections spread evenly over WORKERS distinct workers.
    Returns (list of (worker_id, Conn), note)."""
    quota = {}
    kept = {}            # worker id -> [Conn]
    order = []
    per = [conns // workers + (1 if i < conns % workers else 0) for i in range(workers)]
    attempts = 0
    note = ""
    while len(order) < conns and attempts < max_attempts:
        attempts += 1
        # Keep every worker that has its share busy while connecting.
        spinning = []
        for wid, cs in kept.items():
            if len(cs) >= quota[wid]:
                cs[0].send("/spin")
                spinning.append(cs[0])
        if spinning:
            time.sleep(0.02)
        c = Conn(port)
        try:
            wid = whoami(c)
        finally:
            for s in spinning:
                st, _, body = s.recv()
                if st != 200:
                    raise HTTPError(f"GET /spin -> {st} {body.strip()[:200]!r}")
        if wid not in kept:
            if len(kept) < workers:
                quota[wid] = per[len(kept)]
                kept[wid] = []
            else:
                raise HTTPError(f"more than {workers} distinct workers answered /whoami: {sorted(kept) + [wid]}")
        if len(kept[wid]) < quota[wid]:
            kept[wid].append(c)
            order.append((wid, c))
        else:
            c.close()
    if len(order) < conns:
        # Could not reach every worker: go on with what answers, say so.
        note = (f"only {len(kept)} of {workers} workers took connections after "
                f"{attempts} attempts")
        while len(order) < conns:
            c = Conn(port)
            order.append((whoami(c), c))
    return order, note


def pct(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def load(port, path, seconds, conns, workers, expect):
    order, note = pinned_conns(port, conns, workers)
    counts = [0] * len(order)
    errors = [0] * len(order)
    first_error = []
    start = threading.Barrier(len(order) + 1)
    stop_at = [0.0]

    def run(i, c):
        start.wait()
        end = stop_at[0]
        n = e = 0
        try:
            while time.monotonic() < end:
                st, _, body = c.get(path)
                n += 1
                if st != 200 or body.strip() != expect:
                    e += 1
                    if not first_error:
                        first_error.append(f"GET {path} -> {st} {body.strip()[:200]!r} (expected 200 {expect!r})")
        except (OSError, HTTPError) as ex:
            e += 1
            if not first_error:
                first_error.append(f"GET {path}: {ex}")
        counts[i], errors[i] = n, e

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, (_, c) in enumerate(order)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.monotonic() - t0
    for _, c in order:
        c.close()
    spread = {}                     # worker -> requests, in pinning order
    for (wid, _), n in zip(order, counts):
        spread[wid] = spread.get(wid, 0) + n
    total = sum(counts)
    print(f"requests={total} req_s={total / elapsed:.2f} elapsed_s={elapsed:.3f} errors={sum(errors)} "
          f"spread={'/'.join(str(n) for n in spread.values())} "
          f"workers={','.join(spread)}")
    if note:
        print(f"note: {note}", file=sys.stderr)
    if first_error:
        print(f"first_error={first_error[0]}", file=sys.stderr)
    return 0 if sum(errors) == 0 and total > 0 else 1


def queue(port, iters, gap_ms):
    order, note = pinned_conns(port, 2, 2)
    (pop_w, pop_c), (push_w, push_c) = order
    server_us, client_us = [], []
    cross = 0
    first_error = ""
    errors = 0
    rng = random.Random(1)
    t_start = time.monotonic()
    for i in range(iters):
        pop_c.send("/pop")
        time.sleep(gap_ms * (1 + rng.random()) / 1000.0)
        t0 = time.monotonic()
        st, _, body = push_c.get("/push")
        if st != 200:
            errors += 1
            first_error = first_error or f"iteration {i}: GET /push -> {st} {body.strip()[:200]!r}"
        pushed_by = body.split()[-1] if body.split() else "?"
        pst, _, pbody = pop_c.recv()
        t1 = time.monotonic()
        if pst != 200:
            errors += 1
            first_error = first_error or f"iteration {i}: GET /pop -> {pst} {pbody.strip()[:200]!r}"
            if st != 200:
                break       # nothing works: stop early, the caller reports it
            continue
        parts = pbody.split()
        try:
            lat = float(parts[0])
        except (ValueError, IndexError):
            errors += 1
            first_error = first_error or f"iteration {i}: GET /pop -> unparsable body {pbody[:200]!r}"
            continue
        server_us.append(lat)
        client_us.append((t1 - t0) * 1e6)
        if len(parts) > 1 and parts[1] != pushed_by:
            cross += 1
    elapsed = time.monotonic() - t_start
    pop_c.close()
    push_c.close()
    s = sorted(server_us)
    c = sorted(client_us)
    n = len(s)
    print(f"n={n} errors={errors} elapsed_s={elapsed:.2f} "
          f"p50_us={pct(s, 50):.1f} p90_us={pct(s, 90):.1f} p99_us={pct(s, 99):.1f} "
          f"max_us={(s[-1] if s else float('nan')):.1f} "
          f"min_us={(s[0] if s else float('nan')):.1f} "
          f"client_p50_us={pct(c, 50):.1f} client_p99_us={pct(c, 99):.1f} "
          f"cross={cross} pop_worker={pop_w} push_worker={push_w}")
    if note:
        print(f"note: {note}", file=sys.stderr)
    if first_error:
        print(f"first_error={first_error}", file=sys.stderr)
    return 0 if errors == 0 and n == iters else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    try:
        if cmd == "freeport":
            freeport()
            return 0
        if cmd == "load" and len(argv) == 8:
            return load(int(argv[2]), argv[3], float(argv[4]), int(argv[5]), int(argv[6]), argv[7])
        if cmd == "queue" and len(argv) in (4, 5):
            gap = float(argv[4]) if len(argv) == 5 else 2.0
            return queue(int(argv[2]), int(argv[3]), gap)
    except (OSError, HTTPError) as ex:
        print(f"shared_helper.py {cmd}: {type(ex).__name__}: {ex}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
