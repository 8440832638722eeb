"""Many connections at once, and a process's memory: shared by the
end-to-end tests (test_urlfetch, test_soak) and bench/fetch's helper.
Standard library only; no harness (the bench imports it on its own)."""
import os
import select
import socket
import time


def rss_kib(pid):
    """VmRSS of pid in KiB (0 once the process is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def connect_many(port, n, timeout):
    """n connected sockets (non-blocking) to 127.0.0.1:port, each accepted
    by the server's kernel queue; made before any request is timed.
    Raises AssertionError (closing what it opened) when a connect fails or
    they are not all connected within timeout seconds."""
    socks, pending = [], {}
    ep = select.epoll()
    deadline = time.monotonic() + timeout
    try:
        for i in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, 115):   # EINPROGRESS
                raise AssertionError("connect: %s" % os.strerror(err))
            pending[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLOUT)
            while len(pending) > 128 or (i == n - 1 and pending):
                if time.monotonic() > deadline:
                    raise AssertionError("%d of %d connects pending" % (len(pending), n))
                for fd, _ in ep.poll(0.1):
                    sk = pending.pop(fd)
                    ep.unregister(fd)
                    err = sk.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise AssertionError("connect: %s" % os.strerror(err))
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        ep.close()
    return socks
