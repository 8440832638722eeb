/*
 * net/fetch against a real upstream (the harness: fetch_harness.h): the
 * contract, whichever path carries a fetch (plain http: our HTTP/1.1
 * client; https: curl).  What is particular to the HTTP/1.1 client is in
 * test_fetch_h1.c.
 */
#include "fetch_harness.h"

/* ---- tests ---- */

TEST(get_plain) {
  struct got g;
  setup(0);
  get("/plain", &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_STR_EQ(g.msg, "");
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  ASSERT_STR_EQ(g.final_url, url("/plain"));
  /* lower-case names, order kept, repeats kept, folded value joined */
  ASSERT_HAS(g.headers, "content-type: text/plain\nx-multi: a\nx-multi: b\n"
                        "set-cookie: c1=1\nset-cookie: c2=2\nx-folded: first second\n"
                        "x-empty-fold: value\nx-mixed-case: KeEp\ncontent-length: 5\n");
  ASSERT_INT_EQ(g.truncated, 0);
  ASSERT_INT_EQ(fetch_client_active(client), 0);
  /* by name, through curl's resolver (and, where localhost is also ::1,
   * a refused first address: the upstream is on 127.0.0.1 only) */
  char u[64];
  snprintf(u, sizeof u, "http://localhost:%d/plain", port);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = u;
  fetch_wait(&rq, &g);
  if (g.error) FAIL_AT("%s", g.msg);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  teardown();
}

TEST(post_body_and_headers) {
  struct got g;
  setup(0);
  static const char body[] = "a=1\0b=2";   /* bytes, a NUL included */
  struct fetch_header hs[] = {
    {"X-Custom", 8, "v1", 2},
    {"Content-Type", 12, "application/json", 16},
    {"X-Empty", 7, "", 0},
  };
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.method = "POST";
  rq.url = url("/echo");
  rq.headers = hs;
  rq.nheaders = 3;
  char copy[sizeof body];
  memcpy(copy, body, sizeof body);
  rq.body = copy;
  rq.body_len = sizeof body - 1;
  ASSERT_INT_EQ(start(&rq, &g), 0);
  memset(copy, 'X', sizeof copy);   /* fetch_start copied the body */
  wait_for(&g.calls, 1);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_HAS(g.body, "METHOD POST\n");
  ASSERT_HAS(g.body, "H x-custom: v1\n");
  ASSERT_HAS(g.body, "H content-type: application/json\n");
  ASSERT_HAS(g.body, "H x-empty: \n");
  ASSERT_HAS(g.body, "BODY 7\n");
  ASSERT(strstr(g.body, "H expect:") == NULL);
  const char *b = strstr(g.body, "BODY 7\n") + 7;
  ASSERT(memcmp(b, body, 7) == 0);
  ASSERT_INT_EQ(g.body_len, (size_t)(b - g.body) + 7);

  /* other methods, with and without a body */
  rq.method = "PUT";
  rq.nheaders = 0;
  rq.body = "xyz";
  rq.body_len = 3;
  fetch_wait(&rq, &g);
  ASSERT_HAS(g.body, "METHOD PUT\n");
  ASSERT_HAS(g.body, "BODY 3\nxyz");
  rq.method = "DELETE";
  rq.body = NULL;
  rq.body_len = 0;
  fetch_wait(&rq, &g);
  ASSERT_HAS(g.body, "METHOD DELETE\n");
  ASSERT_HAS(g.body, "BODY 0\n");
  rq.method = "HEAD";
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_INT_EQ(g.body_len, 0);
  teardown();
}

TEST(status_is_a_result) {
  struct got g;
  setup(0);
  get("/status/404", &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 404);
  ASSERT_MEM_EQ(g.body, g.body_len, "status 404");
  get("/status/500", &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 500);
  ASSERT_MEM_EQ(g.body, g.body_len, "status 500");
  get("/chunked", &g);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_MEM_EQ(g.body, g.body_len, "one-two-three");
  teardown();
}

TEST(redirects) {
  struct got g;
  setup(0);
  get("/redirect/5", &g);   /* five redirects: allowed */
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_MEM_EQ(g.body, g.body_len, "done");
  ASSERT_STR_EQ(g.final_url, url("/redirect/0"));
  ASSERT_HAS(g.headers, "x-final: yes\n");
  ASSERT(strstr(g.headers, "x-hop") == NULL);   /* the final response's headers only */
  ASSERT(strstr(g.headers, "location") == NULL);

  get("/redirect/6", &g);   /* the sixth is refused */
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT_HAS(g.msg, "edirect");

  get("/redirect-file", &g);   /* never leaves http(s) */
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);

  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/redirect/2");
  rq.follow_redirects = 0;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 302);
  ASSERT_HAS(g.headers, "location: /redirect/1\n");
  ASSERT_HAS(g.headers, "x-hop: 2\n");
  ASSERT_MEM_EQ(g.body, g.body_len, "redirect body");
  teardown();
}

TEST(refused_at_start) {
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  static const char *bad[] = {
    "file:///etc/passwd", "gopher://127.0.0.1/", "ftp://127.0.0.1/", "http://", "not a url",
    "://x", "", "http://exa mple.com/", "http://a\r\nb/", "javascript:alert(1)", "127.0.0.1/x",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    rq.url = bad[i];
    struct fetch *f = (struct fetch *)1;
    int rc = fetch_start(client, &rq, never, NULL, &f);
    if (rc != FETCH_EINVAL_URL) FAIL_AT("%s: %d (%s)", bad[i], rc, fetch_strerror(rc));
    ASSERT(f == NULL);
  }
  rq.url = NULL;
  ASSERT_INT_EQ(fetch_start(client, &rq, never, NULL, NULL), FETCH_EINVAL_URL);
  rq.url = "HTTP://127.0.0.1:1/";   /* schemes are case-insensitive */
  ASSERT_INT_EQ(fetch_start(client, &rq, never, NULL, NULL), 0);

  /* headers: CR, LF, NUL in values; names that are not tokens */
  rq.url = url("/echo");
  struct fetch_header bad_h[] = {
    {"X-A", 3, "v\r\nX-Injected: 1", 17}, {"X-A", 3, "v\n", 2}, {"X-A", 3, "a\0b", 3},
    {"X-A", 3, "\r", 1},  {"X A", 3, "v", 1}, {"X:A", 3, "v", 1}, {"", 0, "v", 1},
    {"X\r\nB", 4, "v", 1}, {"X\0", 2, "v", 1}, {NULL, 0, "v", 1},
  };
  for (size_t i = 0; i < sizeof bad_h / sizeof *bad_h; i++) {
    struct fetch_header two[2] = {{"X-Ok", 4, "fine", 4}, bad_h[i]};
    rq.headers = two;
    rq.nheaders = 2;
    int rc = fetch_start(client, &rq, never, NULL, NULL);
    if (rc != FETCH_EINVAL_HEADER) FAIL_AT("header %zu: %d", i, rc);
  }
  rq.headers = NULL;
  rq.nheaders = 0;
  rq.method = "GE T";
  ASSERT_INT_EQ(fetch_start(client, &rq, never, NULL, NULL), FETCH_EINVAL);
  rq.method = "";
  ASSERT_INT_EQ(fetch_start(client, &rq, never, NULL, NULL), FETCH_EINVAL);
  ASSERT_INT_EQ(fetch_client_active(client), 1);   /* only the HTTP:// one */
  ASSERT_STR_EQ(fetch_strerror(FETCH_EINVAL_HEADER), "invalid header");
  teardown();
  ASSERT_INT_EQ(never_calls, 1);   /* the HTTP:// one, cancelled at close */
}

/* Counts what the fetch allocates; refuses past `limit`. */
struct counter { size_t now, peak, limit; int refused; };

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct counter *c = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    c->now -= old;
    free(ptr);
    return NULL;
  }
  if (c->limit && c->now - old + nsize > c->limit) {
    c->refused++;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  c->now = c->now - old + nsize;
  if (c->now > c->peak) c->peak = c->now;
  return p;
}

#define HUGE_SIZE (64 << 20)

/* Waits until the upstream has ended its last /huge answer; what it sent. */
static int huge_sent_when_done(void) {
  while (!stat_of("huge_done")) {
    uv_sleep(20);   /* polling the upstream's own progress, bounded by the runner */
  }
  return stat_of("huge_sent");
}

TEST(too_large_while_streaming) {
  struct got g;
  struct counter cnt = {0};
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  char path[64];
  snprintf(path, sizeof path, "/huge?size=%d&cl=0", HUGE_SIZE);   /* chunked: no length */
  rq.url = url(path);
  rq.max_response_size = 1 << 20;
  rq.alloc = count_alloc;
  rq.alloc_ud = &cnt;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ETOOLARGE);
  ASSERT_HAS(g.msg, "larger than 1048576");
  if (cnt.peak > (1u << 20) + 4096) FAIL_AT("peak %zu", cnt.peak);   /* never past the limit */
  ASSERT_INT_EQ(cnt.now, 0);
  int sent = huge_sent_when_done();
  if (sent >= HUGE_SIZE / 2) FAIL_AT("upstream sent %d of %d bytes", sent, HUGE_SIZE);
  teardown();
}

TEST(too_large_by_content_length) {
  struct got g;
  struct counter cnt = {0};
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  char path[64];
  snprintf(path, sizeof path, "/huge?size=%d&cl=1", HUGE_SIZE);
  rq.url = url(path);
  rq.max_response_size = 1 << 20;
  rq.alloc = count_alloc;
  rq.alloc_ud = &cnt;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ETOOLARGE);
  ASSERT(cnt.peak < 64 * 1024);   /* refused from the header: no body kept */
  ASSERT_INT_EQ(cnt.now, 0);
  int sent = huge_sent_when_done();
  if (sent >= HUGE_SIZE / 2) FAIL_AT("upstream sent %d of %d bytes", sent, HUGE_SIZE);
  /* exactly at the limit is fine, one byte under is not */
  rq.url = url("/plain");
  rq.alloc = NULL;
  rq.max_response_size = 5;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  rq.max_response_size = 4;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ETOOLARGE);
  rq.url = url("/chunked");   /* 13 bytes, no length: refused as it streams */
  rq.max_response_size = 12;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ETOOLARGE);
  teardown();
}

TEST(allow_truncated) {
  struct got g;
  setup(0);
  for (int cl = 0; cl <= 1; cl++) {
    struct fetch_request rq;
    fetch_request_init(&rq);
    char path[64];
    snprintf(path, sizeof path, "/huge?size=%d&cl=%d", 4 << 20, cl);
    rq.url = url(path);
    rq.max_response_size = 50000;
    rq.allow_truncated = 1;
    fetch_wait(&rq, &g);
    ASSERT_INT_EQ(g.error, 0);
    ASSERT_INT_EQ(g.status, 200);
    ASSERT_INT_EQ(g.truncated, 1);
    ASSERT_INT_EQ(g.body_len, 50000);
    for (size_t i = 0; i < 50000; i++)
      if (g.body[i] != 'h') FAIL_AT("body[%zu] = %d", i, g.body[i]);
  }
  struct fetch_request rq;   /* under the limit: not truncated */
  fetch_request_init(&rq);
  rq.url = url("/chunked");
  rq.max_response_size = 13;
  rq.allow_truncated = 1;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.truncated, 0);
  ASSERT_MEM_EQ(g.body, g.body_len, "one-two-three");
  rq.max_response_size = 7;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.truncated, 1);
  ASSERT_MEM_EQ(g.body, g.body_len, "one-two");
  teardown();
}

TEST(reset_and_refused) {
  struct got g;
  setup(0);
  get("/reset", &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  get("/plain", &g);   /* the client goes on */
  ASSERT_INT_EQ(g.status, 200);
  /* a port nobody listens on */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  close(fd);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(a.sin_port));
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = u;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  teardown();
}

TEST(hostile_responses) {
  struct got g;
  struct counter cnt = {0};
  setup(0);
  get("/garbage", &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/bigheaders?n=2000");   /* 2 MB of headers: curl draws the line */
  rq.alloc = count_alloc;
  rq.alloc_ud = &cnt;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT_INT_EQ(cnt.now, 0);
  rq.url = url("/bigheaders?n=50");     /* 50 kB is fine, and all there */
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.nheaders, 50 + 3);   /* server, date, content-length too */
  ASSERT_MEM_EQ(g.body, g.body_len, "ok");
  ASSERT_INT_EQ(cnt.now, 0);
  get("/plain", &g);
  ASSERT_INT_EQ(g.status, 200);
  teardown();
}

TEST(dns_failure) {
  struct got g;
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = "http://nonexistent.invalid/";
  rq.timeout_ms = 15000;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT(g.msg[0] != '\0');
  /* abandoned while the name is being resolved, then closed with one
   * resolving: neither waits for the resolver */
  struct fetch *f;
  ASSERT_INT_EQ(fetch_start(client, &rq, never, NULL, &f), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  fetch_cancel(f);
  rq.url = "http://also-nonexistent.invalid/";
  ASSERT_INT_EQ(start(&rq, &g), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  fetch_client_close(client, on_closed, NULL);
  ASSERT_INT_EQ(g.error, FETCH_ECANCELLED);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_INT_EQ(closed_calls, 1);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);
  ASSERT_INT_EQ(never_calls, 0);
}

static void timeout_case(const char *path, long ms) {
  struct got g;
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url(path);
  rq.timeout_ms = ms;
  uint64_t t0 = uv_hrtime() / 1000000;
  fetch_wait(&rq, &g);
  uint64_t took = g.done_ms - t0;
  ASSERT_INT_EQ(g.error, FETCH_ETIMEDOUT);
  if (took + 5 < (uint64_t)ms || took > (uint64_t)ms + 2500)
    FAIL_AT("%s: timed out after %llu ms, deadline %ld", path, (unsigned long long)took, ms);
}

TEST(timeouts) {
  setup(0);
  timeout_case("/slow?ms=10000", 400);   /* nothing comes */
  timeout_case("/trickle?n=200", 600);   /* a byte every 100 ms is not enough */
  teardown();
}

static const char *tls_url(const char *path) {
  snprintf(urlbuf, sizeof urlbuf, "https://127.0.0.1:%d%s", port, path);
  return urlbuf;
}

TEST(tls_self_signed) {
  struct got g;
  setup(1);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = tls_url("/plain");
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ESSLCERT);
  ASSERT(g.msg[0] != '\0');
  rq.validate_certificate = 0;
  rq.method = "POST";
  rq.body = "abc";
  rq.body_len = 3;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  /* HTTP/2, offered by the upstream, was used */
  ASSERT_MEM_EQ(g.body, g.body_len, "PROTO h2\nPATH /plain\nBODY 3\nabc");
  ASSERT_HAS(g.headers, "x-proto: h2\n");
  ASSERT_HAS(g.headers, "content-length: 31\n");
  teardown();
}

#define NH2 20
static struct got h2s[NH2];
static int h2_calls;
static void on_h2(void *ud, const struct fetch_result *r) {
  on_done(ud, r);
  h2_calls++;
}

TEST(http2_multiplexed) {
  setup(1);
  for (int i = 0; i < NH2; i++) {
    struct fetch_request rq;
    char path[32];
    fetch_request_init(&rq);
    snprintf(path, sizeof path, "/m?i=%d", i);
    rq.url = tls_url(path);
    rq.validate_certificate = 0;
    ASSERT_INT_EQ(fetch_start(client, &rq, on_h2, &h2s[i], NULL), 0);
  }
  wait_for(&h2_calls, NH2);
  for (int i = 0; i < NH2; i++) {
    char want[64];
    if (h2s[i].error) FAIL_AT("fetch %d: %s", i, h2s[i].msg);
    snprintf(want, sizeof want, "PROTO h2\nPATH /m?i=%d\n", i);
    ASSERT_HAS(h2s[i].body, want);
  }
  struct got g;
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = tls_url("/stats");
  rq.validate_certificate = 0;
  fetch_wait(&rq, &g);
  ASSERT_HAS(g.body, "connections=1 requests=21 ");   /* all on one connection */
  teardown();
}

TEST(connection_reuse) {
  struct got g;
  setup(0);
  for (int i = 0; i < 10; i++) {
    get(i % 2 ? "/plain" : "/status/404", &g);
    ASSERT_INT_EQ(g.error, 0);
  }
  ASSERT_INT_EQ(stat_of("requests"), 11);   /* the stats request is the 11th */
  ASSERT_INT_EQ(stat_of("connections"), 1);
  teardown();
}

TEST(connection_close_each_time) {
  /* the upstream closes after each answer: curl closes each socket and the
   * next connect gets the same descriptor number back in the same loop */
  struct got g;
  setup(0);
  struct fetch_header close_h = {"Connection", 10, "close", 5};
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/plain");
  rq.headers = &close_h;
  rq.nheaders = 1;
  for (int i = 0; i < 30; i++) {
    fetch_wait(&rq, &g);
    if (g.status != 200) FAIL_AT("fetch %d: %d %s", i, g.error, g.msg);
  }
  ASSERT(stat_of("connections") >= 30);
  teardown();
}

#define NCONC 100
static struct got many[NCONC];
static int many_calls;

static void on_many(void *ud, const struct fetch_result *r) {
  on_done(ud, r);
  many_calls++;
}

TEST(concurrent_100) {
  setup(0);
  for (int i = 0; i < NCONC; i++) {
    struct fetch_request rq;
    char path[64];
    fetch_request_init(&rq);
    snprintf(path, sizeof path, "/echo?i=%d", i);
    rq.url = url(path);
    rq.timeout_ms = 15000;
    ASSERT_INT_EQ(fetch_start(client, &rq, on_many, &many[i], NULL), 0);
  }
  ASSERT_INT_EQ(fetch_client_active(client), NCONC);
  wait_for(&many_calls, NCONC);
  for (int i = 0; i < NCONC; i++) {
    char want[64];
    ASSERT_INT_EQ(many[i].calls, 1);
    if (many[i].error) FAIL_AT("fetch %d: %s", i, many[i].msg);
    snprintf(want, sizeof want, "PATH /echo?i=%d\n", i);
    ASSERT_HAS(many[i].body, want);
  }
  ASSERT_INT_EQ(fetch_client_active(client), 0);
  teardown();
}

/* Cancel: once at once, once from another fetch's callback (the slow one
 * is then mid-flight: connected, request sent). */
static struct fetch *victim;
static void cancel_victim(void *ud, const struct fetch_result *r) {
  on_done(ud, r);
  fetch_cancel(victim);
}

TEST(cancel_in_flight) {
  struct got g, slow;
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/slow?ms=3000");
  memset(&slow, 0, sizeof slow);
  ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &slow, &victim), 0);
  fetch_cancel(victim);   /* before any I/O */
  ASSERT_INT_EQ(fetch_client_active(client), 0);

  ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &slow, &victim), 0);
  rq.url = url("/slow?ms=200");
  memset(&g, 0, sizeof g);
  ASSERT_INT_EQ(fetch_start(client, &rq, cancel_victim, &g, NULL), 0);
  uint64_t t0 = uv_hrtime();
  wait_for(&g.calls, 1);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_INT_EQ(fetch_client_active(client), 0);
  get("/plain", &g);   /* the client goes on */
  ASSERT_INT_EQ(g.status, 200);
  teardown();
  ASSERT_INT_EQ(slow.calls, 0);   /* never called back */
  ASSERT((uv_hrtime() - t0) / 1000000 < 2500);   /* nobody waited for the slow one */
}

/* Close with fetches in flight, from a callback: each gets one cancelled
 * callback, at once. */
#define NSLOW 5
static struct got slows[NSLOW];
static int start_after_close_rc;

static void close_from_callback(void *ud, const struct fetch_result *r) {
  on_done(ud, r);
  fetch_client_close(client, on_closed, NULL);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/plain");
  start_after_close_rc = fetch_start(client, &rq, never, NULL, NULL);
}

TEST(close_with_fetches_in_flight) {
  struct got g;
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/slow?ms=5000");
  for (int i = 0; i < NSLOW; i++)
    ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &slows[i], NULL), 0);
  rq.url = url("/plain");
  memset(&g, 0, sizeof g);
  ASSERT_INT_EQ(fetch_start(client, &rq, close_from_callback, &g, NULL), 0);
  uint64_t t0 = uv_hrtime();
  uv_run(&loop, UV_RUN_DEFAULT);   /* ends once the client's handles are closed */
  ASSERT((uv_hrtime() - t0) / 1000000 < 2500);
  ASSERT_INT_EQ(g.calls, 1);
  ASSERT_INT_EQ(g.status, 200);
  for (int i = 0; i < NSLOW; i++) {
    ASSERT_INT_EQ(slows[i].calls, 1);
    ASSERT_INT_EQ(slows[i].error, FETCH_ECANCELLED);
  }
  ASSERT_INT_EQ(start_after_close_rc, FETCH_ECLOSED);
  ASSERT_INT_EQ(closed_calls, 1);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);
  ASSERT_INT_EQ(never_calls, 0);
}

TEST(close_right_after_start) {
  struct got g;
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/plain");
  ASSERT_INT_EQ(start(&rq, &g), 0);
  fetch_client_close(client, on_closed, NULL);
  ASSERT_INT_EQ(g.calls, 1);   /* synchronously, from close */
  ASSERT_INT_EQ(g.error, FETCH_ECANCELLED);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_INT_EQ(closed_calls, 1);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);
}

TEST(allocator_charged_and_refused) {
  struct got g;
  struct counter cnt = {0};
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/huge?size=200000&cl=1");
  rq.alloc = count_alloc;
  rq.alloc_ud = &cnt;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.body_len, 200000);
  ASSERT(cnt.peak >= 200000);   /* the body was charged */
  if (cnt.peak > 200000 + 4096) FAIL_AT("peak %zu", cnt.peak);   /* sized from the length */
  ASSERT_INT_EQ(cnt.now, 0);    /* and given back after the callback */
  cnt.limit = 100000;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ENOMEM);
  ASSERT(cnt.refused > 0);
  ASSERT_INT_EQ(cnt.now, 0);
  cnt.limit = 0;
  rq.url = url("/huge?size=200000&cl=0");   /* grown as it streams */
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.body_len, 200000);
  ASSERT_INT_EQ(cnt.now, 0);
  teardown();
}

/* Starting fetches from callbacks: a chain of five. */
static int chain_left;
static struct got chain_g;
static void chain_next(void *ud, const struct fetch_result *r) {
  on_done(ud, r);
  ASSERT_INT_EQ(r->status, 200);
  if (--chain_left > 0) {
    struct fetch_request rq;
    fetch_request_init(&rq);
    rq.url = url("/plain");
    ASSERT_INT_EQ(fetch_start(client, &rq, chain_next, &chain_g, NULL), 0);
  }
}

TEST(start_from_callback) {
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/plain");
  chain_left = 5;
  ASSERT_INT_EQ(fetch_start(client, &rq, chain_next, &chain_g, NULL), 0);
  wait_for(&chain_g.calls, 5);
  ASSERT_INT_EQ(chain_left, 0);
  ASSERT_INT_EQ(stat_of("connections"), 1);
  teardown();
}

TEST_LIST(T(get_plain), T(post_body_and_headers), T(status_is_a_result), T(redirects),
          T(refused_at_start), T(too_large_while_streaming), T(too_large_by_content_length),
          T(allow_truncated), T(reset_and_refused), T(hostile_responses), T(dns_failure), T(timeouts),
          T(tls_self_signed), T(http2_multiplexed), T(connection_reuse),
          T(connection_close_each_time), T(concurrent_100), T(cancel_in_flight),
          T(close_with_fetches_in_flight), T(close_right_after_start),
          T(allocator_charged_and_refused), T(start_from_callback));
