/*
 * http layer without Lua: a loop thread serves a test dispatcher that
 * echoes the request; the test talks to it over loopback sockets.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "http/http.h"
#include "http/listener.h"
#include "runner.h"

static uv_loop_t loop;
static struct http_server srv;
static struct listener_poll lp;
static int port;

/* Echo: "<method> <path> q=<query> h=<n> x=<x-test> body=<body>"; "/slow"
 * answers from a timer, later. */
static struct http_conn *slow_conn;
static uv_timer_t slow_timer;

static void on_slow(uv_timer_t *t) { http_respond(slow_conn, 200, NULL, 0, "slow", 4); }

static void dispatch(void *ud, struct http_conn *c, const struct http_request *r) {
  char out[8192];
  const char *x = "";
  size_t xl = 0;
  for (int i = 0; i < r->nheaders; i++)
    if (r->headers[i].name_len == 6 && !memcmp(r->headers[i].name, "x-test", 6)) {
      x = r->headers[i].value;
      xl = r->headers[i].value_len;
    }
  if (r->path_len == 5 && !memcmp(r->path, "/slow", 5)) {
    slow_conn = c;
    uv_timer_start(&slow_timer, on_slow, 100, 0);
    return;
  }
  int n = snprintf(out, sizeof out, "%s %.*s q=%.*s h=%d x=%.*s body=%.*s", r->method,
                   (int)r->path_len, r->path, (int)r->query_len, r->query, r->nheaders,
                   (int)xl, x, (int)r->body_len, r->body);
  http_respond(c, 200, NULL, 0, out, (size_t)n);
}

static void accept_here(void *ud, int fd) { http_conn_open(ud, fd); }

static void serve(void *arg) { uv_run(&loop, UV_RUN_DEFAULT); }

static void start(size_t max_body) {
  char err[256];
  uv_thread_t th;
  int fd = listener_open("127.0.0.1", 0, &port, err, sizeof err);
  if (fd < 0) FAIL_AT("%s", err);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &slow_timer);
  struct http_limits lim = {max_body, 1000, 1000, 1000, 0};
  http_server_init(&srv, &loop, &lim, dispatch, NULL);
  ASSERT_INT_EQ(listener_start(&lp, &loop, fd, accept_here, &srv), 0);
  ASSERT_INT_EQ(uv_thread_create(&th, serve, NULL), 0);
}

static int client(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) FAIL_AT("connect");
  return fd;
}

static void sendall(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t k = write(fd, s, n);
    if (k <= 0) FAIL_AT("write");
    s += k; n -= (size_t)k;
  }
}

/* Reads until `want` responses arrived (counted by "HTTP/1.1 " at the start
 * of a response), the peer closes, or 3 s pass.  Returns a static buffer. */
static char *read_all(int fd, int want_close) {
  static char buf[1 << 20];
  size_t n = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, want_close ? 3000 : 300) <= 0) break;
    ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
    if (k <= 0) break;
    n += (size_t)k;
  }
  buf[n] = '\0';
  return buf;
}

static int count(const char *hay, const char *needle) {
  int c = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) c++;
  return c;
}

#define SEND(fd, lit) sendall(fd, lit, sizeof(lit) - 1)

TEST(simple_get) {
  start(1024);
  int fd = client();
  SEND(fd, "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\n\r\n");
  char *r = read_all(fd, 0);
  ASSERT(strstr(r, "HTTP/1.1 200 OK\r\n") == r);
  ASSERT(strstr(r, "Content-Length: 30\r\n"));
  ASSERT(strstr(r, "\r\n\r\nGET /a/b q=x=1 h=2 x=yes body="));
  close(fd);
}

/* A value loses its trailing whitespace; an empty value is a header of
 * its own (the next name does not run into it). */
TEST(header_values_trimmed_and_empty) {
  start(1024);
  int fd = client();
  SEND(fd, "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Test:  padded \t \r\n\r\n");
  char *r = read_all(fd, 0);
  ASSERT(strstr(r, "HTTP/1.1 200 OK\r\n") == r);
  ASSERT(strstr(r, "\r\n\r\nGET / q= h=3 x=padded body="));
  close(fd);
}

/* absolute-form targets are accepted: the path follows the authority */
TEST(absolute_form_target) {
  start(1024);
  int fd = client();
  SEND(fd, "GET http://h:8080/a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
           "GET HTTPS://h?y=2 HTTP/1.1\r\nHost: h\r\n\r\n");
  char *r = read_all(fd, 0);
  ASSERT(strstr(r, "\r\n\r\nGET /a/b q=x=1 h=1 x= body="));
  ASSERT(strstr(r, "\r\n\r\nGET / q=y=2 h=1 x= body="));
  close(fd);
}

TEST(pipelined_in_order) {
  start(1024);
  int fd = client();
  SEND(fd, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n"
           "POST /three HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
  char *r = read_all(fd, 0);
  char *a = strstr(r, "slow"), *b = strstr(r, "GET /two"), *c = strstr(r, "POST /three");
  if (!a || !b || !c || !(a < b && b < c)) FAIL_AT("out of order or missing: %s", r);
  ASSERT(strstr(r, "body=abc"));
  close(fd);
}

TEST(chunked_body) {
  start(1024);
  int fd = client();
  SEND(fd, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n");
  char *r = read_all(fd, 0);
  ASSERT(strstr(r, "body=abcde"));
  close(fd);
}

static void expect_status_and_close(const char *req, size_t len, const char *status) {
  int fd = client();
  sendall(fd, req, len);
  char *r = read_all(fd, 1);
  if (strstr(r, status) != r) FAIL_AT("wanted %s for %.40s..., got: %.200s", status, req, r);
  ASSERT(strstr(r, "Connection: close\r\n"));
  close(fd);
}
#define EXPECT(lit, status) expect_status_and_close(lit, sizeof(lit) - 1, status)

TEST(smuggling_refused) {
  start(1024);
  EXPECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
         "HTTP/1.1 400");
  EXPECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n", "HTTP/1.1 400");
  EXPECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 400");
  EXPECT("GET / HTTP/1.1\r\nHost : h\r\n\r\n", "HTTP/1.1 400");
  EXPECT("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 400");
  EXPECT("GET / HTTP/7.1\r\nHost: h\r\n\r\n", "HTTP/1.1 400");
}

TEST(limits) {
  start(16);
  EXPECT("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n", "HTTP/1.1 413");
  EXPECT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
         "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", "HTTP/1.1 413");
  static char big[80 * 1024];
  int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
  memset(big + n, 'a', 70 * 1024);
  memcpy(big + n + 70 * 1024, "\r\n\r\n", 4);
  expect_status_and_close(big, (size_t)n + 70 * 1024 + 4, "HTTP/1.1 431");
}

TEST(expect_continue) {
  start(1024);
  int fd = client();
  SEND(fd, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  char *r = read_all(fd, 0);
  ASSERT_STR_EQ(r, "HTTP/1.1 100 Continue\r\n\r\n");
  SEND(fd, "hi");
  r = read_all(fd, 0);
  ASSERT(strstr(r, "HTTP/1.1 200 OK") == r && strstr(r, "body=hi"));
  close(fd);
}

TEST(head_has_no_body) {
  start(1024);
  int fd = client();
  SEND(fd, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
  char *r = read_all(fd, 0);
  ASSERT(strstr(r, "Content-Length: 23\r\n"));
  ASSERT(strstr(r, "\r\n\r\n")[4] == '\0');
  close(fd);
}

TEST(http10_closes) {
  start(1024);
  int fd = client();
  SEND(fd, "GET /old HTTP/1.0\r\n\r\n");
  char *r = read_all(fd, 1);
  ASSERT(strstr(r, "Connection: close\r\n") && strstr(r, "GET /old"));
  close(fd);
}

TEST(upgrade_answered_once_then_closed) {
  start(1024);
  int fd = client();
  SEND(fd, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
           "xyz");
  char *r = read_all(fd, 1);
  ASSERT_INT_EQ(count(r, "HTTP/1.1 "), 1);
  ASSERT(strstr(r, "Connection: close\r\n"));
  close(fd);
}

/* The server closes fd (EOF) after the 1 s timeout of these tests: not
 * before it (an instant close is no timeout), and within 5 s. */
static void expect_closed_after_timeout(int fd, uint64_t t0) {
  struct pollfd p = {fd, POLLIN, 0};
  ASSERT_INT_EQ(poll(&p, 1, 5000), 1);
  uint64_t took_ms = (clock_now_ns() - t0) / 1000000u;
  char b[16];
  ASSERT_INT_EQ(read(fd, b, sizeof b), 0);   /* closed by the server, nothing sent */
  if (took_ms < 900) FAIL_AT("closed after %llu ms, before the 1 s timeout",
                             (unsigned long long)took_ms);
}

TEST(half_request_times_out) {
  start(1024);   /* header timeout 1 s in this test */
  int fd = client();
  uint64_t t0 = clock_now_ns();
  SEND(fd, "GET /never-finished HTTP/1.1\r\nHost");
  expect_closed_after_timeout(fd, t0);
  close(fd);
}

TEST(idle_keepalive_times_out) {
  start(1024);
  uint64_t t0 = clock_now_ns();
  int fd = client();
  expect_closed_after_timeout(fd, t0);
  close(fd);
}

TEST_LIST(T(simple_get), T(header_values_trimmed_and_empty), T(absolute_form_target), T(pipelined_in_order), T(chunked_body), T(smuggling_refused), T(limits),
          T(expect_continue), T(head_has_no_body), T(http10_closes), T(half_request_times_out),
          T(upgrade_answered_once_then_closed),
          T(idle_keepalive_times_out));
