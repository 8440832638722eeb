#!/usr/bin/env python3
"""A loopback upstream for the urlfetch end-to-end tests and bench/fetch
that holds thousands of slow requests at once: one asyncio loop (no
thread per connection), HTTP/1.1 with keep-alive.  Listens on 127.0.0.1
(an ephemeral port, or --port N) and prints "PORT <n>" once it does.

Paths (GET or anything else; a request body is read and ignored):
  /delay?ms=N[&id=X]  answers "delayed N" after N ms.  With an id, what
                      became of the request is kept: answered, or aborted
                      (the client closed the connection before the
                      answer), and when, in ms after the request arrived.
  /hello              "hello" at once
  /stats              "open=O accepted=A requests=R pending=P answered=D aborted=K
                      max_pending=M span_ms=S" (S: from the first /delay that
                      arrived to the last; max_pending and span restart at
                      /stats?reset=1)
  /stats?id=X         "state=pending|answered|aborted|unknown after_ms=T"

Standard library only.
"""
import asyncio
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


class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = bytearray()
        self.need_body = 0
        self.pending = None        # (timer handle, id, t0) of the delayed answer
        self.queue = []            # requests pipelined behind a delayed one
        self.closed = False
        STATS["open"] += 1
        STATS["accepted"] += 1

    def connection_lost(self, exc):
        self.closed = True
        STATS["open"] -= 1
        if self.pending:
            handle, rid, t0 = self.pending
            handle.cancel()
            self.pending = None
            STATS["pending"] -= 1
            STATS["aborted"] += 1
            if rid is not None:
                BY_ID[rid] = ["aborted", (time.monotonic() - t0) * 1000]

    def data_received(self, data):
        self.buf += data
        self.parse()

    def parse(self):
        while not self.closed and not self.pending:
            if self.need_body:
                take = min(self.need_body, len(self.buf))
                del self.buf[:take]
                self.need_body -= take
                if self.need_body:
                    return
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.t.write(response(400, b"head too large", True))
                    self.t.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[:end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.t.write(response(400, b"bad request line", True))
                self.t.close()
                return
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self.need_body = int(value.strip() or "0")
            self.request(parts[1])

    def request(self, target):
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
            handle = asyncio.get_running_loop().call_later(ms / 1000.0, self.answer_delay, ms)
            self.pending = (handle, rid, t0)
        elif u.path == "/hello":
            self.t.write(response(200, b"hello"))
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
            self.t.write(response(200, body.encode()))
        else:
            self.t.write(response(404, b"no such path"))

    def answer_delay(self, ms):
        _, rid, t0 = self.pending
        self.pending = None
        STATS["pending"] -= 1
        STATS["answered"] += 1
        if rid is not None:
            BY_ID[rid] = ["answered", (time.monotonic() - t0) * 1000]
        self.t.write(response(200, b"delayed %d" % ms))
        self.parse()


async def main():
    port = 0
    if "--port" in sys.argv:
        port = int(sys.argv[sys.argv.index("--port") + 1])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, "127.0.0.1", port, backlog=4096,
                                      reuse_address=True)
    sys.stdout.write("PORT %d\n" % server.sockets[0].getsockname()[1])
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
