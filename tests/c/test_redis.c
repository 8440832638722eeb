/*
 * net/redis against a real redis-server (each test starts its own on a
 * free loopback port and a unix socket in a temp dir, and kills it by PID)
 * and against a hostile fake server in a thread of the test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "net/redis.h"
#include "runner.h"

/* ---- a redis-server of our own ---- */

static struct {
  pid_t pid;
  int port;
  char dir[64], sock[128];
  const char *pass;       /* requirepass, or NULL */
} srv;

static void server_stop(void) {
  if (srv.pid > 0) {
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
  }
}

static void cleanup(void) {
  server_stop();
  if (srv.dir[0]) {
    unlink(srv.sock);
    rmdir(srv.dir);
  }
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

/* A blocking connection to the server (TCP), NULL-safe reply reading with
 * hiredis' reader: the test's own view of the server. */
static int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static redisReply *raw_read(int fd) {
  redisReader *rd = redisReaderCreate();
  void *r = NULL;
  char buf[65536];
  while (!r) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    redisReaderFeed(rd, buf, (size_t)n);
    if (redisReaderGetReply(rd, &r) != REDIS_OK) break;
  }
  redisReaderFree(rd);
  return r;
}

/* Sends line (space-separated words) and returns the reply (or NULL). */
static redisReply *raw_fd(int fd, const char *line) {
  char copy[512], *argv[16], *save = NULL;
  int argc = 0;
  snprintf(copy, sizeof copy, "%s", line);
  for (char *w = strtok_r(copy, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
    argv[argc++] = w;
  char *cmd;
  int len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, NULL);
  ssize_t w = send(fd, cmd, (size_t)len, MSG_NOSIGNAL);
  redisFreeCommand(cmd);
  return w == len ? raw_read(fd) : NULL;
}

/* One command on a fresh raw connection (logged in when srv.pass). */
static redisReply *raw(const char *line) {
  int fd = raw_connect(srv.port);
  if (fd < 0) return NULL;
  if (srv.pass) {
    char auth[128];
    snprintf(auth, sizeof auth, "AUTH %s", srv.pass);
    redisReply *a = raw_fd(fd, auth);
    if (a) freeReplyObject(a);
  }
  redisReply *r = raw_fd(fd, line);
  close(fd);
  return r;
}

static long long raw_int(const char *line) {
  redisReply *r = raw(line);
  long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
  if (r) freeReplyObject(r);
  return v;
}

/* Lines of CLIENT LIST that contain needle (the raw connection excluded). */
static int clients_with(const char *needle) {
  redisReply *r = raw("CLIENT LIST");
  ASSERT(r && r->type == REDIS_REPLY_STRING);
  int n = 0;
  char *save = NULL;
  for (char *l = strtok_r(r->str, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
    if (strstr(l, needle) && !strstr(l, "cmd=client|list")) n++;
  freeReplyObject(r);
  return n;
}

static void server_spawn(void) {
  char port[16];
  snprintf(port, sizeof port, "%d", srv.port);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 1);         /* its log; config errors go to stderr */
    const char *argv[32] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", srv.dir,
                            "--daemonize", "no", "--unixsocket", srv.sock,
                            "--unixsocketperm", "700", "--enable-debug-command", "yes",
                            "--loglevel", "warning"};
    int i = 0;
    while (argv[i]) i++;
    if (srv.pass) { argv[i++] = "--requirepass"; argv[i++] = srv.pass; }
    argv[i] = NULL;
    execvp("redis-server", (char *const *)argv);
    _exit(127);
  }
  srv.pid = pid;
  uint64_t until = clock_now_ns() + 10000000000ull;
  while (clock_now_ns() < until) {       /* poll until it answers */
    redisReply *r = raw("PING");
    int ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
    if (r) freeReplyObject(r);
    if (ok) return;
    ASSERT(waitpid(pid, NULL, WNOHANG) == 0);
    usleep(20000);
  }
  FAIL_AT("redis-server did not start on port %d", srv.port);
}

static void server_start(const char *pass) {
  snprintf(srv.dir, sizeof srv.dir, "/tmp/luahost-redis-XXXXXX");
  ASSERT(mkdtemp(srv.dir));
  snprintf(srv.sock, sizeof srv.sock, "%s/redis.sock", srv.dir);
  srv.pass = pass;
  srv.port = free_port();
  atexit(cleanup);
  server_spawn();
}

/* ---- the loop and callbacks ---- */

static uv_loop_t loop;
static uv_timer_t tick;

static void on_tick(uv_timer_t *t) {}

static void loop_init(void) {
  ASSERT(uv_loop_init(&loop) == 0);
  uv_timer_init(&loop, &tick);
  uv_unref((uv_handle_t *)&tick);
}

/* Runs the loop until *counter >= want or ms pass; 1 if reached. */
static int wait_for(const size_t *counter, size_t want, unsigned ms) {
  uint64_t until = clock_now_ns() + (uint64_t)ms * 1000000;
  uv_timer_start(&tick, on_tick, 5, 5);
  while (*counter < want && clock_now_ns() < until) uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&tick);
  return *counter >= want;
}

struct rec {
  size_t called;
  int err;
  char msg[512];
  size_t n;
  redisReply *r[8];       /* kept replies */
  uint64_t done_ns;
  size_t seq;             /* completion order */
};

static size_t completions;

static void on_done(void *ud, struct redis_done *d) {
  struct rec *r = ud;
  r->called++;
  r->err = d->err;
  r->done_ns = clock_now_ns();
  r->seq = completions++;
  snprintf(r->msg, sizeof r->msg, "%s", d->err ? d->msg : "");
  r->n = d->n;
  for (size_t i = 0; i < d->n && i < 8; i++) {
    r->r[i] = d->replies[i];
    d->replies[i] = NULL;                  /* kept: freed by the test */
  }
}

static void rec_clear(struct rec *r) {
  for (int i = 0; i < 8; i++)
    if (r->r[i]) freeReplyObject(r->r[i]);
  memset(r, 0, sizeof *r);
}

/* Issues the space-separated line; returns redis_command's result. */
static int issue(struct redis_client *c, const char *line, unsigned timeout_ms, struct rec *r,
                 struct redis_cmd **out) {
  char copy[512], *argv[16], *save = NULL;
  int argc = 0;
  snprintf(copy, sizeof copy, "%s", line);
  for (char *w = strtok_r(copy, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
    argv[argc++] = w;
  return redis_command(c, argc, (const char *const *)argv, NULL, timeout_ms, on_done, r, out);
}

/* Issues line and waits for its reply (kept in r->r[0]). */
static redisReply *call(struct redis_client *c, const char *line, struct rec *r) {
  rec_clear(r);
  int rc = issue(c, line, 5000, r, NULL);
  if (rc != 0) FAIL_AT("%s: %s", line, redis_strerror(rc));
  if (!wait_for(&r->called, 1, 8000)) FAIL_AT("%s: no callback", line);
  if (r->err) FAIL_AT("%s: %s: %s", line, redis_strerror(r->err), r->msg);
  ASSERT_INT_EQ(r->n, 1);
  return r->r[0];
}

static struct redis_client *client_for(const char *url, const struct redis_options *o) {
  struct redis_url u;
  char err[256];
  if (redis_url_parse(url, &u, err, sizeof err) != 0) FAIL_AT("%s: %s", url, err);
  struct redis_client *c = redis_client_new(&loop, &u, o);
  ASSERT(c);
  return c;
}

static struct redis_client *client_tcp(const char *userinfo, int db) {
  char url[256];
  snprintf(url, sizeof url, "redis://%s127.0.0.1:%d/%d", userinfo, srv.port, db);
  return client_for(url, NULL);
}

static size_t closed;
static void on_closed(void *ud) { closed++; }

/* Closes c and checks the loop ends with nothing left open. */
static void client_done(struct redis_client *c) {
  size_t before = closed;
  redis_client_close(c, on_closed, NULL);
  ASSERT(wait_for(&closed, before + 1, 5000));
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);
}

/* Runs the loop in short slices until cond() holds or ms pass. */
static int eventually(int (*cond)(void), unsigned ms) {
  uint64_t until = clock_now_ns() + (uint64_t)ms * 1000000;
  size_t never = 0;
  while (clock_now_ns() < until) {
    if (cond()) return 1;
    wait_for(&never, 1, 10);
  }
  return cond();
}

static long long info_field(const char *section, const char *field) {
  redisReply *r = raw(section);
  ASSERT(r && r->type == REDIS_REPLY_STRING);
  const char *p = strstr(r->str, field);
  long long v = p ? atoll(p + strlen(field) + 1) : -1;
  freeReplyObject(r);
  return v;
}

static struct redis_client *cur;
static size_t want_in_flight;

static int in_flight_reached(void) {
  struct redis_stats st;
  redis_client_stats(cur, &st);
  return st.in_flight >= want_in_flight;
}

static int reply_is(const redisReply *r, int type, const char *str) {
  return r && r->type == type && (!str || (r->len == strlen(str) && !memcmp(r->str, str, r->len)));
}

/* ---- URLs ---- */

static void url_ok(const char *s, struct redis_url *u) {
  char err[256];
  if (redis_url_parse(s, u, err, sizeof err) != 0) FAIL_AT("%s: %s", s, err);
}

static void url_bad(const char *s, const char *want) {
  struct redis_url u;
  char err[256] = "";
  if (redis_url_parse(s, &u, err, sizeof err) == 0) FAIL_AT("%s: accepted", s);
  if (!strstr(err, want)) FAIL_AT("%s: \"%s\" lacks \"%s\"", s, err, want);
  if (strstr(err, "s3cret")) FAIL_AT("%s: the message shows the password: %s", s, err);
}

TEST(url_parse) {
  struct redis_url u;
  char d[300];
  url_ok("redis://127.0.0.1:6380/3", &u);
  ASSERT_STR_EQ(u.host, "127.0.0.1");
  ASSERT_INT_EQ(u.port, 6380);
  ASSERT_INT_EQ(u.db, 3);
  ASSERT_INT_EQ(u.has_password, 0);
  ASSERT_INT_EQ(u.is_unix, 0);
  url_ok("redis://cache.internal", &u);
  ASSERT_STR_EQ(u.host, "cache.internal");
  ASSERT_INT_EQ(u.port, 6379);
  ASSERT_INT_EQ(u.db, 0);
  url_ok("redis://:p%40ss@h/1", &u);
  ASSERT_STR_EQ(u.password, "p@ss");
  ASSERT_STR_EQ(u.user, "");
  ASSERT_INT_EQ(u.has_password, 1);
  url_ok("redis://:a@b@h:7000", &u);           /* the last '@' ends the password */
  ASSERT_STR_EQ(u.password, "a@b");
  ASSERT_STR_EQ(u.host, "h");
  url_ok("redis://alice:pw@[::1]:7000/2", &u);
  ASSERT_STR_EQ(u.user, "alice");
  ASSERT_STR_EQ(u.password, "pw");
  ASSERT_STR_EQ(u.host, "::1");
  ASSERT_INT_EQ(u.port, 7000);
  redis_url_describe(&u, d, sizeof d);
  ASSERT_STR_EQ(d, "[::1]:7000/2");
  url_ok("redis://h?db=4", &u);
  ASSERT_INT_EQ(u.db, 4);
  url_ok("redis://h/?db=5", &u);
  ASSERT_INT_EQ(u.db, 5);
  url_ok("unix:///tmp/r.sock?db=2", &u);
  ASSERT_INT_EQ(u.is_unix, 1);
  ASSERT_STR_EQ(u.path, "/tmp/r.sock");
  ASSERT_INT_EQ(u.db, 2);
  url_ok("unix://:s3cret@/var/run/redis%20x.sock", &u);
  ASSERT_STR_EQ(u.path, "/var/run/redis x.sock");
  ASSERT_STR_EQ(u.password, "s3cret");
  redis_url_describe(&u, d, sizeof d);
  ASSERT_STR_EQ(d, "unix:/var/run/redis x.sock/0");

  url_bad("", "empty");
  url_bad("localhost:6379", "no scheme");
  url_bad("127.0.0.1", "no scheme");
  url_bad("http://h", "unknown scheme 'http'");
  url_bad("rediss://h", "TLS");
  url_bad("redis://", "no host");
  url_bad("redis://:s3cret@", "no host");
  url_bad("redis://h:0", "port '0'");
  url_bad("redis://h:99999", "port '99999'");
  url_bad("redis://h:", "port ''");
  url_bad("redis://:s3cret@h:x1", "port 'x1'");
  url_bad("redis://h/x", "db 'x'");
  url_bad("redis://h/99999999999", "db '99999999999'");
  url_bad("redis://h/-1", "db '-1'");
  url_bad("redis://s3cret@h", "no ':'");
  url_bad("redis://h/1?db=2", "twice");
  url_bad("redis://h?timeout=5", "unknown parameter 'timeout'");
  url_bad("redis://[::1", "']'");
  url_bad("unix://tmp/r.sock", "absolute");
  url_bad("unix://:s3cret@tmp/r.sock", "absolute");
  url_bad("unix://", "absolute");
  char longp[300] = "unix:///";
  memset(longp + 8, 'a', 200);
  longp[208] = '\0';
  url_bad(longp, "too long");
  url_bad("redis://:s3cret%00x@h", "password");      /* an encoded NUL */
}

/* ---- replies ---- */

TEST(reply_types) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec r = {0};
  ASSERT(reply_is(call(c, "SET k v", &r), REDIS_REPLY_STATUS, "OK"));
  ASSERT(reply_is(call(c, "GET k", &r), REDIS_REPLY_STRING, "v"));
  ASSERT(reply_is(call(c, "GET missing", &r), REDIS_REPLY_NIL, NULL));
  redisReply *x = call(c, "INCR n", &r);
  ASSERT(reply_is(x, REDIS_REPLY_INTEGER, NULL));
  ASSERT_INT_EQ(x->integer, 1);
  x = call(c, "INCR k", &r);                        /* an error reply is a reply */
  ASSERT_INT_EQ(r.err, 0);
  ASSERT_INT_EQ(x->type, REDIS_REPLY_ERROR);
  ASSERT(strstr(x->str, "not an integer"));
  x = call(c, "MGET k missing k", &r);
  ASSERT_INT_EQ(x->type, REDIS_REPLY_ARRAY);
  ASSERT_INT_EQ(x->elements, 3);
  ASSERT(reply_is(x->element[0], REDIS_REPLY_STRING, "v"));
  ASSERT(reply_is(x->element[1], REDIS_REPLY_NIL, NULL));
  ASSERT(reply_is(x->element[2], REDIS_REPLY_STRING, "v"));
  ASSERT(reply_is(call(c, "LRANGE nolist 0 -1", &r), REDIS_REPLY_ARRAY, NULL));
  ASSERT_INT_EQ(r.r[0]->elements, 0);

  /* nested arrays, and binary-safe arguments (NUL, CR LF) */
  const char *ev[] = {"EVAL", "return {1, {2, 'x', {3}}, false, 'y'}", "0"};
  rec_clear(&r);
  ASSERT_INT_EQ(redis_command(c, 3, ev, NULL, 5000, on_done, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  x = r.r[0];
  ASSERT(x && x->type == REDIS_REPLY_ARRAY && x->elements == 4);
  ASSERT_INT_EQ(x->element[0]->integer, 1);
  redisReply *in = x->element[1];
  ASSERT(in->type == REDIS_REPLY_ARRAY && in->elements == 3);
  ASSERT_INT_EQ(in->element[0]->integer, 2);
  ASSERT(reply_is(in->element[1], REDIS_REPLY_STRING, "x"));
  ASSERT(in->element[2]->type == REDIS_REPLY_ARRAY && in->element[2]->elements == 1);
  ASSERT_INT_EQ(in->element[2]->element[0]->integer, 3);
  ASSERT(reply_is(x->element[2], REDIS_REPLY_NIL, NULL));
  ASSERT(reply_is(x->element[3], REDIS_REPLY_STRING, "y"));
  const char *setb[] = {"SET", "bin", "a\0b\r\nc"};
  size_t setl[] = {3, 3, 6};
  rec_clear(&r);
  ASSERT_INT_EQ(redis_command(c, 3, setb, setl, 5000, on_done, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  x = call(c, "GET bin", &r);
  ASSERT_INT_EQ(x->len, 6);
  ASSERT(memcmp(x->str, "a\0b\r\nc", 6) == 0);
  rec_clear(&r);
  client_done(c);
}

/* ---- pipelining ---- */

#define NPIPE 1000

TEST(pipelining_one_connection) {
  server_start(NULL);
  loop_init();
  long long conns_before = info_field("INFO stats", "total_connections_received");
  struct redis_client *c = client_tcp("", 0);
  static struct rec r[NPIPE + 2];
  ASSERT_INT_EQ(issue(c, "CLIENT ID", 10000, &r[0], NULL), 0);
  for (int i = 1; i <= NPIPE; i++) ASSERT_INT_EQ(issue(c, "INCR ctr", 10000, &r[i], NULL), 0);
  ASSERT_INT_EQ(issue(c, "CLIENT ID", 10000, &r[NPIPE + 1], NULL), 0);
  struct redis_stats st;
  redis_client_stats(c, &st);
  ASSERT_INT_EQ(st.queued, NPIPE + 2);          /* none answered before the loop ran */
  ASSERT(wait_for(&completions, NPIPE + 2, 10000));
  for (int i = 0; i <= NPIPE + 1; i++) {
    ASSERT_INT_EQ(r[i].called, 1);
    ASSERT_INT_EQ(r[i].err, 0);
    ASSERT_INT_EQ(r[i].seq, i);                 /* callbacks in order */
    ASSERT_INT_EQ(r[i].r[0]->type, REDIS_REPLY_INTEGER);
    if (i >= 1 && i <= NPIPE) ASSERT_INT_EQ(r[i].r[0]->integer, i);
  }
  ASSERT_INT_EQ(r[0].r[0]->integer, r[NPIPE + 1].r[0]->integer);   /* one connection */
  /* the client opened one connection; the raw INFO query accounts for the rest */
  ASSERT_INT_EQ(info_field("INFO stats", "total_connections_received"), conns_before + 2);
  ASSERT_INT_EQ(clients_with("addr="), 1);
  for (int i = 0; i <= NPIPE + 1; i++) rec_clear(&r[i]);
  client_done(c);
}

/* ---- a fake server in a thread ---- */

static struct {
  int lfd, port;
  void (*script)(int idx, int fd, redisReader *rd);
  pthread_t th;
} fake;

/* The next command the client sent (NULL at EOF). */
static redisReply *fake_cmd(int fd, redisReader *rd) {
  void *r = NULL;
  char buf[4096];
  for (;;) {
    if (redisReaderGetReply(rd, &r) != REDIS_OK) return NULL;
    if (r) return r;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return NULL;
    redisReaderFeed(rd, buf, (size_t)n);
  }
}

static void fake_send(int fd, const char *s) { send(fd, s, strlen(s), MSG_NOSIGNAL); }

/* Answers every command +OK (the login PING too) until EOF. */
static void fake_ok_all(int fd, redisReader *rd) {
  redisReply *r;
  while ((r = fake_cmd(fd, rd))) {
    freeReplyObject(r);
    fake_send(fd, "+OK\r\n");
  }
}

static void *fake_main(void *arg) {
  for (int idx = 0;; idx++) {
    int fd = accept(fake.lfd, NULL, NULL);
    if (fd < 0) return NULL;
    redisReader *rd = redisReaderCreate();
    fake.script(idx, fd, rd);
    redisReaderFree(rd);
    close(fd);
  }
}

static void fake_start(void (*script)(int, int, redisReader *)) {
  fake.lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  ASSERT(bind(fake.lfd, (struct sockaddr *)&a, sizeof a) == 0);
  ASSERT(listen(fake.lfd, 16) == 0);
  getsockname(fake.lfd, (struct sockaddr *)&a, &len);
  fake.port = ntohs(a.sin_port);
  fake.script = script;
  ASSERT(pthread_create(&fake.th, NULL, fake_main, NULL) == 0);
}

static struct redis_client *client_fake(void) {
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", fake.port);
  struct redis_options o = {.backoff_min_ms = 10, .backoff_max_ms = 50};
  return client_for(url, &o);
}

/* Answers nothing until all NPIPE commands are in: a client that waited
 * for each reply before writing the next would never get one. */
static void script_pipeline(int idx, int fd, redisReader *rd) {
  redisReply *r = fake_cmd(fd, rd);                 /* login PING */
  if (!r) return;
  freeReplyObject(r);
  fake_send(fd, "+PONG\r\n");
  for (int i = 0; i < NPIPE; i++) {
    if (!(r = fake_cmd(fd, rd))) return;
    freeReplyObject(r);
  }
  static char out[NPIPE * 8];
  size_t len = 0;
  for (int i = 0; i < NPIPE; i++) len += (size_t)sprintf(out + len, ":%d\r\n", i);
  send(fd, out, len, MSG_NOSIGNAL);
  fake_ok_all(fd, rd);
}

TEST(pipelining_writes_before_replies) {
  fake_start(script_pipeline);
  loop_init();
  struct redis_client *c = client_fake();
  static struct rec r[NPIPE];
  cur = c;
  for (int i = 0; i < NPIPE; i++) {
    ASSERT_INT_EQ(issue(c, "PING", 10000, &r[i], NULL), 0);
    if (i % 100 == 99 && i < NPIPE - 1) {   /* written over several iterations, unanswered */
      want_in_flight = (size_t)i + 1;
      ASSERT(eventually(in_flight_reached, 5000));
      ASSERT_INT_EQ(completions, 0);
    }
  }
  ASSERT(wait_for(&completions, NPIPE, 10000));
  for (int i = 0; i < NPIPE; i++) {
    ASSERT_INT_EQ(r[i].err, 0);
    ASSERT_INT_EQ(r[i].r[0]->integer, i);
    rec_clear(&r[i]);
  }
  client_done(c);
}

/* ---- hostile peers ---- */

static int hostile_case;

/* Connection 0 gets the hostile answer; the next ones a sane server. */
static void script_hostile(int idx, int fd, redisReader *rd) {
  if (idx > 0) { fake_ok_all(fd, rd); return; }
  redisReply *r = fake_cmd(fd, rd);             /* login PING */
  if (!r) return;
  freeReplyObject(r);
  if (hostile_case == 4) { fake_send(fd, "%garbage in login\r\n"); return; }
  fake_send(fd, "+PONG\r\n");
  if (!(r = fake_cmd(fd, rd))) return;
  freeReplyObject(r);
  switch (hostile_case) {
  case 0: fake_send(fd, "hello, not RESP\r\n"); break;
  case 1: fake_send(fd, "$10\r\nabc"); return;                /* and closes */
  case 2: fake_send(fd, "+OK\r\n+EXTRA\r\n"); break;          /* a reply nobody asked */
  case 3: fake_send(fd, "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n");
    break;
  }
  fake_cmd(fd, rd);                 /* until the client hangs up */
}

static int reconnected(void) {
  struct redis_stats st;
  redis_client_stats(cur, &st);
  return st.connects >= 2;
}

static void hostile_run(int which, int want_err, const char *want_msg) {
  hostile_case = which;
  fake_start(script_hostile);
  loop_init();
  struct redis_client *c = client_fake();
  struct rec r = {0}, r2 = {0};
  ASSERT_INT_EQ(issue(c, "GET k", 5000, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  if (which == 2) {       /* the asked-for reply arrives; the extra one drops the connection */
    ASSERT_INT_EQ(r.err, 0);
    ASSERT(reply_is(r.r[0], REDIS_REPLY_STATUS, "OK"));
    cur = c;
    ASSERT(eventually(reconnected, 5000));
  } else {
    ASSERT_INT_EQ(r.err, want_err);
    if (!strstr(r.msg, want_msg)) FAIL_AT("\"%s\" lacks \"%s\"", r.msg, want_msg);
    ASSERT(strstr(r.msg, "127.0.0.1"));
  }
  /* the client reconnects by itself; the next server is sane */
  uint64_t until = clock_now_ns() + 5000000000ull;
  int ok = 0;
  while (!ok && clock_now_ns() < until) {
    rec_clear(&r2);
    int rc = issue(c, "PING", 2000, &r2, NULL);
    if (rc == 0) wait_for(&r2.called, 1, 3000);
    else wait_for(&r2.called, 1, 20);
    ok = rc == 0 && r2.err == 0 && reply_is(r2.r[0], REDIS_REPLY_STATUS, "OK");
  }
  ASSERT(ok);
  rec_clear(&r);
  rec_clear(&r2);
  client_done(c);
}

TEST(hostile_garbage) { hostile_run(0, REDIS_E_PROTOCOL, "protocol error"); }
TEST(hostile_close_mid_reply) { hostile_run(1, REDIS_E_CONN, "closed the connection"); }
TEST(hostile_extra_reply) { hostile_run(2, 0, "no command asked for"); }
TEST(hostile_deep_nesting) { hostile_run(3, REDIS_E_PROTOCOL, "protocol error"); }
TEST(hostile_garbage_at_login) { hostile_run(4, REDIS_E_PROTOCOL, "protocol error"); }

/* ---- login: AUTH, SELECT, unix sockets ---- */

TEST(auth_password) {
  server_start("s3cret");
  loop_init();
  struct rec r = {0};
  struct redis_client *good = client_tcp(":s3cret@", 0);
  ASSERT(reply_is(call(good, "PING", &r), REDIS_REPLY_STATUS, "PONG"));

  struct redis_client *bad = client_tcp(":wrong@", 0);
  rec_clear(&r);
  ASSERT_INT_EQ(issue(bad, "PING", 5000, &r, NULL), 0);     /* waits for the attempt */
  ASSERT(wait_for(&r.called, 1, 5000));
  ASSERT_INT_EQ(r.err, REDIS_E_AUTH);
  if (!strstr(r.msg, "AUTH refused") || !strstr(r.msg, "WRONGPASS")) FAIL_AT("%s", r.msg);
  ASSERT(!strstr(r.msg, "wrong@"));
  /* backing off now: fails fast, and says why */
  ASSERT_INT_EQ(issue(bad, "PING", 5000, &r, NULL), REDIS_E_UNAVAILABLE);
  ASSERT(strstr(redis_client_error(bad), "WRONGPASS"));

  struct redis_client *none = client_tcp("", 0);
  rec_clear(&r);
  ASSERT_INT_EQ(issue(none, "GET k", 5000, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  ASSERT_INT_EQ(r.err, REDIS_E_AUTH);
  ASSERT(strstr(r.msg, "NOAUTH"));

  /* USER:PASSWORD (an ACL user) */
  redisReply *x = raw("ACL SETUSER alice on >pw2 ~* &* +@all");
  ASSERT(reply_is(x, REDIS_REPLY_STATUS, "OK"));
  freeReplyObject(x);
  struct redis_client *alice = client_tcp("alice:pw2@", 0);
  ASSERT(reply_is(call(alice, "ACL WHOAMI", &r), REDIS_REPLY_STRING, "alice"));
  rec_clear(&r);
  redis_client_close(bad, NULL, NULL);
  redis_client_close(none, NULL, NULL);
  redis_client_close(alice, NULL, NULL);
  client_done(good);
}

TEST(select_db) {
  server_start(NULL);
  loop_init();
  struct rec r = {0};
  struct redis_client *d3 = client_tcp("", 3), *d0 = client_tcp("", 0);
  ASSERT(reply_is(call(d3, "SET k three", &r), REDIS_REPLY_STATUS, "OK"));
  ASSERT(reply_is(call(d0, "GET k", &r), REDIS_REPLY_NIL, NULL));
  ASSERT(reply_is(call(d3, "GET k", &r), REDIS_REPLY_STRING, "three"));
  ASSERT(strstr(call(d3, "CLIENT INFO", &r)->str, " db=3 "));
  struct redis_client *far = client_tcp("", 99);         /* out of range */
  rec_clear(&r);
  ASSERT_INT_EQ(issue(far, "PING", 5000, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  ASSERT_INT_EQ(r.err, REDIS_E_AUTH);
  if (!strstr(r.msg, "SELECT refused")) FAIL_AT("%s", r.msg);
  rec_clear(&r);
  /* SELECT as a command is refused: it would move everyone sharing the connection */
  struct redis_batch *b = redis_batch_new();
  const char *sel[] = {"select", "1"};
  ASSERT_INT_EQ(redis_batch_add(b, 2, sel, NULL), REDIS_E_REFUSED);
  ASSERT(strstr(redis_batch_error(b), "URL"));
  redis_batch_free(b);
  redis_client_close(far, NULL, NULL);
  redis_client_close(d0, NULL, NULL);
  client_done(d3);
}

TEST(unix_socket) {
  server_start("s3cret");
  loop_init();
  char url[256];
  snprintf(url, sizeof url, "unix://:s3cret@%s?db=2", srv.sock);
  struct redis_client *c = client_for(url, NULL);
  struct rec r = {0};
  ASSERT(reply_is(call(c, "SET u 1", &r), REDIS_REPLY_STATUS, "OK"));
  ASSERT(strstr(call(c, "CLIENT INFO", &r)->str, " db=2 "));
  ASSERT_INT_EQ(clients_with("flags=U"), 1);
  rec_clear(&r);
  client_done(c);
}

/* ---- blocking commands ---- */

static int blpop_waiting(void) { return clients_with("cmd=blpop") == 1; }
static int no_blpop(void) {
  return clients_with("cmd=blpop") == 0 && info_field("INFO clients", "blocked_clients") == 0;
}

TEST(blocking_own_connection) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec bl = {0}, r = {0};
  static struct rec many[200];
  ASSERT(reply_is(call(c, "PING", &r), REDIS_REPLY_STATUS, "PONG"));
  ASSERT_INT_EQ(issue(c, "BLPOP q 0", 10000, &bl, NULL), 0);
  ASSERT(eventually(blpop_waiting, 5000));
  /* ordinary commands flow on the shared connection meanwhile */
  size_t base = completions;
  for (int i = 0; i < 200; i++)
    ASSERT_INT_EQ(issue(c, i % 2 ? "GET k" : "SET k v", 5000, &many[i], NULL), 0);
  ASSERT(wait_for(&completions, base + 200, 5000));
  for (int i = 0; i < 200; i++) {
    ASSERT_INT_EQ(many[i].err, 0);
    rec_clear(&many[i]);
  }
  ASSERT_INT_EQ(bl.called, 0);
  struct redis_stats st;
  redis_client_stats(c, &st);
  ASSERT_INT_EQ(st.blocking_busy, 1);
  ASSERT_INT_EQ(clients_with("addr="), 2);            /* shared + blocking */
  ASSERT_INT_EQ(call(c, "RPUSH q x", &r)->integer, 1);
  ASSERT(wait_for(&bl.called, 1, 5000));
  ASSERT_INT_EQ(bl.err, 0);
  redisReply *x = bl.r[0];
  ASSERT(x->type == REDIS_REPLY_ARRAY && x->elements == 2);
  ASSERT(reply_is(x->element[0], REDIS_REPLY_STRING, "q"));
  ASSERT(reply_is(x->element[1], REDIS_REPLY_STRING, "x"));
  redis_client_stats(c, &st);
  ASSERT_INT_EQ(st.blocking_busy, 0);
  ASSERT_INT_EQ(st.blocking_idle, 1);
  /* the pooled connection is reused: no new login */
  uint64_t connects = st.connects;
  rec_clear(&bl);
  ASSERT_INT_EQ(issue(c, "BRPOP q2 0.1", 5000, &bl, NULL), 0);
  ASSERT(wait_for(&bl.called, 1, 5000));
  ASSERT_INT_EQ(bl.err, 0);
  ASSERT(reply_is(bl.r[0], REDIS_REPLY_NIL, NULL));       /* the server-side timeout */
  redis_client_stats(c, &st);
  ASSERT_INT_EQ(st.connects, connects);
  /* XREAD with BLOCK blocks too; without BLOCK it does not */
  rec_clear(&bl);
  ASSERT_INT_EQ(issue(c, "XREAD COUNT 1 BLOCK 50 STREAMS s $", 5000, &bl, NULL), 0);
  redis_client_stats(c, &st);
  ASSERT_INT_EQ(st.blocking_busy, 1);
  ASSERT(wait_for(&bl.called, 1, 5000));
  rec_clear(&bl);
  rec_clear(&r);
  client_done(c);
}

TEST(cancel_blocking) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec bl = {0}, r = {0};
  struct redis_cmd *h = NULL;
  ASSERT_INT_EQ(issue(c, "BLPOP q 0", 0, &bl, &h), 0);
  ASSERT(eventually(blpop_waiting, 5000));
  ASSERT_INT_EQ(info_field("INFO clients", "blocked_clients"), 1);
  redis_cancel(h);
  ASSERT(eventually(no_blpop, 5000));            /* its connection is closed */
  redisReply *x = raw("RPUSH q v");
  freeReplyObject(x);
  ASSERT_INT_EQ(raw_int("LLEN q"), 1);           /* nobody took the value */
  size_t never = 0;
  wait_for(&never, 1, 200);
  ASSERT_INT_EQ(bl.called, 0);                   /* and no callback */
  struct redis_stats st;
  redis_client_stats(c, &st);
  ASSERT_INT_EQ(st.blocking_busy + st.blocking_idle, 0);
  /* a blocking command that times out on our side is closed the same way */
  ASSERT_INT_EQ(issue(c, "BLPOP q2 0", 200, &bl, NULL), 0);
  uint64_t t0 = clock_now_ns();
  ASSERT(wait_for(&bl.called, 1, 5000));
  ASSERT_INT_EQ(bl.err, REDIS_E_TIMEOUT);
  ASSERT((bl.done_ns - t0) / 1000000 >= 190);
  ASSERT(eventually(no_blpop, 5000));
  ASSERT(reply_is(call(c, "GET k", &r), REDIS_REPLY_NIL, NULL));
  rec_clear(&r);
  client_done(c);
}

TEST(blocking_limit) {
  server_start(NULL);
  loop_init();
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  struct redis_options o = {.max_blocking = 1, .max_idle_blocking = 1};
  struct redis_client *c = client_for(url, &o);
  struct rec a = {0}, b = {0}, r = {0};
  ASSERT_INT_EQ(issue(c, "BLPOP q 0", 0, &a, NULL), 0);
  ASSERT_INT_EQ(issue(c, "BLPOP q2 0", 0, &b, NULL), REDIS_E_BUSY);
  ASSERT(reply_is(call(c, "GET k", &r), REDIS_REPLY_NIL, NULL));   /* shared one unaffected */
  ASSERT_INT_EQ(call(c, "RPUSH q x", &r)->integer, 1);
  ASSERT(wait_for(&a.called, 1, 5000));
  ASSERT_INT_EQ(a.err, 0);
  ASSERT_INT_EQ(issue(c, "BLPOP q2 0.05", 5000, &b, NULL), 0);    /* the slot is free again */
  ASSERT(wait_for(&b.called, 1, 5000));
  ASSERT(reply_is(b.r[0], REDIS_REPLY_NIL, NULL));
  rec_clear(&a);
  rec_clear(&b);
  rec_clear(&r);
  client_done(c);
}

/* ---- shared-connection cancel and timeouts ---- */

TEST(cancel_shared_keeps_sync) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec r = {0}, a = {0}, b = {0};
  ASSERT(reply_is(call(c, "SET k v", &r), REDIS_REPLY_STATUS, "OK"));
  struct redis_cmd *h;
  ASSERT_INT_EQ(issue(c, "SET k dropped", 5000, &a, &h), 0);
  redis_cancel(h);                               /* not written yet: never sent */
  ASSERT_INT_EQ(issue(c, "DEBUG SLEEP 0.2", 5000, &b, NULL), 0);
  ASSERT_INT_EQ(issue(c, "GET k", 5000, &a, &h), 0);
  cur = c;
  want_in_flight = 2;
  ASSERT(eventually(in_flight_reached, 5000));
  redis_cancel(h);                               /* written: its reply is dropped */
  ASSERT(reply_is(call(c, "GET k", &r), REDIS_REPLY_STRING, "v"));
  ASSERT_INT_EQ(a.called, 0);
  ASSERT_INT_EQ(b.called, 1);
  rec_clear(&r);
  rec_clear(&b);
  client_done(c);
}

TEST(timeout_keeps_sync) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec r = {0}, slow = {0}, after = {0};
  ASSERT(reply_is(call(c, "SET k v", &r), REDIS_REPLY_STATUS, "OK"));
  long long id = call(c, "CLIENT ID", &r)->integer;
  uv_update_time(&loop);
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(issue(c, "DEBUG SLEEP 0.5", 100, &slow, NULL), 0);
  ASSERT_INT_EQ(issue(c, "GET k", 5000, &after, NULL), 0);
  ASSERT(wait_for(&slow.called, 1, 5000));
  ASSERT_INT_EQ(slow.err, REDIS_E_TIMEOUT);
  uint64_t ms = (slow.done_ns - t0) / 1000000;
  if (ms < 99 || ms > 1500) FAIL_AT("timed out after %llu ms", (unsigned long long)ms);
  ASSERT(strstr(slow.msg, "no reply within 100 ms"));
  ASSERT(wait_for(&after.called, 1, 5000));
  ASSERT_INT_EQ(after.err, 0);
  ASSERT(reply_is(after.r[0], REDIS_REPLY_STRING, "v"));   /* not DEBUG's +OK */
  ASSERT_INT_EQ(call(c, "CLIENT ID", &r)->integer, id);   /* not reset */
  rec_clear(&r);
  rec_clear(&after);
  client_done(c);
}

/* A timed-out command followed by silence: the connection is reset. */
TEST(stall_resets_connection) {
  server_start(NULL);
  loop_init();
  struct redis_options o = {.stall_ms = 300, .connect_timeout_ms = 500};
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  struct redis_client *c = client_for(url, &o);
  struct rec r = {0}, slow = {0}, behind = {0};
  ASSERT(reply_is(call(c, "PING", &r), REDIS_REPLY_STATUS, "PONG"));
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(issue(c, "DEBUG SLEEP 3", 100, &slow, NULL), 0);
  ASSERT_INT_EQ(issue(c, "GET k", 0, &behind, NULL), 0);    /* no timeout of its own */
  ASSERT(wait_for(&behind.called, 1, 5000));
  ASSERT_INT_EQ(slow.err, REDIS_E_TIMEOUT);
  ASSERT_INT_EQ(behind.err, REDIS_E_CONN);
  ASSERT(strstr(behind.msg, "connection reset"));
  uint64_t ms = (behind.done_ns - t0) / 1000000;
  if (ms < 390 || ms > 2500) FAIL_AT("reset after %llu ms", (unsigned long long)ms);
  /* recovers by itself once Redis wakes up */
  uint64_t until = clock_now_ns() + 8000000000ull;
  int ok = 0;
  while (!ok && clock_now_ns() < until) {
    rec_clear(&r);
    int rc = issue(c, "PING", 1000, &r, NULL);
    if (rc == 0) wait_for(&r.called, 1, 3000); else wait_for(&r.called, 1, 20);
    ok = rc == 0 && r.err == 0;
  }
  ASSERT(ok);
  rec_clear(&r);
  client_done(c);
}

TEST(paused_redis_times_out) {
  server_start(NULL);
  loop_init();
  struct redis_options o = {.stall_ms = 400, .connect_timeout_ms = 400};
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
  struct redis_client *c = client_for(url, &o);
  struct rec r = {0};
  ASSERT(reply_is(call(c, "PING", &r), REDIS_REPLY_STATUS, "PONG"));
  kill(srv.pid, SIGSTOP);
  int timeouts = 0, fast = 0;
  for (int i = 0; i < 8; i++) {      /* each ends within its timeout, never hangs */
    rec_clear(&r);
    uv_update_time(&loop);
    uint64_t t0 = clock_now_ns();
    int rc = issue(c, "GET k", 300, &r, NULL);
    if (rc == REDIS_E_UNAVAILABLE) { fast++; wait_for(&r.called, 1, 100); continue; }
    ASSERT_INT_EQ(rc, 0);
    ASSERT(wait_for(&r.called, 1, 3000));
    uint64_t ms = (r.done_ns - t0) / 1000000;
    if (r.err == REDIS_E_TIMEOUT) {
      timeouts++;
      if (ms < 299 || ms > 1800) FAIL_AT("timeout after %llu ms", (unsigned long long)ms);
    } else {
      ASSERT_INT_EQ(r.err, REDIS_E_CONN);        /* a reset or a failed login */
      if (ms > 1800) FAIL_AT("error after %llu ms", (unsigned long long)ms);
    }
  }
  ASSERT(timeouts >= 1);
  (void)fast;                        /* timing decides how many fail fast */
  kill(srv.pid, SIGCONT);
  uint64_t until = clock_now_ns() + 8000000000ull;
  int ok = 0;
  while (!ok && clock_now_ns() < until) {
    rec_clear(&r);
    int rc = issue(c, "PING", 1000, &r, NULL);
    if (rc == 0) wait_for(&r.called, 1, 3000); else wait_for(&r.called, 1, 20);
    ok = rc == 0 && r.err == 0;
  }
  ASSERT(ok);
  rec_clear(&r);
  client_done(c);
}

/* Polls with PING until the client answers again (bounded). */
static int recovers(struct redis_client *c, unsigned ms) {
  struct rec r = {0};
  uint64_t until = clock_now_ns() + (uint64_t)ms * 1000000;
  int ok = 0;
  while (!ok && clock_now_ns() < until) {
    rec_clear(&r);
    int rc = issue(c, "PING", 1000, &r, NULL);
    if (rc == 0) wait_for(&r.called, 1, 3000); else wait_for(&r.called, 1, 20);
    ok = rc == 0 && r.err == 0 && reply_is(r.r[0], REDIS_REPLY_STATUS, "PONG");
  }
  rec_clear(&r);
  return ok;
}

/* ---- Redis going away ---- */

#define NKILL 100

TEST(killed_mid_traffic_then_restarted) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  static struct rec r[NKILL + 1];
  struct rec p = {0};
  ASSERT(reply_is(call(c, "PING", &p), REDIS_REPLY_STATUS, "PONG"));
  kill(srv.pid, SIGSTOP);               /* commands pile up in flight */
  size_t base = completions;
  for (int i = 0; i < NKILL; i++) ASSERT_INT_EQ(issue(c, "INCR n", 0, &r[i], NULL), 0);
  ASSERT_INT_EQ(issue(c, "BLPOP q 0", 0, &r[NKILL], NULL), 0);
  cur = c;
  want_in_flight = NKILL;
  ASSERT(eventually(in_flight_reached, 5000));
  server_stop();                        /* SIGKILL */
  uint64_t t0 = clock_now_ns();
  ASSERT(wait_for(&completions, base + NKILL + 1, 5000));
  ASSERT((clock_now_ns() - t0) / 1000000 < 3000);
  for (int i = 0; i <= NKILL; i++) {
    ASSERT_INT_EQ(r[i].called, 1);
    ASSERT_INT_EQ(r[i].err, REDIS_E_CONN);
  }
  /* meanwhile: each command fails within its timeout (fast while backing off) */
  for (int i = 0; i < 5; i++) {
    rec_clear(&p);
    uint64_t t1 = clock_now_ns();
    int rc = issue(c, "GET k", 1000, &p, NULL);
    if (rc == 0) {
      ASSERT(wait_for(&p.called, 1, 3000));
      ASSERT(p.err == REDIS_E_CONN || p.err == REDIS_E_TIMEOUT);
    } else {
      ASSERT_INT_EQ(rc, REDIS_E_UNAVAILABLE);
      ASSERT(strstr(redis_client_error(c), "127.0.0.1"));
    }
    ASSERT((clock_now_ns() - t1) / 1000000 < 2500);
  }
  server_spawn();                       /* same port */
  ASSERT(recovers(c, 8000));
  size_t never = 0;
  wait_for(&never, 1, 200);
  for (int i = 0; i <= NKILL; i++) ASSERT_INT_EQ(r[i].called, 1);   /* never twice */
  rec_clear(&p);
  client_done(c);
}

TEST(down_at_start) {
  srv.port = free_port();               /* nothing listens there yet */
  snprintf(srv.dir, sizeof srv.dir, "/tmp/luahost-redis-XXXXXX");
  ASSERT(mkdtemp(srv.dir));
  snprintf(srv.sock, sizeof srv.sock, "%s/redis.sock", srv.dir);
  atexit(cleanup);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec r = {0};
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(issue(c, "GET k", 5000, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  ASSERT_INT_EQ(r.err, REDIS_E_CONN);
  ASSERT(strstr(r.msg, "connection refused"));
  ASSERT((clock_now_ns() - t0) / 1000000 < 1000);
  ASSERT_INT_EQ(issue(c, "GET k", 5000, &r, NULL), REDIS_E_UNAVAILABLE);
  ASSERT(strstr(redis_client_error(c), "connection refused"));
  server_spawn();
  ASSERT(recovers(c, 8000));
  client_done(c);
}

/* ---- batches ---- */

static void add(struct redis_batch *b, const char *line) {
  char copy[256], *argv[16], *save = NULL;
  int argc = 0;
  snprintf(copy, sizeof copy, "%s", line);
  for (char *w = strtok_r(copy, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
    argv[argc++] = w;
  ASSERT_INT_EQ(redis_batch_add(b, argc, (const char *const *)argv, NULL), 0);
}

TEST(batches) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  struct rec r = {0};
  struct redis_batch *b = redis_batch_new();
  add(b, "SET a 1");
  add(b, "INCR a");
  add(b, "LPUSH a x");
  add(b, "GET a");
  ASSERT_INT_EQ(redis_batch_count(b), 4);
  ASSERT_INT_EQ(redis_batch_blocking(b), 0);
  ASSERT_INT_EQ(redis_send(c, b, 5000, on_done, &r, NULL), 0);
  ASSERT_INT_EQ(redis_batch_count(b), 0);          /* moved out */
  ASSERT(wait_for(&r.called, 1, 5000));
  ASSERT_INT_EQ(r.n, 4);
  ASSERT(reply_is(r.r[0], REDIS_REPLY_STATUS, "OK"));
  ASSERT_INT_EQ(r.r[1]->integer, 2);
  ASSERT(reply_is(r.r[2], REDIS_REPLY_ERROR, NULL));
  ASSERT(strstr(r.r[2]->str, "WRONGTYPE"));
  ASSERT(reply_is(r.r[3], REDIS_REPLY_STRING, "2"));
  /* MULTI ... EXEC inside one batch */
  rec_clear(&r);
  add(b, "MULTI");
  add(b, "INCR t");
  add(b, "INCR t");
  add(b, "EXEC");
  ASSERT_INT_EQ(redis_send(c, b, 5000, on_done, &r, NULL), 0);
  ASSERT(wait_for(&r.called, 1, 5000));
  ASSERT_INT_EQ(r.n, 4);
  ASSERT(reply_is(r.r[1], REDIS_REPLY_STATUS, "QUEUED"));
  ASSERT(r.r[3]->type == REDIS_REPLY_ARRAY && r.r[3]->elements == 2);
  ASSERT_INT_EQ(r.r[3]->element[1]->integer, 2);
  rec_clear(&r);
  /* refusals */
  add(b, "MULTI");
  add(b, "INCR t");
  add(b, "BRPOP l 1");
  ASSERT_INT_EQ(redis_batch_blocking(b), 1);
  ASSERT_INT_EQ(redis_send(c, b, 5000, on_done, &r, NULL), REDIS_E_REFUSED);
  ASSERT(strstr(redis_batch_error(b), "EXEC"));
  ASSERT_INT_EQ(redis_batch_count(b), 3);         /* unchanged */
  redis_batch_free(b);
  b = redis_batch_new();
  add(b, "EXEC");
  ASSERT_INT_EQ(redis_send(c, b, 5000, on_done, &r, NULL), REDIS_E_REFUSED);
  redis_batch_free(b);
  b = redis_batch_new();
  ASSERT_INT_EQ(redis_send(c, b, 5000, on_done, &r, NULL), REDIS_E_INVAL);
  const char *sub[] = {"subscribe", "ch"}, *rep[] = {"CLIENT", "reply", "off"},
             *quit[] = {"QUIT"};
  ASSERT_INT_EQ(redis_batch_add(b, 2, sub, NULL), REDIS_E_REFUSED);
  ASSERT_INT_EQ(redis_batch_add(b, 3, rep, NULL), REDIS_E_REFUSED);
  ASSERT_INT_EQ(redis_batch_add(b, 1, quit, NULL), REDIS_E_REFUSED);
  ASSERT_INT_EQ(redis_batch_add(b, 0, quit, NULL), REDIS_E_INVAL);
  ASSERT_INT_EQ(redis_batch_count(b), 0);
  redis_batch_free(b);
  ASSERT(reply_is(call(c, "GET a", &r), REDIS_REPLY_STRING, "2"));   /* still in step */
  ASSERT_INT_EQ(r.called, 1);
  rec_clear(&r);
  client_done(c);
}

/* ---- closing ---- */

static struct redis_client *closing_client;
static int send_in_close_rc = 1;

static void on_done_resend(void *ud, struct redis_done *d) {
  on_done(ud, d);
  const char *argv[] = {"PING"};
  send_in_close_rc = redis_command(closing_client, 1, argv, NULL, 100, on_done, ud, NULL);
}

TEST(close_with_pending) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  static struct rec r[52];
  ASSERT(reply_is(call(c, "PING", &r[0]), REDIS_REPLY_STATUS, "PONG"));
  rec_clear(&r[0]);
  kill(srv.pid, SIGSTOP);
  for (int i = 0; i < 50; i++) ASSERT_INT_EQ(issue(c, "GET k", 0, &r[i], NULL), 0);
  ASSERT_INT_EQ(issue(c, "BLPOP q 0", 0, &r[50], NULL), 0);
  const char *argv[] = {"GET", "k"};
  closing_client = c;
  ASSERT_INT_EQ(redis_command(c, 2, argv, NULL, 0, on_done_resend, &r[51], NULL), 0);
  cur = c;
  want_in_flight = 20;
  ASSERT(eventually(in_flight_reached, 5000));    /* some written, some maybe not */
  redis_client_close(c, on_closed, NULL);
  for (int i = 0; i < 52; i++) {                  /* all told before close returned */
    ASSERT_INT_EQ(r[i].called, 1);
    ASSERT_INT_EQ(r[i].err, REDIS_E_CLOSED);
  }
  ASSERT_INT_EQ(send_in_close_rc, REDIS_E_CLOSED);
  ASSERT(wait_for(&closed, 1, 5000));
  kill(srv.pid, SIGCONT);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_INT_EQ(uv_loop_close(&loop), 0);
}

/* ---- pub/sub: a subscription's replies stream to its callback ---- */

struct subrec {
  size_t got, ended;
  int err;
  char kinds[16][16];     /* first element of each reply, in order */
  char last_data[64];
};

static void on_sub(void *ud, int err, const char *msg, redisReply *r) {
  struct subrec *s = ud;
  if (err) { s->ended++; s->err = err; return; }
  if (s->got < 16 && r->type == REDIS_REPLY_ARRAY && r->elements >= 1)
    snprintf(s->kinds[s->got], sizeof s->kinds[0], "%s", r->element[0]->str);
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING)
    snprintf(s->last_data, sizeof s->last_data, "%s", r->element[2]->str);
  s->got++;
  freeReplyObject(r);
}

static int no_subscriber(void) { return raw_int("PUBLISH ch again") == 0; }

TEST(pubsub_stream) {
  server_start(NULL);
  loop_init();
  struct redis_client *c = client_tcp("", 0);
  static struct rec r;
  struct subrec s1 = {0}, s2 = {0};
  struct redis_sub *a, *b;
  ASSERT_INT_EQ(redis_sub_open(c, on_sub, &s1, &a), 0);
  const char *sub[] = {"SUBSCRIBE", "ch"}, *ping[] = {"PING"}, *get[] = {"GET", "k"};
  ASSERT_INT_EQ(redis_sub_command(a, 2, sub, NULL), 0);
  ASSERT_INT_EQ(redis_sub_command(a, 1, ping, NULL), 0);
  ASSERT_INT_EQ(redis_sub_command(a, 2, get, NULL), REDIS_E_REFUSED);
  ASSERT(wait_for(&s1.got, 2, 5000));                 /* confirmation, then pong */
  ASSERT_STR_EQ(s1.kinds[0], "subscribe");
  ASSERT_STR_EQ(s1.kinds[1], "pong");
  ASSERT_INT_EQ(clients_with(" sub=1 "), 1);          /* its own connection */
  ASSERT(reply_is(call(c, "PUBLISH ch hello", &r), REDIS_REPLY_INTEGER, NULL));
  ASSERT_INT_EQ(r.r[0]->integer, 1);
  ASSERT(wait_for(&s1.got, 3, 5000));
  ASSERT_STR_EQ(s1.kinds[2], "message");
  ASSERT_STR_EQ(s1.last_data, "hello");
  /* closed by its owner: no callback, the server sees it go */
  redis_sub_close(a);
  ASSERT_INT_EQ(s1.ended, 0);
  ASSERT(eventually(no_subscriber, 5000));
  ASSERT_INT_EQ(s1.ended, 0);
  /* killed by the server: the end comes once, then commands fail */
  ASSERT_INT_EQ(redis_sub_open(c, on_sub, &s2, &b), 0);
  ASSERT_INT_EQ(redis_sub_command(b, 2, sub, NULL), 0);
  ASSERT(wait_for(&s2.got, 1, 5000));
  ASSERT(raw_int("CLIENT KILL TYPE pubsub") >= 1);
  ASSERT(wait_for(&s2.ended, 1, 5000));
  ASSERT_INT_EQ(s2.err, REDIS_E_CONN);
  ASSERT_INT_EQ(redis_sub_command(b, 2, sub, NULL), REDIS_E_CONN);
  /* the client closes with a live subscription: its end comes (CLOSED);
   * closing the dead subscription after the client is gone is safe */
  struct subrec s3 = {0};
  struct redis_sub *d;
  ASSERT_INT_EQ(redis_sub_open(c, on_sub, &s3, &d), 0);
  ASSERT_INT_EQ(redis_sub_command(d, 2, sub, NULL), 0);
  ASSERT(wait_for(&s3.got, 1, 5000));
  rec_clear(&r);
  client_done(c);
  ASSERT_INT_EQ(s3.ended, 1);
  ASSERT_INT_EQ(s3.err, REDIS_E_CLOSED);
  redis_sub_close(b);
  redis_sub_close(d);
}

TEST_LIST(T(url_parse), T(reply_types), T(pipelining_one_connection),
          T(pipelining_writes_before_replies), T(hostile_garbage), T(hostile_close_mid_reply),
          T(hostile_extra_reply), T(hostile_deep_nesting), T(hostile_garbage_at_login),
          T(auth_password), T(select_db), T(unix_socket), T(blocking_own_connection),
          T(cancel_blocking), T(blocking_limit), T(cancel_shared_keeps_sync), T(timeout_keeps_sync),
          T(stall_resets_connection), T(paused_redis_times_out),
          T(killed_mid_traffic_then_restarted), T(down_at_start), T(batches),
          T(close_with_pending), T(pubsub_stream));
