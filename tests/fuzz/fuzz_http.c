/*
 * fuzz_http: arbitrary bytes into a real connection of the HTTP layer.
 *
 * Input: byte 0 & 15 = n, byte 0 & 16 = terminate, then n bytes of chunk
 * sizes (each byte + 1, used in turn), then the bytes sent.  Per input: a private uv loop, an
 * http_server whose dispatcher answers every request at once with 200 and
 * "m=<method length> p=<path length>", and a socketpair whose one end goes
 * to http_conn_open.  The client end writes the chunks (running the loop
 * between them), half-closes, runs the loop until the connection closes,
 * and checks what came back: a sequence of complete responses, each
 * "HTTP/1.1 ddd ", statuses 100, 200, 4xx or 505 only, one 200 per dispatched
 * request in order with the expected body (none for HEAD), nothing after a
 * response carrying "Connection: close", and a 4xx always closing.
 *
 * The connection never ends in silence: whenever the server closes before
 * the client does, its last response carries "Connection: close".  With
 * terminate set, the client follows the input with TERM_LEN NUL bytes,
 * which are malformed in every state a request can be in (more than a
 * body or chunk may hold under the max_body of 4096, and NUL is refused
 * everywhere else): the server must then answer with an error response
 * (or had already ended the conversation with "Connection: close") and
 * close on its own, before the client's EOF, so "malformed input gets a
 * 400 and the close" is enforced on every input, not only when the fuzzed
 * bytes happen to be malformed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "http/http.h"

#define FUZZ_MAX_INPUT (16 * 1024)
#define PUMP_LIMIT 10000
#define MAX_BODY 4096
#define TERM_LEN (MAX_BODY + 16)

struct expect { char body[48]; size_t len; int is_head; };

static struct expect *exp_v;
static size_t exp_n, exp_cap;

static char *out;
static size_t out_n, out_cap;
static int server_eof;   /* the server's side ended (EOF or reset seen) */

#define FUZZ_NAME "fuzz_http"
#define FUZZ_ON_FAIL()                                                       \
  fprintf(stderr, "--- server output (%zu bytes) ---\n%.*s\n---\n", out_n, \
          (int)(out_n > 4096 ? 4096 : out_n), out ? out : "")
#include "fuzz_check.h"

static void dispatch(void *ud, struct http_conn *c, const struct http_request *r) {
  if (exp_n == exp_cap) {
    exp_cap = exp_cap ? exp_cap * 2 : 64;
    exp_v = realloc(exp_v, exp_cap * sizeof *exp_v);
    if (!exp_v) abort();
  }
  struct expect *e = &exp_v[exp_n++];
  int n = snprintf(e->body, sizeof e->body, "m=%zu p=%zu", strlen(r->method), r->path_len);
  e->len = (size_t)n;
  e->is_head = r->is_head;
  http_respond(c, 200, NULL, 0, e->body, e->len);
}

/* Reads what the server sent so far (non-blocking). 1 at EOF. */
static int drain(int fd) {
  for (;;) {
    if (out_cap - out_n < 4096) {
      out_cap = out_cap ? out_cap * 2 : 65536;
      out = realloc(out, out_cap);
      if (!out) abort();
    }
    ssize_t k = recv(fd, out + out_n, out_cap - out_n, MSG_DONTWAIT);
    if (k > 0) { out_n += (size_t)k; continue; }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (k < 0 && errno == EINTR) continue;
    server_eof = 1;
    return 1;   /* EOF (or reset) */
  }
}

static void pump(uv_loop_t *loop, int fd, int times) {
  for (int i = 0; i < times; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    drain(fd);
  }
}

/* Sends all of p, running the loop when the socket is full. 0, or -1 once
 * the server stopped reading for good (closed). */
static int feed(uv_loop_t *loop, int fd, const uint8_t *p, size_t n) {
  int tries = 0;
  while (n) {
    ssize_t k = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k > 0) { p += k; n -= (size_t)k; continue; }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && tries++ < PUMP_LIMIT) {
      pump(loop, fd, 1);
      continue;
    }
    return -1;
  }
  return 0;
}

static const char *find(const char *hay, size_t n, const char *needle) {
  return memmem(hay, n, needle, strlen(needle));
}

/* The checks of the header comment, on out[0, out_n).  must_close: the
 * server ended the connection first, so its last word must say so. */
static void check_output(int must_close) {
  size_t pos = 0, answered = 0;
  int closed = 0;
  while (pos < out_n) {
    const char *r = out + pos;
    size_t left = out_n - pos;
    CHECK(!closed, "bytes after a response with Connection: close (at %zu)", pos);
    CHECK(left >= 13 && memcmp(r, "HTTP/1.1 ", 9) == 0 && r[9] >= '0' && r[9] <= '9' &&
              r[10] >= '0' && r[10] <= '9' && r[11] >= '0' && r[11] <= '9' && r[12] == ' ',
          "no status line at %zu", pos);
    int status = (r[9] - '0') * 100 + (r[10] - '0') * 10 + (r[11] - '0');
    const char *end = find(r, left, "\r\n\r\n");
    CHECK(end, "incomplete header block at %zu", pos);
    size_t hlen = (size_t)(end - r) + 4;
    const char *cl = find(r, hlen, "\r\nContent-Length: ");
    int close = find(r, hlen, "\r\nConnection: close\r\n") != NULL;
    pos += hlen;
    if (status == 100) {
      CHECK(!cl && !close, "100 Continue with Content-Length or Connection");
      continue;
    }
    /* 505: a well-formed request line with a version other than 1.0/1.1 */
    CHECK(status == 200 || (status >= 400 && status <= 499) || status == 505, "status %d",
          status);
    CHECK(cl, "no Content-Length (status %d)", status);
    size_t len = strtoul(cl + 18, NULL, 10);
    if (status == 200) {
      CHECK(answered < exp_n, "more 200s than dispatched requests (%zu)", exp_n);
      const struct expect *e = &exp_v[answered++];
      CHECK(len == e->len, "Content-Length %zu, expected %zu", len, e->len);
      if (e->is_head) len = 0;
      CHECK(out_n - pos >= len, "truncated body");
      CHECK(memcmp(out + pos, e->body, len) == 0, "body is not the echo '%s'", e->body);
    } else {
      CHECK(close, "%d without Connection: close", status);
      CHECK(out_n - pos >= len, "truncated body");
    }
    pos += len;
    closed = close;
  }
  CHECK(answered == exp_n, "%zu requests dispatched, %zu answered", exp_n, answered);
  CHECK(!must_close || closed, "the server closed the connection without a response "
        "carrying Connection: close (%zu bytes of output)", out_n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > FUZZ_MAX_INPUT) return -1;
  size_t nsizes = data[0] & 15;
  int terminate = (data[0] & 16) != 0;
  if (size < 1 + nsizes) return -1;
  const uint8_t *sizes = data + 1, *p = data + 1 + nsizes;
  size_t n = size - 1 - nsizes;

  exp_n = out_n = 0;
  server_eof = 0;
  uv_loop_t loop;
  struct http_server srv;
  struct http_limits lim = {MAX_BODY, 60000, 60000, 60000, 0};
  int sv[2];
  if (uv_loop_init(&loop) != 0) abort();
  http_server_init(&srv, &loop, &lim, dispatch, NULL);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  CHECK(http_conn_open(&srv, sv[0]) == 0, "http_conn_open");
  pump(&loop, sv[1], 1);

  for (size_t i = 0, off = 0; off < n; i++) {
    size_t k = nsizes ? (size_t)sizes[i % nsizes] + 1 : n;
    if (k > n - off) k = n - off;
    if (feed(&loop, sv[1], p + off, k) < 0) break;
    off += k;
    pump(&loop, sv[1], 3);
  }
  if (terminate) {
    static const uint8_t nul[TERM_LEN];
    feed(&loop, sv[1], nul, sizeof nul);   /* -1: the server already closed */
    for (int i = 0; i < PUMP_LIMIT && !server_eof; i++) pump(&loop, sv[1], 1);
    CHECK(server_eof, "input and %d NUL bytes: still open %d loop turns later", TERM_LEN,
          PUMP_LIMIT);
  } else {
    pump(&loop, sv[1], 3);
  }
  int closed_first = server_eof;   /* the server ended it before our EOF */
  shutdown(sv[1], SHUT_WR);
  int i;
  for (i = 0; i < PUMP_LIMIT && uv_loop_alive(&loop); i++) pump(&loop, sv[1], 1);
  CHECK(!uv_loop_alive(&loop), "connection still open %d loop turns after the client's EOF",
        PUMP_LIMIT);
  while (!drain(sv[1])) {}
  close(sv[1]);
  CHECK(uv_loop_close(&loop) == 0, "handles left on the loop");
  check_output(closed_first);
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("FUZZ_HTTP_VERBOSE") != NULL;
  if (verbose) fprintf(stderr, "fuzz_http: %zu requests, %zu bytes back\n", exp_n, out_n);
  return 0;
}
