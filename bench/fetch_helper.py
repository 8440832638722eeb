#!/usr/bin/env python3
"""Stdlib-only helper for bench/fetch.

  fetch_helper.py burst PORT PATH N PID TIMEOUT_S
      open N connections to 127.0.0.1:PORT (untimed), then send one
      GET PATH on each at once and wait for all N responses; samples
      VmRSS of PID every 20 ms meanwhile and reads its CPU time
      (utime+stime) before and after.  Prints key=value results:
      n ok elapsed_s (first send to last complete response) first_s
      p50_s cpu_s rss_idle_mib rss_peak_mib errors
"""
import os
import re
import select
import sys
import time

# the mass-connection helpers are the end-to-end tests' own
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from massconn import connect_many, rss_kib  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def burst(port, path, n, pid, timeout):
    raise_nofile(n + 1024)
    socks = connect_many(port, n, timeout)
    time.sleep(0.2)                     # let the server accept them all
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode()
    ep = select.epoll()
    bufs = {}
    done = []
    errors = {}
    rss_idle = rss_kib(pid)
    peak = rss_idle
    c0 = cpu_s(pid)
    t0 = time.monotonic()
    for s in socks:
        s.send(req)
        bufs[s.fileno()] = bytearray()
        ep.register(s.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): s for s in socks}
    deadline = t0 + timeout
    last_sample = 0.0
    while bufs and time.monotonic() < deadline:
        for fd, _ in ep.poll(0.02):
            buf = bufs.get(fd)
            if buf is None:
                continue
            try:
                data = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data = b""
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            buf += data
            end = buf.find(b"\r\n\r\n")
            head = bytes(buf[:end]) if end >= 0 else b""
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if m:
                complete = len(buf) >= end + 4 + int(m.group(1))
            else:   # chunked (OpenResty's ngx.print)
                complete = (end >= 0 and re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head)
                            is not None and buf.endswith(b"\r\n0\r\n\r\n"))
            if complete or not data:
                ep.unregister(fd)
                del bufs[fd]
                status = int(buf[9:12]) if complete else 0
                if status != 200:
                    key = "status_%d" % status if complete else "closed"
                    errors[key] = errors.get(key, 0) + 1
                else:
                    done.append(time.monotonic() - t0)
        now = time.monotonic()
        if now - last_sample >= 0.02:
            last_sample = now
            peak = max(peak, rss_kib(pid))
    elapsed = time.monotonic() - t0 if bufs else max(done or [0.0])
    c1 = cpu_s(pid)
    peak = max(peak, rss_kib(pid))
    if bufs:
        errors["timeout"] = len(bufs)
    for s in socks:
        s.close()
    done.sort()
    print("n=%d ok=%d elapsed_s=%.3f first_s=%.3f p50_s=%.3f cpu_s=%.2f "
          "rss_idle_mib=%.1f rss_peak_mib=%.1f errors=%s" % (
              n, len(done), elapsed, done[0] if done else -1,
              done[len(done) // 2] if done else -1, c1 - c0, rss_idle / 1024, peak / 1024,
              ",".join("%s:%d" % kv for kv in sorted(errors.items())) or "none"))
    return 0 if len(done) == n else 1


def main(argv):
    if len(argv) == 7 and argv[1] == "burst":
        return burst(int(argv[2]), argv[3], int(argv[4]), int(argv[5]), float(argv[6]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
