/* redis: connections on a uv loop, pipelined commands, a blocking pool,
 * deadlines, reconnects (the contract is in the header). */
#include "net/redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/redis_int.h"

enum { C_CONNECTING, C_LOGIN, C_READY, C_CLOSED };
enum { W_NONE, W_OUT, W_FIFO };
#define NO_HEAP ((size_t)-1)

struct cmd_list { struct redis_cmd *head, *tail; size_t n; };

struct redis_cmd {
  struct redis_client *c;
  struct rconn *conn;           /* the connection whose list holds it */
  struct redis_cmd *prev, *next;
  int where;                    /* W_OUT: unwritten; W_FIFO: replies awaited */
  redis_cb cb;                  /* NULL once completed, timed out or cancelled */
  void *ud;
  int timed_out;                /* replies still to drop after a timeout */
  char *buf;                    /* the commands until written */
  size_t len;
  size_t n, got;                /* replies expected, received */
  redisReply **replies;
  uint64_t deadline;            /* uv_now ms; 0: none */
  size_t heap_idx;
  unsigned timeout_ms;
};

/* One physical connection: the shared one or a blocking one. */
struct rconn {
  struct redis_client *c;
  union { uv_handle_t h; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } io;
  uv_timer_t timer;             /* connect/login deadline, then the stall watch */
  uv_connect_t connect_req;
  struct resolve *resolve;      /* a uv_getaddrinfo under way */
  redisReader *reader;
  int state;
  int blocking, busy;           /* a blocking-pool connection; carrying a command */
  int login_left;
  const char *login_step[3];    /* which login command each reply answers */
  struct cmd_list out, fifo;
  size_t overdue;               /* timed-out commands still in fifo */
  int handles;                  /* handles not yet closed */
  struct rconn *prev, *next;    /* in the client's blocking list */
};

struct resolve { uv_getaddrinfo_t req; struct rconn *conn; };
struct wbatch { uv_write_t req; struct rconn *conn; size_t n; char *bufs[]; };

struct redis_client {
  uv_loop_t *loop;
  struct redis_url url;
  struct redis_options o;
  char where[300];              /* the URL without credentials */
  char err[512];                /* the last failure */
  struct rconn *shared;         /* NULL while backing off */
  struct rconn *bconns;         /* blocking connections, busy and idle */
  size_t bbusy, bidle;
  unsigned backoff;             /* the last delay; 0 after a login */
  uv_timer_t backoff_timer, deadline_timer;
  uv_prepare_t flush;           /* writes the shared queue once per iteration */
  struct redis_cmd **heap;      /* commands by deadline */
  size_t heap_n, heap_cap;
  uint64_t armed;               /* deadline the timer is set for; 0: none */
  uint64_t connects;
  int closing, live;            /* live: own handles + connections not yet freed */
  void (*closed_cb)(void *);
  void *closed_ud;
  char rbuf[65536];
};

static struct rconn *conn_open(struct redis_client *c, int blocking);
static void conn_fail(struct rconn *k, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_flush(struct rconn *k);
static void back_off(struct redis_client *c);

/* ---- lists and the deadline heap ---- */

static void list_push(struct cmd_list *l, struct redis_cmd *m) {
  m->next = NULL;
  m->prev = l->tail;
  if (l->tail) l->tail->next = m; else l->head = m;
  l->tail = m;
  l->n++;
}

static void list_remove(struct cmd_list *l, struct redis_cmd *m) {
  if (m->prev) m->prev->next = m->next; else l->head = m->next;
  if (m->next) m->next->prev = m->prev; else l->tail = m->prev;
  m->prev = m->next = NULL;
  l->n--;
}

static int heap_less(struct redis_client *c, size_t a, size_t b) {
  return c->heap[a]->deadline < c->heap[b]->deadline;
}

static void heap_swap(struct redis_client *c, size_t a, size_t b) {
  struct redis_cmd *t = c->heap[a];
  c->heap[a] = c->heap[b];
  c->heap[b] = t;
  c->heap[a]->heap_idx = a;
  c->heap[b]->heap_idx = b;
}

static void heap_fix(struct redis_client *c, size_t i) {
  while (i > 0 && heap_less(c, i, (i - 1) / 2)) {
    heap_swap(c, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < c->heap_n && heap_less(c, l, m)) m = l;
    if (r < c->heap_n && heap_less(c, r, m)) m = r;
    if (m == i) return;
    heap_swap(c, i, m);
    i = m;
  }
}

static void on_deadline(uv_timer_t *t);

static void heap_arm(struct redis_client *c) {
  uint64_t top = c->heap_n ? c->heap[0]->deadline : 0;
  if (top == c->armed || c->closing) return;
  c->armed = top;
  if (!top) { uv_timer_stop(&c->deadline_timer); return; }
  uint64_t now = uv_now(c->loop);
  uv_timer_start(&c->deadline_timer, on_deadline, top > now ? top - now : 0, 0);
}

static int heap_add(struct redis_client *c, struct redis_cmd *m) {
  if (c->heap_n == c->heap_cap) {
    size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
    struct redis_cmd **h = realloc(c->heap, cap * sizeof *h);
    if (!h) return REDIS_E_NOMEM;
    c->heap = h;
    c->heap_cap = cap;
  }
  m->heap_idx = c->heap_n;
  c->heap[c->heap_n++] = m;
  heap_fix(c, m->heap_idx);
  heap_arm(c);
  return 0;
}

static void heap_del(struct redis_client *c, struct redis_cmd *m) {
  size_t i = m->heap_idx;
  if (i == NO_HEAP) return;
  m->heap_idx = NO_HEAP;
  if (i != --c->heap_n) {
    c->heap[i] = c->heap[c->heap_n];
    c->heap[i]->heap_idx = i;
    heap_fix(c, i);
  }
  heap_arm(c);
}

/* ---- commands ---- */

static void cmd_free(struct redis_cmd *m) {
  for (size_t i = 0; i < m->got && i < m->n; i++)
    if (m->replies[i]) freeReplyObject(m->replies[i]);
  free(m->replies);
  free(m->buf);
  free(m);
}

/* Detaches m (out of the heap, its cb cleared) and tells its waiter. */
static void cmd_finish(struct redis_cmd *m, int err, const char *msg) {
  redis_cb cb = m->cb;
  m->cb = NULL;
  heap_del(m->c, m);
  if (!cb) return;
  struct redis_done d = {err, msg, err ? 0 : m->n, err ? NULL : m->replies};
  cb(m->ud, &d);
}

static void fail_list(struct cmd_list *l, int err, const char *msg) {
  struct redis_cmd *m;
  while ((m = l->head)) {
    list_remove(l, m);
    m->where = W_NONE;
    cmd_finish(m, err, msg);
    cmd_free(m);
  }
}

/* ---- connections ---- */

static void client_unlive(struct redis_client *c) {
  if (--c->live > 0 || !c->closing) return;
  void (*cb)(void *) = c->closed_cb;
  void *ud = c->closed_ud;
  free(c->heap);
  free(c);
  if (cb) cb(ud);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  struct rconn *k = h->data;
  if (--k->handles > 0) return;
  struct redis_client *c = k->c;
  redisReaderFree(k->reader);
  free(k);
  client_unlive(c);
}

static void on_backoff(uv_timer_t *t);

/* The shared connection's attempt failed: try again after a delay. */
static void back_off(struct redis_client *c) {
  unsigned d = c->backoff ? c->backoff * 2 : c->o.backoff_min_ms;
  c->backoff = d > c->o.backoff_max_ms ? c->o.backoff_max_ms : d;
  uv_timer_start(&c->backoff_timer, on_backoff, c->backoff, 0);
}

static void on_backoff(uv_timer_t *t) {
  struct redis_client *c = t->data;
  if (!c->closing && !c->shared && !conn_open(c, 0)) back_off(c);
}

/* Takes a blocking connection out of the pool bookkeeping. */
static void bconn_unlink(struct rconn *k) {
  struct redis_client *c = k->c;
  if (k->prev) k->prev->next = k->next; else c->bconns = k->next;
  if (k->next) k->next->prev = k->prev;
  k->prev = k->next = NULL;
  if (k->busy) c->bbusy--; else if (k->state == C_READY) c->bidle--;
  k->busy = 0;
}

/* Closes k; its commands fail with err (a silent close when none wait).
 * The shared connection is reopened: at once if it was logged in, else
 * after a backoff; its unwritten commands then move to the new attempt. */
static void conn_fail(struct rconn *k, int err, const char *fmt, ...) {
  if (k->state == C_CLOSED) return;
  struct redis_client *c = k->c;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int was_ready = k->state == C_READY;
  if (k->blocking) bconn_unlink(k);
  k->state = C_CLOSED;
  if (k->resolve) { k->resolve->conn = NULL; uv_cancel((uv_req_t *)&k->resolve->req); }
  uv_close(&k->io.h, on_conn_handle_closed);
  uv_close((uv_handle_t *)&k->timer, on_conn_handle_closed);
  struct cmd_list fifo = k->fifo, out = k->out;
  memset(&k->fifo, 0, sizeof k->fifo);
  memset(&k->out, 0, sizeof k->out);
  if (k == c->shared) {
    c->shared = NULL;
    snprintf(c->err, sizeof c->err, "%s", msg);
    /* conn_open sets c->shared, or backs off itself if it fails at once */
    if (!c->closing && (!was_ready || !conn_open(c, 0))) back_off(c);
    if (c->shared) {
      c->shared->out = out;        /* never written: safe to send on the next one */
      for (struct redis_cmd *m = out.head; m; m = m->next) m->conn = c->shared;
      memset(&out, 0, sizeof out);
    }
  }
  fail_list(&fifo, err, msg);
  fail_list(&out, err, msg);
}

static void on_connect_timeout(uv_timer_t *t) {
  struct rconn *k = t->data;
  conn_fail(k, REDIS_E_CONN, "%s %s: timed out after %u ms",
            k->state == C_LOGIN ? "login to" : "connect", k->c->where,
            k->c->o.connect_timeout_ms);
}

static void on_stall(uv_timer_t *t) {
  struct rconn *k = t->data;
  conn_fail(k, REDIS_E_CONN, "%s: no reply for %u ms after a timeout; connection reset",
            k->c->where, k->c->o.stall_ms);
}

static void on_written(uv_write_t *req, int status) {
  struct wbatch *w = req->data;
  for (size_t i = 0; i < w->n; i++) free(w->bufs[i]);
  struct rconn *k = w->conn;
  free(w);
  if (status < 0 && status != UV_ECANCELED)
    conn_fail(k, REDIS_E_CONN, "write to %s: %s", k->c->where, uv_strerror(status));
}

/* Writes bufs[0..n) (taken) in one uv_write. */
static int conn_write(struct rconn *k, char **bufs, const size_t *lens, size_t n) {
  struct wbatch *w = malloc(sizeof *w + n * sizeof(char *));
  uv_buf_t stackb[32] = {{0}}, *ub = n <= 32 ? stackb : malloc(n * sizeof *ub);
  if (!w || !ub) {
    free(w);
    if (ub != stackb) free(ub);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    return UV_ENOMEM;
  }
  w->conn = k;
  w->n = n;
  w->req.data = w;
  for (size_t i = 0; i < n; i++) {
    w->bufs[i] = bufs[i];
    ub[i] = uv_buf_init(bufs[i], (unsigned)lens[i]);
  }
  int rc = uv_write(&w->req, &k->io.s, ub, (unsigned)n, on_written);
  if (ub != stackb) free(ub);
  if (rc < 0) {
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(w);
  }
  return rc;
}

/* Writes every unwritten command of a logged-in connection. */
static void conn_flush(struct rconn *k) {
  size_t n = k->out.n;
  if (k->state != C_READY || n == 0) return;
  char **bufs = malloc(n * sizeof *bufs);
  size_t *lens = malloc(n * sizeof *lens);
  if (!bufs || !lens) {
    free(bufs);
    free(lens);
    conn_fail(k, REDIS_E_CONN, "%s: out of memory writing commands", k->c->where);
    return;
  }
  size_t i = 0;
  struct redis_cmd *m;
  while ((m = k->out.head)) {
    list_remove(&k->out, m);
    bufs[i] = m->buf;
    lens[i++] = m->len;
    m->buf = NULL;
    m->where = W_FIFO;
    list_push(&k->fifo, m);
  }
  int rc = conn_write(k, bufs, lens, n);
  free(bufs);
  free(lens);
  if (rc < 0) conn_fail(k, REDIS_E_CONN, "write to %s: %s", k->c->where, uv_strerror(rc));
}

static void on_flush(uv_prepare_t *p) {
  struct redis_client *c = p->data;
  uv_prepare_stop(p);
  if (c->shared) conn_flush(c->shared);
}

/* A blocking connection whose command is done: back to the pool, or closed. */
static void bconn_release(struct rconn *k) {
  struct redis_client *c = k->c;
  k->busy = 0;
  c->bbusy--;
  c->bidle++;
  if (c->closing || c->bidle > c->o.max_idle_blocking)
    conn_fail(k, REDIS_E_CLOSED, "idle");     /* no command: a quiet close */
}

static void login_done(struct rconn *k) {
  struct redis_client *c = k->c;
  k->state = C_READY;
  uv_timer_stop(&k->timer);
  c->connects++;
  if (k->blocking) {
    if (!k->busy) c->bidle++;
  } else {
    c->backoff = 0;
    c->err[0] = '\0';
  }
  conn_flush(k);
}

static void on_reply(struct rconn *k, redisReply *r) {
  struct redis_client *c = k->c;
  if (k->state == C_LOGIN) {
    const char *step = k->login_step[0];
    memmove(k->login_step, k->login_step + 1, sizeof k->login_step - sizeof k->login_step[0]);
    if (r->type == REDIS_REPLY_ERROR) {
      conn_fail(k, REDIS_E_AUTH, "%s refused by %s: %.*s", step, c->where,
                (int)(r->len > 200 ? 200 : r->len), r->str);
      freeReplyObject(r);
      return;
    }
    freeReplyObject(r);
    if (--k->login_left == 0) login_done(k);
    return;
  }
  struct redis_cmd *m = k->fifo.head;
  if (!m) {
    freeReplyObject(r);
    conn_fail(k, REDIS_E_PROTOCOL, "protocol error from %s: a reply no command asked for",
              c->where);
    return;
  }
  if (m->cb) m->replies[m->got] = r; else freeReplyObject(r);   /* dropped */
  if (++m->got < m->n) return;
  list_remove(&k->fifo, m);
  m->where = W_NONE;
  if (m->timed_out && --k->overdue == 0) uv_timer_stop(&k->timer);
  if (k->blocking) bconn_release(k);
  cmd_finish(m, 0, NULL);
  cmd_free(m);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct rconn *k = h->data;
  *buf = uv_buf_init(k->c->rbuf, sizeof k->c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct rconn *k = s->data;
  if (nread == 0 || k->state == C_CLOSED) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      conn_fail(k, REDIS_E_CONN, "%s closed the connection", k->c->where);
    else
      conn_fail(k, REDIS_E_CONN, "read from %s: %s", k->c->where, uv_strerror((int)nread));
    return;
  }
  if (k->overdue) uv_timer_start(&k->timer, on_stall, k->c->o.stall_ms, 0);
  if (redisReaderFeed(k->reader, buf->base, (size_t)nread) != REDIS_OK) {
    conn_fail(k, REDIS_E_PROTOCOL, "protocol error from %s: %s", k->c->where,
              k->reader->errstr);
    return;
  }
  while (k->state != C_CLOSED && k->state != C_CONNECTING) {
    void *r = NULL;
    if (redisReaderGetReply(k->reader, &r) != REDIS_OK) {
      conn_fail(k, REDIS_E_PROTOCOL, "protocol error from %s: %s", k->c->where,
                k->reader->errstr);
      return;
    }
    if (!r) return;
    on_reply(k, r);
  }
}

/* Connected: log in (AUTH, SELECT, or a PING to see the server answer). */
static void on_connect(uv_connect_t *req, int status) {
  struct rconn *k = req->data;
  struct redis_client *c = k->c;
  if (status == UV_ECANCELED || k->state == C_CLOSED) return;
  if (status < 0) {
    conn_fail(k, REDIS_E_CONN, "connect %s: %s", c->where, uv_strerror(status));
    return;
  }
  if (!c->url.is_unix) {
    uv_tcp_nodelay(&k->io.tcp, 1);
    uv_tcp_keepalive(&k->io.tcp, 1, 60);
  }
  char *bufs[3];
  size_t lens[3];
  int n = 0;
  char dbs[16];
  const char *argv[3];
  if (c->url.has_password) {
    int argc = 0;
    argv[argc++] = "AUTH";
    if (c->url.user[0]) argv[argc++] = c->url.user;
    argv[argc++] = c->url.password;
    k->login_step[n] = "AUTH";
    long long len = redisFormatCommandArgv(&bufs[n], argc, argv, NULL);
    if (len >= 0) lens[n++] = (size_t)len;
  }
  if (c->url.db != 0) {
    snprintf(dbs, sizeof dbs, "%d", c->url.db);
    argv[0] = "SELECT";
    argv[1] = dbs;
    k->login_step[n] = "SELECT";
    long long len = redisFormatCommandArgv(&bufs[n], 2, argv, NULL);
    if (len >= 0) lens[n++] = (size_t)len;
  }
  if (!c->url.has_password && c->url.db == 0) {
    argv[0] = "PING";
    k->login_step[n] = "PING";
    long long len = redisFormatCommandArgv(&bufs[n], 1, argv, NULL);
    if (len >= 0) lens[n++] = (size_t)len;
  }
  k->login_left = n;
  k->state = C_LOGIN;
  int rc = uv_read_start(&k->io.s, on_alloc, on_read);
  if (rc == 0) rc = conn_write(k, bufs, lens, (size_t)n);
  else for (int i = 0; i < n; i++) free(bufs[i]);
  if (rc < 0) conn_fail(k, REDIS_E_CONN, "connect %s: %s", c->where, uv_strerror(rc));
}

static void connect_addr(struct rconn *k, const struct sockaddr *sa) {
  int rc = uv_tcp_connect(&k->connect_req, &k->io.tcp, sa, on_connect);
  if (rc < 0) conn_fail(k, REDIS_E_CONN, "connect %s: %s", k->c->where, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct resolve *rs = req->data;
  struct rconn *k = rs->conn;
  free(rs);
  if (!k) { uv_freeaddrinfo(res); return; }
  k->resolve = NULL;
  if (status < 0) {
    conn_fail(k, REDIS_E_CONN, "resolve %s: %s", k->c->where, uv_strerror(status));
  } else {
    struct addrinfo *a = res;
    for (struct addrinfo *p = res; p; p = p->ai_next)
      if (p->ai_family == AF_INET) { a = p; break; }
    connect_addr(k, a->ai_addr);
  }
  uv_freeaddrinfo(res);
}

/* A new connection, connecting (state C_CONNECTING); NULL: no memory. */
static struct rconn *conn_open(struct redis_client *c, int blocking) {
  struct rconn *k = calloc(1, sizeof *k);
  if (!k || !(k->reader = redisReaderCreate())) { free(k); return NULL; }
  k->c = c;
  k->blocking = blocking;
  k->state = C_CONNECTING;
  if (c->url.is_unix) uv_pipe_init(c->loop, &k->io.pipe, 0);
  else uv_tcp_init(c->loop, &k->io.tcp);
  uv_timer_init(c->loop, &k->timer);
  k->io.h.data = k->timer.data = k->connect_req.data = k;
  k->handles = 2;
  c->live++;
  if (!blocking) c->shared = k;
  if (blocking) {
    k->next = c->bconns;
    if (k->next) k->next->prev = k;
    c->bconns = k;
  }
  uv_timer_start(&k->timer, on_connect_timeout, c->o.connect_timeout_ms, 0);
  if (c->url.is_unix) {
    uv_pipe_connect(&k->connect_req, &k->io.pipe, c->url.path, on_connect);
    return k;
  }
  union { struct sockaddr sa; struct sockaddr_in in4; struct sockaddr_in6 in6; } addr;
  if (uv_ip4_addr(c->url.host, c->url.port, &addr.in4) == 0 ||
      uv_ip6_addr(c->url.host, c->url.port, &addr.in6) == 0) {
    connect_addr(k, &addr.sa);
    return k;
  }
  struct resolve *rs = malloc(sizeof *rs);
  char port[8];
  snprintf(port, sizeof port, "%d", c->url.port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = rs ? 0 : UV_ENOMEM;
  if (rs) {
    rs->conn = k;
    rs->req.data = rs;
    k->resolve = rs;
    rc = uv_getaddrinfo(c->loop, &rs->req, on_resolved, c->url.host, port, &hints);
    if (rc < 0) { k->resolve = NULL; free(rs); }
  }
  if (rc < 0) conn_fail(k, REDIS_E_CONN, "resolve %s: %s", c->where, uv_strerror(rc));
  return k;
}

/* ---- the client ---- */

struct redis_client *redis_client_new(uv_loop_t *loop, const struct redis_url *url,
                                      const struct redis_options *opts) {
  struct redis_client *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->url = *url;
  if (opts) c->o = *opts;
  if (!c->o.connect_timeout_ms) c->o.connect_timeout_ms = 2000;
  if (!c->o.stall_ms) c->o.stall_ms = 1000;
  if (!c->o.backoff_min_ms) c->o.backoff_min_ms = 50;
  if (!c->o.backoff_max_ms) c->o.backoff_max_ms = 2000;
  if (!c->o.max_blocking) c->o.max_blocking = 64;
  if (!c->o.max_idle_blocking) c->o.max_idle_blocking = 4;
  redis_url_describe(url, c->where, sizeof c->where);
  uv_timer_init(loop, &c->backoff_timer);
  uv_timer_init(loop, &c->deadline_timer);
  uv_prepare_init(loop, &c->flush);
  c->backoff_timer.data = c->deadline_timer.data = c->flush.data = c;
  c->live = 3;
  if (!conn_open(c, 0)) {
    snprintf(c->err, sizeof c->err, "%s: out of memory", c->where);
    back_off(c);
  }
  return c;
}

static void on_client_handle_closed(uv_handle_t *h) { client_unlive(h->data); }

void redis_client_close(struct redis_client *c, void (*closed_cb)(void *), void *ud) {
  if (c->closing) return;
  c->closing = 1;
  c->closed_cb = closed_cb;
  c->closed_ud = ud;
  uv_close((uv_handle_t *)&c->backoff_timer, on_client_handle_closed);
  uv_close((uv_handle_t *)&c->deadline_timer, on_client_handle_closed);
  uv_close((uv_handle_t *)&c->flush, on_client_handle_closed);
  if (c->shared) conn_fail(c->shared, REDIS_E_CLOSED, "%s: client closed", c->where);
  while (c->bconns) conn_fail(c->bconns, REDIS_E_CLOSED, "%s: client closed", c->where);
}

const char *redis_client_error(const struct redis_client *c) { return c->err; }

void redis_client_stats(const struct redis_client *c, struct redis_stats *st) {
  memset(st, 0, sizeof *st);
  st->connected = c->shared && c->shared->state == C_READY;
  if (c->shared) {
    st->queued = c->shared->out.n;
    st->in_flight = c->shared->fifo.n;
  }
  for (const struct rconn *k = c->bconns; k; k = k->next) {
    st->queued += k->out.n;
    st->in_flight += k->fifo.n;
  }
  st->blocking_busy = c->bbusy;
  st->blocking_idle = c->bidle;
  st->connects = c->connects;
}

/* ---- sending, deadlines, cancelling ---- */

/* A blocking connection for one command: an idle one or a new one. */
static struct rconn *bconn_take(struct redis_client *c) {
  struct rconn *k;
  for (k = c->bconns; k; k = k->next)
    if (!k->busy && k->state == C_READY) break;
  if (k) c->bidle--;
  else if (!(k = conn_open(c, 1))) return NULL;
  k->busy = 1;
  c->bbusy++;
  return k;
}

int redis_send(struct redis_client *c, struct redis_batch *b, unsigned timeout_ms,
               redis_cb cb, void *ud, struct redis_cmd **out) {
  int rc = redis_batch_check(b);
  if (rc < 0) return rc;
  if (c->closing) return REDIS_E_CLOSED;
  if (!c->shared) return REDIS_E_UNAVAILABLE;
  if (b->blocking && c->bbusy >= c->o.max_blocking) {
    snprintf(b->why, sizeof b->why, "%u blocking commands already in flight",
             c->o.max_blocking);
    return REDIS_E_BUSY;
  }
  struct redis_cmd *m = calloc(1, sizeof *m);
  if (!m || !(m->replies = calloc(b->n, sizeof *m->replies))) { free(m); return REDIS_E_NOMEM; }
  m->c = c;
  m->cb = cb;
  m->ud = ud;
  m->n = b->n;
  m->heap_idx = NO_HEAP;
  m->timeout_ms = timeout_ms;
  if (timeout_ms) {
    m->deadline = uv_now(c->loop) + timeout_ms;
    if (heap_add(c, m) < 0) { cmd_free(m); return REDIS_E_NOMEM; }
  }
  struct rconn *k = b->blocking ? bconn_take(c) : c->shared;
  if (!k) { heap_del(c, m); cmd_free(m); return REDIS_E_NOMEM; }
  m->buf = b->buf;
  m->len = b->len;
  int blocking = b->blocking;
  memset(b, 0, sizeof *b);
  m->conn = k;
  m->where = W_OUT;
  list_push(&k->out, m);
  if (k->state == C_READY) {
    if (blocking) conn_flush(k);
    else if (!uv_is_active((uv_handle_t *)&c->flush)) uv_prepare_start(&c->flush, on_flush);
  }
  if (out) *out = m;
  return 0;
}

int redis_command(struct redis_client *c, int argc, const char *const *argv,
                  const size_t *argvlen, unsigned timeout_ms, redis_cb cb, void *ud,
                  struct redis_cmd **out) {
  struct redis_batch *b = redis_batch_new();
  if (!b) return REDIS_E_NOMEM;
  int rc = redis_batch_add(b, argc, argv, argvlen);
  if (rc == 0) rc = redis_send(c, b, timeout_ms, cb, ud, out);
  redis_batch_free(b);
  return rc;
}

/* Drops m's waiter (timed_out: for a timeout).  Unwritten: freed.  On a
 * blocking connection: the connection is closed.  Written on the shared
 * one: its replies will be read and dropped. */
static void cmd_abandon(struct redis_cmd *m, int timed_out) {
  struct rconn *k = m->conn;
  m->cb = NULL;
  heap_del(m->c, m);
  for (size_t i = 0; i < m->got; i++) {
    if (m->replies[i]) freeReplyObject(m->replies[i]);
    m->replies[i] = NULL;
  }
  if (k->blocking) {
    conn_fail(k, REDIS_E_CLOSED, "abandoned");   /* m is silent now: freed there */
  } else if (m->where == W_OUT) {
    list_remove(&k->out, m);
    cmd_free(m);
  } else if (timed_out) {
    m->timed_out = 1;
    if (k->overdue++ == 0) uv_timer_start(&k->timer, on_stall, m->c->o.stall_ms, 0);
  }
}

static void on_deadline(uv_timer_t *t) {
  struct redis_client *c = t->data;
  c->armed = 0;
  uint64_t now = uv_now(c->loop);
  while (c->heap_n && c->heap[0]->deadline <= now && !c->closing) {
    struct redis_cmd *m = c->heap[0];
    redis_cb cb = m->cb;
    void *ud = m->ud;
    unsigned ms = m->timeout_ms;
    cmd_abandon(m, 1);
    char msg[400];
    snprintf(msg, sizeof msg, "%s: no reply within %u ms", c->where, ms);
    struct redis_done d = {REDIS_E_TIMEOUT, msg, 0, NULL};
    if (cb) cb(ud, &d);
  }
  heap_arm(c);
}

void redis_cancel(struct redis_cmd *m) {
  if (m->cb) cmd_abandon(m, 0);
}
