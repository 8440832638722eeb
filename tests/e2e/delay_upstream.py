#!/usr/bin/env python3
"""A loopback upstream for the urlfetch end-to-end tests and bench/fetch
that holds thousands of slow requests at once: one thread, one epoll loop
over non-blocking sockets (no thread, no coroutine per connection: it has
to stay cheap next to the server under test on a small machine), HTTP/1.1
with keep-alive.  Listens on 127.0.0.1 (an ephemeral port, or --port N)
and prints "PORT <n>" once it does.

Paths (GET or anything else; a request body is read and ignored):
  /delay?ms=N[&id=X]  answers "delayed N" after N ms.  With an id, what
                      became of the request is kept: answered, or aborted
                      (the client closed the connection before the
                      answer), and when, in ms after the request arrived.
  /hello              "hello" at once
  /stats              "open=O accepted=A requests=R pending=P answered=D
                      aborted=K max_pending=M span_ms=S" (S: from the first
                      /delay that arrived to the last; max_pending and
                      span restart at /stats?reset=1)
  /stats?id=X         "state=pending|answered|aborted|unknown after_ms=T"

Standard library only.
"""
import errno
import heapq
import select
import socket
import sys
import time
from urllib.parse import parse_qs, urlsplit

STATS = {"open": 0, "accepted": 0, "requests": 0, "pending": 0, "answered": 0, "aborted": 0,
         "max_pending": 0}
SPAN = [None, None]   # monotonic times of the first and the last /delay arrival
BY_ID = {}            # id -> [state, after_ms]
MAX_HEAD = 64 * 1024


def response(status, body, close=False):
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "X")
    head = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (status, reason, len(body), "Connection: close\r\n" if close else ""))
    return head.encode() + body


class Conn:
    __slots__ = ("sock", "fd", "buf", "out", "need_body", "pending", "closed")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray()
        self.out = bytearray()       # bytes the socket did not take yet
        self.need_body = 0
        self.pending = None          # [due, seq, conn, ms, rid, t0] of the delayed answer
        self.closed = False


class Server:
    def __init__(self, port):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(4096)
        self.ls.setblocking(False)
        self.ep = select.epoll()
        self.ep.register(self.ls.fileno(), select.EPOLLIN)
        self.conns = {}
        self.timers = []             # heap of pending entries
        self.seq = 0

    def port(self):
        return self.ls.getsockname()[1]

    def run(self):
        while True:
            timeout = -1
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            for fd, ev in self.ep.poll(timeout, 1024):
                if fd == self.ls.fileno():
                    self.accept()
                    continue
                c = self.conns.get(fd)
                if c is None:
                    continue
                if ev & select.EPOLLOUT:
                    self.flush(c)
                if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) and not c.closed:
                    self.read(c)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                entry = heapq.heappop(self.timers)
                c = entry[2]
                if c.pending is entry and not c.closed:
                    self.answer_delay(c)

    def accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return   # try again at the next readiness
                raise
            s.setblocking(False)
            c = Conn(s)
            self.conns[c.fd] = c
            self.ep.register(c.fd, select.EPOLLIN)
            STATS["open"] += 1
            STATS["accepted"] += 1

    def close(self, c):
        if c.closed:
            return
        c.closed = True
        STATS["open"] -= 1
        if c.pending:
            _, _, _, _, rid, t0 = c.pending
            c.pending = None
            STATS["pending"] -= 1
            STATS["aborted"] += 1
            if rid is not None:
                BY_ID[rid] = ["aborted", (time.monotonic() - t0) * 1000]
        del self.conns[c.fd]
        try:
            self.ep.unregister(c.fd)
        except OSError:
            pass
        c.sock.close()

    def read(self, c):
        while True:
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.close(c)
                return
            c.buf += data
            if len(data) < 65536:
                break
        self.parse(c)

    def write(self, c, data):
        if not c.out:
            try:
                n = c.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close(c)
                return
            data = data[n:]
            if not data:
                return
            self.ep.modify(c.fd, select.EPOLLIN | select.EPOLLOUT)
        c.out += data

    def flush(self, c):
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(c)
            return
        del c.out[:n]
        if not c.out:
            self.ep.modify(c.fd, select.EPOLLIN)

    def parse(self, c):
        while not c.closed and not c.pending:
            if c.need_body:
                take = min(c.need_body, len(c.buf))
                del c.buf[:take]
                c.need_body -= take
                if c.need_body:
                    return
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(c.buf) > MAX_HEAD:
                    self.write(c, response(400, b"head too large", True))
                    self.close(c)
                return
            head = bytes(c.buf[:end]).decode("latin-1")
            del c.buf[:end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.write(c, response(400, b"bad request line", True))
                self.close(c)
                return
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    c.need_body = int(value.strip() or "0")
            self.request(c, parts[1])

    def request(self, c, target):
        STATS["requests"] += 1
        u = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/delay":
            ms = int(q.get("ms", "1000"))
            rid = q.get("id")
            t0 = time.monotonic()
            if rid is not None:
                BY_ID[rid] = ["pending", 0.0]
            STATS["pending"] += 1
            STATS["max_pending"] = max(STATS["max_pending"], STATS["pending"])
            if SPAN[0] is None:
                SPAN[0] = t0
            SPAN[1] = t0
            self.seq += 1
            c.pending = [t0 + ms / 1000.0, self.seq, c, ms, rid, t0]
            heapq.heappush(self.timers, c.pending)
        elif u.path == "/hello":
            self.write(c, response(200, b"hello"))
        elif u.path == "/stats":
            if "id" in q:
                state, after = BY_ID.get(q["id"], ["unknown", 0.0])
                body = "state=%s after_ms=%d" % (state, after)
            else:
                span = (SPAN[1] - SPAN[0]) * 1000 if SPAN[0] is not None else 0
                body = " ".join("%s=%d" % kv for kv in STATS.items()) + " span_ms=%d" % span
                if "reset" in q:
                    SPAN[0] = SPAN[1] = None
                    STATS["max_pending"] = STATS["pending"]
            self.write(c, response(200, body.encode()))
        else:
            self.write(c, response(404, b"no such path"))

    def answer_delay(self, c):
        _, _, _, ms, rid, t0 = c.pending
        c.pending = None
        STATS["pending"] -= 1
        STATS["answered"] += 1
        if rid is not None:
            BY_ID[rid] = ["answered", (time.monotonic() - t0) * 1000]
        self.write(c, response(200, b"delayed %d" % ms))
        self.parse(c)


def main():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass
    port = 0
    if "--port" in sys.argv:
        port = int(sys.argv[sys.argv.index("--port") + 1])
    srv = Server(port)
    sys.stdout.write("PORT %d\n" % srv.port())
    sys.stdout.flush()
    try:
        srv.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
