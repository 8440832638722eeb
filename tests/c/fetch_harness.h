/*
 * The harness of the net/fetch tests (test_fetch.c, test_fetch_h1.c):
 * tests/c/fetch_upstream.py started per test on a loopback port (fork/exec;
 * it dies with the test process), one uv loop and fetch client per test on
 * this thread, closed at the end with a check that no uv handle is left,
 * and what a callback saw copied out of its result.  Included once per
 * test program (static functions, as runner.h).
 */
#ifndef LUAHOST_TESTS_FETCH_HARNESS_H
#define LUAHOST_TESTS_FETCH_HARNESS_H

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "net/fetch.h"
#include "runner.h"

static uv_loop_t loop;
static struct fetch_client *client;
static int port;
static char urlbuf[512];

/* ---- the upstream ---- */

static void upstream_start_arg(const char *arg) {
  int p[2];
  if (pipe(p) != 0) FAIL_AT("pipe");
  pid_t pid = fork();
  if (pid < 0) FAIL_AT("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    execlp(PYTHON3, PYTHON3, FETCH_UPSTREAM, arg, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  char line[64];
  size_t n = 0;
  while (n < sizeof line - 1) {   /* one line: "PORT <n>" */
    ssize_t k = read(p[0], line + n, 1);
    if (k <= 0) FAIL_AT("upstream did not start");
    if (line[n++] == '\n') break;
  }
  line[n] = '\0';
  close(p[0]);
  if (sscanf(line, "PORT %d", &port) != 1) FAIL_AT("upstream said: %s", line);
}

static void upstream_start(int tls) { upstream_start_arg(tls ? "--tls" : NULL); }

static const char *url(const char *path) {
  snprintf(urlbuf, sizeof urlbuf, "http://127.0.0.1:%d%s", port, path);
  return urlbuf;
}

/* ---- one loop and client per test ---- */

static int closed_calls;
static void on_closed(void *ud) { closed_calls++; }

static void setup(int tls) {
  upstream_start(tls);
  ASSERT_INT_EQ(uv_loop_init(&loop), 0);
  client = fetch_client_new(&loop);
  ASSERT(client != NULL);
}

static void teardown(void) {
  fetch_client_close(client, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_INT_EQ(closed_calls, 1);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);   /* every handle was closed */
}

/* What a callback saw, copied out of the result. */
struct got {
  int calls;
  int error;
  long status;
  char msg[256];
  char body[1 << 16];
  size_t body_len;
  char headers[4096];   /* "name: value\n" ... */
  char final_url[512];
  size_t nheaders;
  int truncated;
  uint64_t done_ms;
};

static void on_done(void *ud, const struct fetch_result *r) {
  struct got *g = ud;
  g->calls++;
  g->error = r->error;
  g->status = r->status;
  g->done_ms = uv_hrtime() / 1000000;
  snprintf(g->msg, sizeof g->msg, "%s", r->message);
  snprintf(g->final_url, sizeof g->final_url, "%s", r->final_url);
  g->body_len = r->body_len;
  size_t keep = r->body_len < sizeof g->body ? r->body_len : 0;
  if (keep) memcpy(g->body, r->body, keep);
  g->body[keep] = '\0';
  g->truncated = r->truncated;
  size_t at = 0;
  g->headers[0] = '\0';
  for (size_t i = 0; i < r->nheaders; i++) {
    ASSERT_INT_EQ(strlen(r->headers[i].name), r->headers[i].name_len);
    int k = snprintf(g->headers + at, sizeof g->headers - at, "%s: %s\n",
                     r->headers[i].name, r->headers[i].value);
    if (at + (size_t)k < sizeof g->headers) at += (size_t)k;   /* else: kept what fits */
    else g->headers[at] = '\0';
  }
  g->nheaders = r->nheaders;
}

static void wait_for(const int *calls, int n) {
  while (*calls < n) uv_run(&loop, UV_RUN_ONCE);
}

static int start(struct fetch_request *rq, struct got *g) {
  memset(g, 0, sizeof *g);
  return fetch_start(client, rq, on_done, g, NULL);
}

static void fetch_wait(struct fetch_request *rq, struct got *g) {
  ASSERT_INT_EQ(start(rq, g), 0);
  wait_for(&g->calls, 1);
  ASSERT_INT_EQ(g->calls, 1);
}

static void get(const char *path, struct got *g) {
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url(path);
  fetch_wait(&rq, g);
}

static int stat_of(const char *name) {
  struct got g;
  get("/stats", &g);
  ASSERT_INT_EQ(g.error, 0);
  char key[64];
  snprintf(key, sizeof key, "%s=", name);
  const char *p = strstr(g.body, key);
  if (!p) FAIL_AT("no %s in %s", name, g.body);
  return atoi(p + strlen(key));
}

#define ASSERT_HAS(hay, needle)                                              \
  do {                                                                       \
    if (!strstr((hay), (needle))) FAIL_AT("\"%s\" not in \"%s\"", (needle), (hay)); \
  } while (0)

static int never_calls;
static void never(void *ud, const struct fetch_result *r) { never_calls++; }

#endif
