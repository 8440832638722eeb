/*
 * fuzz_fetch_h1: arbitrary bytes from an "HTTP server" into net/fetch's
 * own HTTP/1.1 client.
 *
 * Input: byte 0 = options (bit 0: HEAD, bit 1: follow redirects, bit 2:
 * allow_truncated, bit 3: max_response_size 16 bytes instead of 64 KiB,
 * bit 4: a second fetch right after the first, which may take the kept
 * connection), byte 1 = chunk size (b + 1), then the bytes the server
 * sends (with redirects followed, only inputs whose every Location is a
 * path on the same origin).  Per input: a private uv loop and client, a fetch to a loopback
 * listener of the target's; the first connection accepted gets the bytes
 * chunk by chunk with the loop run in between, then is closed; any other
 * connection (a redirect's, a retry's) is closed at once.  Checks: each
 * fetch gets exactly one callback; an error has a known code and a
 * message; a result has its body within the limit, header names in lower
 * case and values trimmed, NUL-terminated at their lengths; the client
 * then closes with every handle freed (leaks are LeakSanitizer's).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "net/fetch.h"

#define FUZZ_NAME "fuzz_fetch_h1"
#include "fuzz_check.h"

#define PUMP_LIMIT 20000

static int lfd = -1, lport;
static char url[64];

struct slot { int calls, err; };
static struct slot slots[2];
static int closed;
static size_t max_size;

static void on_done(void *ud, const struct fetch_result *r) {
  struct slot *s = ud;
  s->calls++;
  s->err = r->error;
  CHECK(r->message, "no message");
  CHECK(r->final_url && strncmp(r->final_url, "http", 4) == 0, "final_url %s", r->final_url);
  if (r->error) {
    CHECK(r->error == FETCH_EDOWNLOAD || r->error == FETCH_ETOOLARGE ||
              r->error == FETCH_ETIMEDOUT || r->error == FETCH_ENOMEM ||
              r->error == FETCH_ECANCELLED,
          "error %d", r->error);
    CHECK(r->message[0], "an error without a message");
    CHECK(!r->body && !r->headers, "an error with a response");
    return;
  }
  CHECK(!r->message[0], "ok with message %s", r->message);
  CHECK(r->status >= 200 && r->status <= 999, "status %ld", r->status);
  CHECK(r->body_len <= max_size, "body %zu over %zu", r->body_len, max_size);
  CHECK(!r->truncated || r->body_len == max_size, "truncated at %zu", r->body_len);
  for (size_t i = 0; i < r->nheaders; i++) {
    const struct fetch_header *h = &r->headers[i];
    CHECK(strlen(h->name) == h->name_len && h->name_len > 0, "header %zu name", i);
    CHECK(strlen(h->value) == h->value_len, "header %zu value", i);
    for (size_t k = 0; k < h->name_len; k++)
      CHECK(h->name[k] < 'A' || h->name[k] > 'Z', "header name %s", h->name);
    if (h->value_len) {
      CHECK(h->value[0] != ' ' && h->value[0] != '\t', "value not trimmed: [%s]", h->value);
      char e = h->value[h->value_len - 1];
      CHECK(e != ' ' && e != '\t', "value not trimmed: [%s]", h->value);
    }
  }
}

static void on_closed(void *ud) { closed = 1; }

static void setup(void) {
  signal(SIGPIPE, SIG_IGN);   /* as luahost's main: a closed peer gives EPIPE */
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
    abort();
  lport = ntohs(a.sin_port);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/f?x=1", lport);
}

static int start(struct fetch_client *c, int opts, struct slot *s) {
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url;
  rq.method = opts & 1 ? "HEAD" : "GET";
  rq.follow_redirects = (opts & 2) != 0;
  rq.allow_truncated = (opts & 4) != 0;
  rq.max_response_size = max_size;
  rq.timeout_ms = 1000;
  return fetch_start(c, &rq, on_done, s, NULL);
}

/* Whether every Location in the bytes is a path on the same origin: a
 * followed redirect elsewhere would resolve names or connect out of the
 * machine (and wait for the deadline), which is not this target's job. */
static int locations_stay_home(const uint8_t *d, size_t n) {
  for (size_t i = 0; i + 9 <= n; i++) {
    if (strncasecmp((const char *)d + i, "location:", 9) != 0) continue;
    size_t k = i + 9;
    while (k < n && (d[k] == ' ' || d[k] == '\t')) k++;
    if (k >= n || d[k] != '/' || (k + 1 < n && (d[k + 1] == '/' || d[k + 1] == '\\'))) return 0;
  }
  return 1;
}

/* Closes every connection waiting to be accepted (redirects, retries). */
static void refuse_others(void) {
  int fd;
  while ((fd = accept(lfd, NULL, NULL)) >= 0) close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > 16 * 1024) return 0;
  if (lfd < 0) setup();
  int opts = data[0];
  size_t chunk = (size_t)data[1] + 1;
  data += 2;
  size -= 2;
  if ((opts & 2) && !locations_stay_home(data, size)) return 0;
  max_size = opts & 8 ? 16 : 65536;

  uv_loop_t loop;
  uv_loop_init(&loop);
  struct fetch_client *c = fetch_client_new(&loop);
  CHECK(c, "no client");
  memset(slots, 0, sizeof slots);
  closed = 0;
  CHECK(start(c, opts, &slots[0]) == 0, "start");
  int sfd = -1;
  for (int i = 0; i < PUMP_LIMIT && sfd < 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    sfd = accept(lfd, NULL, NULL);
  }
  CHECK(sfd >= 0, "the client never connected");
  for (size_t off = 0; off < size && !slots[0].calls; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (send(sfd, data + off, n, MSG_NOSIGNAL) < 0) break;   /* the client hung up */
    for (int i = 0; i < 3; i++) uv_run(&loop, UV_RUN_NOWAIT);
    refuse_others();
  }
  int second = (opts & 16) && slots[0].calls;   /* while the connection may be kept */
  if (second) CHECK(start(c, opts, &slots[1]) == 0, "second start");
  close(sfd);
  for (int i = 0; i < PUMP_LIMIT && (!slots[0].calls || (second && !slots[1].calls)); i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    refuse_others();
    usleep(50);
  }
  CHECK(slots[0].calls == 1, "%d callbacks", slots[0].calls);
  CHECK(slots[1].calls == second, "%d callbacks for the second", slots[1].calls);
  fetch_client_close(c, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed, "the client did not close");
  CHECK(uv_loop_close(&loop) == 0, "handles left open");
  refuse_others();
  return 0;
}
