#!/usr/bin/env python3
"""Stdlib-only helpers for bench/http.

  http_helper.py freeport
      print a free TCP port on 127.0.0.1
  http_helper.py waitport PORT TIMEOUT_S
      exit 0 as soon as 127.0.0.1:PORT accepts a connection, 1 on timeout
  http_helper.py inflight PORT PATH SECONDS
      keep exactly one GET PATH in flight (new request as soon as the previous
      one answers) for SECONDS; print "requests=N ok=N min_ms=X max_ms=Y"
  http_helper.py sleepers PORT PATH N PIDS TIMEOUT_S
      open N concurrent connections (non-blocking sockets on epoll), each
      sends one GET PATH; wait for all N responses; sample the summed VmRSS
      of PIDS (comma-separated) every 20 ms meanwhile; print key=value
      results (elapsed_s = first connect to last complete response)
"""
import errno
import http.client
import os
import select
import socket
import sys
import time


def freeport():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def waitport(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return 0
        except OSError:
            time.sleep(0.05)
    return 1


def inflight(port, path, seconds):
    end = time.monotonic() + seconds
    n = ok = 0
    lat = []
    conn = None
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            n += 1
            if r.status == 200:
                ok += 1
            lat.append((time.monotonic() - t0) * 1000)
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            n += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    if conn is not None:
        conn.close()
    mn = min(lat) if lat else 0.0
    mx = max(lat) if lat else 0.0
    print(f"requests={n} ok={ok} min_ms={mn:.1f} max_ms={mx:.1f}")
    return 0


def read_rss_kib(pids, key="VmRSS"):
    """Sum of KEY (kB) over the comma-separated PIDs."""
    total = 0
    for pid in str(pids).split(","):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def _parse_response(buf, eof):
    """Return (status, complete) for the bytes received so far."""
    hend = buf.find(b"\r\n\r\n")
    if hend < 0:
        return None, False
    lines = buf[:hend].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    clen = None
    chunked = False
    for h in lines[1:]:
        k, _, v = h.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            clen = int(v.strip())
        elif k == "transfer-encoding" and "chunked" in v.lower():
            chunked = True
    body = buf[hend + 4:]
    if chunked:
        return status, body.endswith(b"0\r\n\r\n") or eof
    if clen is not None:
        return status, len(body) >= clen
    return status, eof


def sleepers(port, path, n, pid, timeout):
    """n concurrent connections, one GET each, on a raw epoll loop (cheap
    enough per connection that the client is not what is measured)."""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Connection: close\r\n\r\n").encode()
    addr = ("127.0.0.1", port)
    ep = select.epoll(sizehint=n + 16)
    conns = {}                       # fd -> [sock, buf]
    results = {}                     # index -> status int or error string
    index_of = {}
    done_at = {}
    errors = {}
    first_error = ""
    rss_base = read_rss_kib(pid)
    peak = rss_base
    connected = 0
    t_all_connected = None
    last_sample = 0.0

    def fail(fd, why):
        nonlocal first_error
        sock = conns.pop(fd)[0]
        try:
            ep.unregister(fd)
        except OSError:
            pass
        sock.close()
        key = why.split(":")[0]
        errors[key] = errors.get(key, 0) + 1
        if not first_error:
            first_error = why
        results[index_of[fd]] = why

    def handle(fd, ev):
        nonlocal connected, t_all_connected
        c = conns.get(fd)
        if c is None:
            return
        sock, buf = c
        if buf is None:                              # waiting for connect
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(fd, f"connect:{os.strerror(err)}")
                return
            connected += 1
            if connected == n:
                t_all_connected = time.monotonic()
            try:
                sock.send(req)
            except OSError as e:
                fail(fd, f"send:{e}")
                return
            c[1] = bytearray()
            ep.modify(fd, select.EPOLLIN)
            return
        eof = False
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as e:
                fail(fd, f"recv:{e}")
                return
            if not chunk:
                eof = True
                break
            buf += chunk
        try:
            status, complete = _parse_response(bytes(buf), eof)
        except (ValueError, IndexError):
            fail(fd, f"badresponse:{bytes(buf[:80])!r}")
            return
        if complete:
            ep.unregister(fd)
            sock.close()
            del conns[fd]
            i = index_of[fd]
            results[i] = status
            done_at[i] = time.monotonic()
            if status != 200:
                errors[f"status_{status}"] = errors.get(f"status_{status}", 0) + 1
        elif eof:
            fail(fd, "eof:connection closed before a complete response")

    def pump(timeout_s):
        nonlocal peak, last_sample
        for fd, ev in ep.poll(timeout_s, 4096):
            handle(fd, ev)
        now = time.monotonic()
        if now - last_sample >= 0.02:
            last_sample = now
            peak = max(peak, read_rss_kib(pid))

    t0 = time.monotonic()
    for i in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        fd = sock.fileno()
        conns[fd] = [sock, None]
        index_of[fd] = i
        if err not in (0, errno.EINPROGRESS):
            fail(fd, f"connect:{os.strerror(err)}")
            continue
        ep.register(fd, select.EPOLLOUT)
        if i % 256 == 255:
            pump(0)
    deadline = t0 + timeout
    while conns and time.monotonic() < deadline:
        pump(0.02)
    t_end = time.monotonic()
    for fd in list(conns):
        fail(fd, "timeout:no complete response in time")
    peak = max(peak, read_rss_kib(pid))
    hwm = read_rss_kib(pid, "VmHWM")
    ep.close()

    ok = sum(1 for v in results.values() if v == 200)
    elapsed = (max(done_at.values()) if ok == n else t_end) - t0
    conn_s = (t_all_connected - t0) if t_all_connected else -1
    lat = sorted(done_at.values())
    print(f"n={n} ok={ok} elapsed_s={elapsed:.3f} all_connected_s={conn_s:.3f} "
          f"first_done_s={(lat[0] - t0) if lat else -1:.3f} "
          f"rss_base_mib={rss_base/1024:.1f} rss_peak_mib={peak/1024:.1f} "
          f"hwm_mib={hwm/1024:.1f} "
          f"errors={','.join(f'{k}:{v}' for k, v in sorted(errors.items())) or 'none'}")
    if first_error:
        print(f"first_error={first_error}", file=sys.stderr)
    return 0 if ok == n else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "freeport":
        freeport()
        return 0
    if cmd == "waitport":
        return waitport(int(argv[2]), float(argv[3]))
    if cmd == "inflight":
        return inflight(int(argv[2]), argv[3], float(argv[4]))
    if cmd == "sleepers":
        return sleepers(int(argv[2]), argv[3], int(argv[4]), argv[5],
                        float(argv[6]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
