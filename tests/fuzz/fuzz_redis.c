/*
 * fuzz_redis: arbitrary bytes from a "Redis server" into net/redis.
 *
 * Input: byte 0 = commands to send (1 + b % 8, every third one a batch of
 * two, every fourth with a 1 ms timeout, the fifth cancelled), byte 1 =
 * chunk size (b + 1), then the bytes the server sends (its answer to the
 * login PING first).  Per input: a private uv loop, a client on a unix
 * socket whose server end the target accepts, the commands issued before
 * the loop runs, the bytes written chunk by chunk with the loop run in
 * between, then the server end closed.  Checks: every command but the
 * cancelled one gets exactly one callback, with a reply per command on
 * success and an error code otherwise; the client then closes with every
 * handle freed (leaks are LeakSanitizer's).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "net/redis.h"

#define FUZZ_NAME "fuzz_redis"
#include "fuzz_check.h"

#define PUMP_LIMIT 10000

static char sock_path[108];
static int lfd = -1;

struct slot { int calls, err; size_t n, want; int cancelled; };
static struct slot slots[8];
static int closed;

static void on_done(void *ud, struct redis_done *d) {
  struct slot *s = ud;
  s->calls++;
  s->err = d->err;
  s->n = d->n;
  CHECK(!s->cancelled, "a cancelled command got a callback");
  CHECK(d->err < 0 || d->n == s->want, "%zu replies for %zu commands", d->n, s->want);
  CHECK(d->err == 0 || (d->msg && d->msg[0]), "an error without a message");
  for (size_t i = 0; i < d->n; i++) CHECK(d->replies[i], "reply %zu is NULL", i);
}

static void on_closed(void *ud) { closed = 1; }

static void remove_sock(void) { unlink(sock_path); }

static void setup(void) {
  snprintf(sock_path, sizeof sock_path, "/tmp/fuzz_redis.%d.sock", (int)getpid());
  unlink(sock_path);
  lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0) abort();
  atexit(remove_sock);
}

/* Closes whatever reconnect attempts are waiting in the backlog. */
static void drain_backlog(void) {
  int fd;
  while ((fd = accept(lfd, NULL, NULL)) >= 0) close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > 16 * 1024) return 0;
  if (lfd < 0) setup();
  int ncmd = 1 + data[0] % 8;
  size_t chunk = (size_t)data[1] + 1;
  data += 2;
  size -= 2;

  uv_loop_t loop;
  uv_loop_init(&loop);
  struct redis_url u;
  char err[256], url[160];
  snprintf(url, sizeof url, "unix://%s", sock_path);
  CHECK(redis_url_parse(url, &u, err, sizeof err) == 0, "%s", err);
  struct redis_options o = {.connect_timeout_ms = 60000};
  struct redis_client *c = redis_client_new(&loop, &u, &o);
  CHECK(c, "no client");
  memset(slots, 0, sizeof slots);
  closed = 0;
  const char *argv[] = {"GET", "k"};
  for (int i = 0; i < ncmd; i++) {
    struct redis_batch *b = redis_batch_new();
    int two = i % 3 == 2;
    redis_batch_add(b, 2, argv, NULL);
    if (two) redis_batch_add(b, 2, argv, NULL);
    slots[i].want = two ? 2 : 1;
    struct redis_cmd *h = NULL;
    int rc = redis_send(c, b, i % 4 == 3 ? 1 : 0, on_done, &slots[i], &h);
    CHECK(rc == 0, "send: %s", redis_strerror(rc));
    redis_batch_free(b);
    if (i == 4) { slots[i].cancelled = 1; redis_cancel(h); }
  }
  int sfd = -1;
  for (int i = 0; i < PUMP_LIMIT && sfd < 0; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    sfd = accept(lfd, NULL, NULL);
  }
  CHECK(sfd >= 0, "the client never connected");
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (send(sfd, data + off, n, MSG_NOSIGNAL) < 0) break;   /* the client hung up */
    for (int i = 0; i < 3; i++) uv_run(&loop, UV_RUN_NOWAIT);
  }
  close(sfd);
  int pending = 1;
  for (int i = 0; i < PUMP_LIMIT && pending; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    pending = 0;
    for (int j = 0; j < ncmd; j++)
      if (!slots[j].cancelled && slots[j].calls == 0) pending = 1;
    if (pending) usleep(100);
  }
  for (int j = 0; j < ncmd; j++)
    CHECK(slots[j].calls == (slots[j].cancelled ? 0 : 1), "command %d: %d callbacks", j,
          slots[j].calls);
  redis_client_close(c, on_closed, NULL);
  for (int i = 0; i < PUMP_LIMIT && !closed; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(closed, "the client did not close");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "handles left open");
  drain_backlog();
  return 0;
}
