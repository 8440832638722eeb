/*
 * net/fetch's own HTTP/1.1 client (fetch_h1.c), which carries every plain
 * http fetch: connections kept alive and reused, and dropped whenever the
 * peer or the response says so; the retry on a reused connection the peer
 * had closed; the forms a response can take (1xx, HEAD, chunked, HTTP/1.0
 * to EOF); redirects (relative, absolute, method changes, over to https
 * through curl); hostile upstreams; cancel and close; proxies left to curl.
 * The harness: fetch_harness.h.
 */
#include "fetch_harness.h"

/* The client port the upstream saw: which connection carried a fetch. */
static int conn_port(void) {
  struct got g;
  get("/conn", &g);
  if (g.error) FAIL_AT("/conn: %s", g.msg);
  int p = 0;
  if (sscanf(g.body, "PORT %d", &p) != 1) FAIL_AT("/conn said %s", g.body);
  return p;
}

TEST(keep_alive_reuses_one_connection) {
  struct got g;
  setup(0);
  int first = conn_port();
  for (int i = 0; i < 20; i++) {
    get(i % 3 == 0 ? "/chunked" : i % 3 == 1 ? "/status/404" : "/plain", &g);
    if (g.error) FAIL_AT("fetch %d: %s", i, g.msg);
  }
  ASSERT_INT_EQ(conn_port(), first);
  ASSERT_INT_EQ(stat_of("connections"), 1);
  /* HEAD: the length is announced, no body comes, the connection stays */
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.method = "HEAD";
  rq.url = url("/plain");
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_INT_EQ(g.body_len, 0);
  ASSERT_HAS(g.headers, "content-length: 5\n");
  get("/plain", &g);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  ASSERT_INT_EQ(conn_port(), first);
  teardown();
}

TEST(request_on_the_wire) {
  struct got g;
  setup(0);
  struct fetch_header hs[] = {
    {"X-Trim", 6, "  padded\t ", 10},
    {"Content-Length", 14, "999", 3},   /* the client frames the body itself */
    {"X-Blank", 7, "   ", 3},
  };
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/echo?a=1&b=two");
  rq.headers = hs;
  rq.nheaders = 3;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_HAS(g.body, "METHOD GET\nPATH /echo?a=1&b=two\n");
  char host[64];
  snprintf(host, sizeof host, "H host: 127.0.0.1:%d\n", port);
  ASSERT_HAS(g.body, host);
  ASSERT_HAS(g.body, "H accept: */*\n");
  ASSERT_HAS(g.body, "H x-trim: padded\n");
  ASSERT_HAS(g.body, "H x-blank: \n");
  ASSERT(strstr(g.body, "content-length") == NULL);   /* a GET without a body */
  ASSERT_HAS(g.body, "BODY 0\n");
  /* the caller's Host and Accept replace ours; POST without a body says 0 */
  struct fetch_header mine[] = {{"Host", 4, "example.test", 12}, {"Accept", 6, "text/x", 6}};
  rq.headers = mine;
  rq.nheaders = 2;
  rq.method = "POST";
  fetch_wait(&rq, &g);
  ASSERT_HAS(g.body, "H host: example.test\n");
  ASSERT_HAS(g.body, "H accept: text/x\n");
  ASSERT(strstr(g.body, "H accept: */*") == NULL);
  ASSERT(strstr(g.body, "127.0.0.1") == NULL);
  ASSERT_HAS(g.body, "H content-length: 0\n");
  /* a body bigger than a socket takes at once still arrives whole */
  static char big[3 << 20];
  memset(big, 'b', sizeof big);
  rq.headers = NULL;
  rq.nheaders = 0;
  rq.method = "PUT";
  rq.body = big;
  rq.body_len = sizeof big;
  rq.url = url("/echo?nobody=1");
  rq.timeout_ms = 20000;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  char want[64];
  snprintf(want, sizeof want, "BODY %zu\n", sizeof big);
  ASSERT_HAS(g.body, want);
  ASSERT_INT_EQ(stat_of("connections"), 1);
  /* a peer that resets with most of the body unsent: an error */
  rq.url = url("/hangup");
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT(g.msg[0] != '\0');
  teardown();
}

TEST(peer_closing_is_never_reused) {
  struct got g;
  setup(0);
  /* the peer keeps the connection but closes it after the answer: the
   * idle connection sees EOF (or the next request is retried) */
  for (int i = 0; i < 5; i++) {
    get("/bye", &g);
    if (g.error) FAIL_AT("fetch %d: %s", i, g.msg);
    ASSERT_MEM_EQ(g.body, g.body_len, "bye");
  }
  ASSERT(stat_of("connections") >= 5);
  /* Connection: close: the next fetch opens a new connection */
  for (int i = 0; i < 3; i++) {
    int p = conn_port();
    get("/close", &g);   /* on p's connection */
    if (g.error) FAIL_AT("close %d: %s", i, g.msg);
    ASSERT_MEM_EQ(g.body, g.body_len, "closing");
    ASSERT(conn_port() != p);
  }
  /* HTTP/1.0 with no length: the body ends at EOF */
  get("/http10", &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_MEM_EQ(g.body, g.body_len, "old style body");
  ASSERT_HAS(g.headers, "content-type: text/plain\n");
  /* bytes after the response: the answer stands, the connection goes (a
   * later fetch reading the stray "extra" answer would fail /conn) */
  for (int i = 0; i < 2; i++) {
    int p = conn_port();
    get("/extra", &g);   /* on p's connection */
    ASSERT_INT_EQ(g.error, 0);
    ASSERT_MEM_EQ(g.body, g.body_len, "ok");
    ASSERT(conn_port() != p);
  }
  teardown();
}

TEST(retry_once_when_an_idle_connection_was_dropped) {
  struct got g;
  setup(0);
  get("/drop-next", &g);   /* the upstream will drop the next request on it */
  ASSERT_MEM_EQ(g.body, g.body_len, "armed");
  get("/plain", &g);       /* sent on the kept connection, dropped, sent again */
  if (g.error) FAIL_AT("%s", g.msg);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  ASSERT_INT_EQ(stat_of("dropped"), 1);
  ASSERT_INT_EQ(stat_of("connections"), 2);
  /* a POST is sent again too, body and all */
  get("/drop-next", &g);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.method = "POST";
  rq.url = url("/echo");
  rq.body = "payload";
  rq.body_len = 7;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_HAS(g.body, "BODY 7\npayload");
  ASSERT_INT_EQ(stat_of("dropped"), 2);
  /* no answer at all: sent on the kept connection, then once on a new
   * one, which is not retried */
  int before = stat_of("requests");
  get("/empty", &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT_HAS(g.msg, "Empty reply");
  ASSERT_INT_EQ(stat_of("requests"), before + 3);   /* /empty twice, then this */
  teardown();
}

TEST(informational_responses_are_skipped) {
  struct got g;
  setup(0);
  get("/continue", &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_INT_EQ(g.status, 200);
  ASSERT_MEM_EQ(g.body, g.body_len, "ok");
  ASSERT_STR_EQ(g.headers, "content-length: 2\nx-final: yes\n");   /* the final one's only */
  int p = conn_port();
  get("/continue", &g);
  ASSERT_MEM_EQ(g.body, g.body_len, "ok");
  ASSERT_INT_EQ(conn_port(), p);
  teardown();
}

TEST(redirects_relative_absolute_and_methods) {
  struct got g;
  setup(0);
  get("/rel/a/b", &g);   /* Location ../../plain from /rel/a/b: /plain */
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  ASSERT_STR_EQ(g.final_url, url("/plain"));
  char to[128], path[256];
  snprintf(to, sizeof to, "http://localhost:%d/plain", port);   /* absolute, another origin */
  snprintf(path, sizeof path, "/see/302?to=%s", to);
  get(path, &g);
  ASSERT_INT_EQ(g.error, 0);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  ASSERT_STR_EQ(g.final_url, to);

  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.method = "POST";
  rq.body = "a=1";
  rq.body_len = 3;
  static const struct { const char *m; int code; const char *want; } cases[] = {
    {"POST", 301, "METHOD GET\n"}, {"POST", 302, "METHOD GET\n"}, {"POST", 303, "METHOD GET\n"},
    {"PUT", 303, "METHOD GET\n"},  {"PUT", 302, "METHOD PUT\n"},  {"POST", 307, "METHOD POST\n"},
    {"PATCH", 308, "METHOD PATCH\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(path, sizeof path, "/see/%d", cases[i].code);
    rq.url = url(path);
    rq.method = cases[i].m;
    fetch_wait(&rq, &g);
    if (g.error) FAIL_AT("%s %d: %s", cases[i].m, cases[i].code, g.msg);
    ASSERT_HAS(g.body, cases[i].want);
    ASSERT_HAS(g.body, strstr(cases[i].want, "GET") ? "BODY 0\n" : "BODY 3\na=1");
    ASSERT_STR_EQ(g.final_url, url("/echo"));
  }
  /* the caller's Host goes to the first origin only */
  struct fetch_header h = {"Host", 4, "first.test", 10};
  snprintf(to, sizeof to, "http://localhost:%d/echo", port);
  snprintf(path, sizeof path, "/see/307?to=%s", to);
  rq.url = url(path);
  rq.headers = &h;
  rq.nheaders = 1;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  char host[64];
  snprintf(host, sizeof host, "H host: localhost:%d\n", port);
  ASSERT_HAS(g.body, host);
  /* not followed: the redirect is the result, body and all */
  rq.follow_redirects = 0;
  rq.url = url("/see/303");
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.status, 303);
  ASSERT_MEM_EQ(g.body, g.body_len, "see other");
  ASSERT_HAS(g.headers, "location: /echo\n");
  /* max_redirects counts */
  rq.follow_redirects = 1;
  rq.max_redirects = 2;
  rq.url = url("/redirect/3");
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT_HAS(g.msg, "edirect");
  rq.url = url("/redirect/2");
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, 0);
  teardown();
}

TEST(redirect_to_https_goes_on_through_curl) {
  struct got g;
  upstream_start(1);
  int tls_port = port;
  setup(0);
  char path[256];
  snprintf(path, sizeof path, "/see/307?to=https://127.0.0.1:%d/tls", tls_port);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.method = "POST";
  rq.body = "xyz";
  rq.body_len = 3;
  rq.url = url(path);
  rq.validate_certificate = 0;
  fetch_wait(&rq, &g);
  if (g.error) FAIL_AT("%s", g.msg);
  ASSERT_MEM_EQ(g.body, g.body_len, "PROTO h2\nPATH /tls\nBODY 3\nxyz");
  char want[64];
  snprintf(want, sizeof want, "https://127.0.0.1:%d/tls", tls_port);
  ASSERT_STR_EQ(g.final_url, want);
  rq.validate_certificate = 1;   /* curl checks the certificate there */
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ESSLCERT);
  teardown();
}

TEST(hostile_upstreams) {
  struct got g;
  setup(0);
  static const struct { const char *path; const char *msg; } cases[] = {
    {"/reset", ""},   /* "reset by peer", or "transfer closed" when the FIN came first */
    {"/cut", "transfer closed"},
    {"/chunked-cut", "transfer closed"},
    {"/badstatus", "invalid HTTP response"},
    {"/shortstatus", "invalid HTTP response"},
    {"/garbage", "invalid HTTP response"},
    {"/bigheaders?n=70", "larger than 65536"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    get(cases[i].path, &g);
    if (g.error != FETCH_EDOWNLOAD) FAIL_AT("%s: %d %s", cases[i].path, g.error, g.msg);
    ASSERT_HAS(g.msg, cases[i].msg);
    ASSERT_INT_EQ(g.body_len, 0);
    get("/plain", &g);   /* the client goes on */
    ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  }
  get("/bigheaders?n=60", &g);   /* under the limit */
  ASSERT_INT_EQ(g.error, 0);
  /* messages that read like curl's */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);   /* bound, not listening */
  ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(a.sin_port));
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = u;
  fetch_wait(&rq, &g);
  close(fd);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT_HAS(g.msg, "Failed to connect to 127.0.0.1 port");
  rq.url = "http://nonexistent.invalid/";
  rq.timeout_ms = 15000;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_EDOWNLOAD);
  ASSERT_STR_EQ(g.msg, "Could not resolve host: nonexistent.invalid");
  teardown();
}

/* Cancel while the body trickles in: the connection is closed (the
 * upstream sees it), nothing is called back, the client goes on. */
static void on_tick(uv_timer_t *t) { *(int *)t->data = 1; }

TEST(cancel_mid_transfer) {
  struct got g, slow;
  setup(0);
  int p = conn_port();
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/trickle?n=100");
  struct fetch *f;
  memset(&slow, 0, sizeof slow);
  ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &slow, &f), 0);
  uv_timer_t t;
  int ticked = 0;
  uv_timer_init(&loop, &t);
  t.data = &ticked;
  uv_timer_start(&t, on_tick, 350, 0);
  while (!ticked) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  ASSERT_INT_EQ(fetch_client_active(client), 1);
  fetch_cancel(f);
  ASSERT_INT_EQ(fetch_client_active(client), 0);
  ASSERT(conn_port() != p);   /* the cancelled fetch's connection was closed */
  get("/plain", &g);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  ASSERT_INT_EQ(stat_of("connections"), 2);
  teardown();
  ASSERT_INT_EQ(slow.calls, 0);
}

/* Close with fetches at every stage: resolving, connecting, waiting for
 * the answer, and idle connections: each fetch is called back once,
 * cancelled, synchronously; the loop ends with nothing left. */
TEST(close_with_fetches_at_every_stage) {
  static struct got gs[4];
  setup(0);
  get("/plain", &gs[0]);   /* leaves an idle connection */
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/slow?ms=3000");
  memset(gs, 0, sizeof gs);
  ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &gs[0], NULL), 0);   /* reuses it */
  ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &gs[1], NULL), 0);   /* connects */
  char u[64];
  snprintf(u, sizeof u, "http://localhost:%d/slow?ms=3000", port);
  rq.url = u;
  ASSERT_INT_EQ(fetch_start(client, &rq, on_done, &gs[2], NULL), 0);   /* resolves */
  for (int i = 0; i < 3; i++) uv_run(&loop, UV_RUN_NOWAIT);
  fetch_client_close(client, on_closed, NULL);
  for (int i = 0; i < 3; i++) {
    ASSERT_INT_EQ(gs[i].calls, 1);
    ASSERT_INT_EQ(gs[i].error, FETCH_ECANCELLED);
  }
  rq.url = url("/plain");
  ASSERT_INT_EQ(fetch_start(client, &rq, never, NULL, NULL), FETCH_ECLOSED);
  uint64_t t0 = uv_hrtime();
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT((uv_hrtime() - t0) / 1000000 < 2500);
  ASSERT_INT_EQ(closed_calls, 1);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);
  ASSERT_INT_EQ(never_calls, 0);
}

/* The deadline covers the whole fetch, redirects included. */
TEST(timeout_covers_redirects) {
  struct got g;
  setup(0);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = url("/see/302?to=/slow%3Fms%3D5000");
  rq.timeout_ms = 500;
  uint64_t t0 = uv_hrtime() / 1000000;
  fetch_wait(&rq, &g);
  ASSERT_INT_EQ(g.error, FETCH_ETIMEDOUT);
  ASSERT_HAS(g.msg, "timed out");
  uint64_t took = g.done_ms - t0;
  if (took + 5 < 500 || took > 500 + 2500) FAIL_AT("took %llu ms", (unsigned long long)took);
  get("/plain", &g);
  ASSERT_MEM_EQ(g.body, g.body_len, "hello");
  teardown();
}

/* An IPv6 literal: connected to at once, bracketed in Host, and kept. */
TEST(ipv6_literal) {
  struct got g;
  upstream_start_arg("--v6");
  ASSERT_INT_EQ(uv_loop_init(&loop), 0);
  client = fetch_client_new(&loop);
  ASSERT(client != NULL);
  char u[64], host[64];
  snprintf(u, sizeof u, "http://[::1]:%d/echo", port);
  snprintf(host, sizeof host, "H host: [::1]:%d\n", port);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = u;
  for (int i = 0; i < 3; i++) {
    fetch_wait(&rq, &g);
    if (g.error) FAIL_AT("%s", g.msg);
    ASSERT_HAS(g.body, host);
    ASSERT_STR_EQ(g.final_url, u);
  }
  snprintf(u, sizeof u, "http://[::1]:%d/stats", port);
  fetch_wait(&rq, &g);
  ASSERT_HAS(g.body, "connections=1 ");
  teardown();
}

/* Credentials in the URL are curl's to send (Basic authentication), also
 * when a redirect brings them. */
TEST(credentials_in_the_url_go_through_curl) {
  struct got g;
  setup(0);
  char u[128], path[160];
  snprintf(u, sizeof u, "http://user:pw@127.0.0.1:%d/echo", port);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = u;
  fetch_wait(&rq, &g);
  if (g.error) FAIL_AT("%s", g.msg);
  ASSERT_HAS(g.body, "H authorization: Basic dXNlcjpwdw==\n");
  snprintf(path, sizeof path, "/see/302?to=%s", u);
  get(path, &g);
  if (g.error) FAIL_AT("%s", g.msg);
  ASSERT_HAS(g.body, "H authorization: Basic dXNlcjpwdw==\n");
  teardown();
}

/* With a proxy in the environment (read when the client is made), plain
 * http goes through curl, which sends it to the proxy: the upstream acts
 * as one and sees the absolute URL. */
TEST(proxy_in_the_environment_goes_through_curl) {
  struct got g;
  upstream_start(0);
  char proxy[64];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
  setenv("http_proxy", proxy, 1);
  ASSERT_INT_EQ(uv_loop_init(&loop), 0);
  client = fetch_client_new(&loop);
  ASSERT(client != NULL);
  struct fetch_request rq;
  fetch_request_init(&rq);
  rq.url = "http://proxied.invalid/echo";
  fetch_wait(&rq, &g);   /* curl reads the variable for each transfer */
  unsetenv("http_proxy");
  if (g.error) FAIL_AT("%s", g.msg);
  ASSERT_HAS(g.body, "PATH http://proxied.invalid/echo\n");
  teardown();
}

TEST_LIST(T(keep_alive_reuses_one_connection), T(request_on_the_wire),
          T(peer_closing_is_never_reused), T(retry_once_when_an_idle_connection_was_dropped),
          T(informational_responses_are_skipped), T(redirects_relative_absolute_and_methods),
          T(redirect_to_https_goes_on_through_curl), T(hostile_upstreams), T(cancel_mid_transfer),
          T(close_with_fetches_at_every_stage), T(timeout_covers_redirects),
          T(ipv6_literal), T(credentials_in_the_url_go_through_curl),
          T(proxy_in_the_environment_goes_through_curl));
