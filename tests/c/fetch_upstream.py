#!/usr/bin/env python3
"""Upstream for tests/c/test_fetch.c: a threaded HTTP/1.1 server on
127.0.0.1 (an ephemeral port), printed as "PORT <n>" on stdout once it
listens.  --tls serves HTTPS with a self-signed certificate made by the
openssl command into a temporary directory; it offers HTTP/2 by ALPN
(Debian's python3-h2), where /stats answers as below and any other path
with "PROTO h2", "PATH <path>" and "BODY <len>" lines.  --v6 listens on
::1 instead of 127.0.0.1.

Paths (any method):
  /plain                 "hello", with repeated and folded headers
  /status/<code>         that status, body "status <code>"
  /chunked               a chunked body "one-two-three"
  /slow?ms=N             answers "slow" after N ms
  /trickle?n=N           Content-Length N, then one byte per 100 ms
  /redirect/<n>          302 to /redirect/<n-1>; /redirect/0 answers "done"
  /redirect-file         302 to file:///etc/passwd
  /reset                 headers and part of the body, then a TCP reset
  /huge?size=N&cl=0|1    N bytes, with Content-Length (cl=1) or chunked
  /garbage               bytes that are not HTTP, then close
  /bigheaders?n=N        N headers of 1000 bytes each
  /echo                  the request: "METHOD m", "PATH p", "H name: value"
                         lines, then "BODY <len>" and the body bytes (not
                         with ?nobody=1)
  /stats                 "connections=C requests=R huge_sent=S huge_done=D
                         dropped=X"
  /conn                  "PORT <the client's port>" (which connection asked)
  /bye                   "bye" with keep-alive headers, then the server closes
  /drop-next             "armed"; the next request on this connection is read
                         and the connection closed without an answer
  /empty                 closes without an answer
  /close                 "closing" with Connection: close, then closes
  /http10                an HTTP/1.0 answer without length, ending at EOF
  /continue              100 Continue and 103 Early Hints, then "ok"
  /extra                 "ok", then bytes nobody asked for
  /cut                   Content-Length 100, 10 bytes, then close
  /chunked-cut           a chunked body cut off, then close
  /badstatus             an invalid status line
  /shortstatus           a status of two digits, a body to EOF
  /hangup                reset at once, the request's body unread
  /see/<code>?to=URL     that status with Location URL (default /echo)
  /rel/<a>/<b>           302 to ../../plain (relative)
"""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

try:
    import h2.config
    import h2.connection
    import h2.events
except ImportError:   # a python3 outside Debian's (pyenv): use Debian's copy
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.config
    import h2.connection
    import h2.events


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, addr, handler, tls_ctx):
        super().__init__(addr, handler)
        self.tls_ctx = tls_ctx
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.huge_sent = 0
        self.huge_done = 0
        self.reset_fds = set()
        self.dropped = 0

    def shutdown_request(self, request):
        # a reset connection is closed without a FIN first (SO_LINGER 0)
        with self.lock:
            reset = request.fileno() in self.reset_fds
            self.reset_fds.discard(request.fileno())
        if reset:
            request.close()
        else:
            super().shutdown_request(request)

    def handle_error(self, request, client_address):
        pass   # peers that vanish are part of the tests


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        with self.server.lock:
            self.server.connections += 1
        if self.server.tls_ctx:
            self.request = self.server.tls_ctx.wrap_socket(self.request, server_side=True)
            self.connection = self.request
        super().setup()

    def handle(self):
        if self.server.tls_ctx and self.connection.selected_alpn_protocol() == "h2":
            self.serve_h2()
        else:
            super().handle()

    def serve_h2(self):
        sock = self.connection
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams = {}
        while True:
            data = sock.recv(65535)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = [dict(ev.headers), b""]
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id][1] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    headers, body = streams.pop(ev.stream_id)
                    with self.server.lock:
                        self.server.requests += 1
                    if headers[":path"].startswith("/stats"):
                        out = self.stats_text().encode()
                    else:
                        out = b"PROTO h2\nPATH %s\nBODY %d\n%s" % (
                            headers[":path"].encode(), len(body), body)
                    conn.send_headers(ev.stream_id, [(":status", "200"),
                                                     ("content-length", str(len(out))),
                                                     ("X-Proto", "h2")])
                    conn.send_data(ev.stream_id, out, end_stream=True)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            sock.sendall(conn.data_to_send())

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_one_request(self):
        if getattr(self, "drop_next", False):
            self.rfile.readline()   # the next request line, then nothing
            with self.server.lock:
                self.server.dropped += 1
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def do_any(self):
        with self.server.lock:
            self.server.requests += 1
        if self.path.startswith("/hangup"):   # the body unread: a reset
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            with self.server.lock:
                self.server.reset_fds.add(self.connection.fileno())
            self.close_connection = True
            return
        body = self.read_body()
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        parts = u.path.strip("/").split("/")
        route = getattr(self, "r_" + parts[0].replace("-", "_"), None)
        if route is None:
            return self.send(404, b"no such path")
        route(parts, q, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_any

    def r_plain(self, parts, q, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Multi", "a")
        self.send_header("X-Multi", "b")
        self.send_header("Set-Cookie", "c1=1")
        self.send_header("Set-Cookie", "c2=2")
        self.send_header("X-Folded", "first")
        self._headers_buffer.append(b"\t  second\r\n")
        self.send_header("X-Empty-Fold", "")
        self._headers_buffer.append(b" value\r\n")
        self.send_header("X-MiXeD-CaSe", "KeEp  ")
        self.send_header("Content-Length", "5")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"hello")

    def r_status(self, parts, q, body):
        code = int(parts[1])
        self.send(code, b"status %d" % code)

    def r_chunked(self, parts, q, body):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (b"one", b"-two-", b"three"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def r_slow(self, parts, q, body):
        time.sleep(int(q.get("ms", "1000")) / 1000.0)
        self.send(200, b"slow")

    def r_trickle(self, parts, q, body):
        n = int(q.get("n", "100"))
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        self.wfile.flush()
        for _ in range(n):
            self.wfile.write(b"t")
            self.wfile.flush()
            time.sleep(0.1)

    def r_redirect(self, parts, q, body):
        n = int(parts[1])
        if n <= 0:
            return self.send(200, b"done", [("X-Final", "yes")])
        self.send(302, b"redirect body", [("Location", "/redirect/%d" % (n - 1)),
                                          ("X-Hop", str(n))])

    def r_redirect_file(self, parts, q, body):
        self.send(302, b"", [("Location", "file:///etc/passwd")])

    def r_reset(self, parts, q, body):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"partial")
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.server.lock:
            self.server.reset_fds.add(self.connection.fileno())
        self.close_connection = True

    def r_garbage(self, parts, q, body):
        self.wfile.write(b"NOT HTTP AT ALL\r\n\r\nreally not")
        self.close_connection = True

    def r_bigheaders(self, parts, q, body):
        self.send_response(200)
        for i in range(int(q.get("n", "2000"))):
            self.send_header("X-Big-%d" % i, "v" * 1000)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def r_huge(self, parts, q, body):
        size = int(q.get("size", "0"))
        cl = q.get("cl", "1") == "1"
        with self.server.lock:
            self.server.huge_sent = 0
            self.server.huge_done = 0
        block = b"h" * 65536
        sent = 0
        try:
            self.send_response(200)
            if cl:
                self.send_header("Content-Length", str(size))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while sent < size:
                piece = block[:min(len(block), size - sent)]
                if cl:
                    self.wfile.write(piece)
                else:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                with self.server.lock:
                    self.server.huge_sent = sent
            if not cl:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            with self.server.lock:
                self.server.huge_done = 1
            self.close_connection = True

    def r_echo(self, parts, q, body):
        out = [b"METHOD " + self.command.encode(), b"PATH " + self.path.encode()]
        for k, v in self.headers.items():
            out.append(b"H %s: %s" % (k.lower().encode("latin-1"), v.encode("latin-1")))
        out.append(b"BODY %d" % len(body))
        self.send(200, b"\n".join(out) + b"\n" + (b"" if q.get("nobody") else body))

    def r_conn(self, parts, q, body):
        self.send(200, b"PORT %d" % self.client_address[1])

    def r_bye(self, parts, q, body):
        self.send(200, b"bye")
        self.close_connection = True

    def r_drop_next(self, parts, q, body):
        self.send(200, b"armed")
        self.drop_next = True

    def r_empty(self, parts, q, body):
        self.close_connection = True

    def r_close(self, parts, q, body):
        self.send(200, b"closing", [("Connection", "close")])
        self.close_connection = True

    def raw(self, data, close=True):
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = close

    def r_http10(self, parts, q, body):
        self.raw(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold style body")

    def r_continue(self, parts, q, body):
        self.raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok", close=False)

    def r_extra(self, parts, q, body):
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra", close=False)

    def r_cut(self, parts, q, body):
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    def r_chunked_cut(self, parts, q, body):
        self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n8\r\nwor")

    def r_badstatus(self, parts, q, body):
        self.raw(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok")

    def r_shortstatus(self, parts, q, body):
        self.raw(b"HTTP/1.1 20 OK\r\n\r\na body to the end of the connection")

    def r_see(self, parts, q, body):
        self.send(int(parts[1]), b"see other", [("Location", q.get("to", "/echo"))])

    def r_rel(self, parts, q, body):
        self.send(302, b"", [("Location", "../../plain")])

    def stats_text(self):
        with self.server.lock:
            return "connections=%d requests=%d huge_sent=%d huge_done=%d dropped=%d" % (
                self.server.connections, self.server.requests, self.server.huge_sent,
                self.server.huge_done, self.server.dropped)

    def r_stats(self, parts, q, body):
        self.send(200, self.stats_text().encode())


def make_tls():
    d = tempfile.mkdtemp(prefix="fetch_upstream_")
    try:
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        return ctx
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    tls = make_tls() if "--tls" in sys.argv[1:] else None
    if "--v6" in sys.argv[1:]:
        Server.address_family = socket.AF_INET6
        srv = Server(("::1", 0), Handler, tls)
    else:
        srv = Server(("127.0.0.1", 0), Handler, tls)
    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
