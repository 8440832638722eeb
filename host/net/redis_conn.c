/* redis_conn: one connection: connect (uv_getaddrinfo, TCP or unix), log
 * in, write batches, read and match replies, fail and reconnect. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/redis.h"
#include "net/redis_int.h"

struct resolve { uv_getaddrinfo_t req; struct rconn *conn; };
struct wbatch { uv_write_t req; struct rconn *conn; size_t n; char *bufs[]; };

static void on_backoff(uv_timer_t *t);

/* One of the client's handles or connections is gone; the last one of a
 * closing client frees it. */
void rclient_unlive(struct redis_client *c) {
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
  rclient_unlive(c);
}

/* The shared connection's attempt failed: try again after a delay. */
void rclient_back_off(struct redis_client *c) {
  unsigned d = c->backoff ? c->backoff * 2 : c->o.backoff_min_ms;
  c->backoff = d > c->o.backoff_max_ms ? c->o.backoff_max_ms : d;
  uv_timer_start(&c->backoff_timer, on_backoff, c->backoff, 0);
}

static void on_backoff(uv_timer_t *t) {
  struct redis_client *c = t->data;
  if (!c->closing && !c->shared && !rconn_open(c, 0)) rclient_back_off(c);
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
void rconn_fail(struct rconn *k, int err, const char *fmt, ...) {
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
  if (err != REDIS_E_CLOSED) snprintf(c->err, sizeof c->err, "%s", msg);
  if (k == c->shared) {
    c->shared = NULL;
    /* rconn_open sets c->shared, or backs off itself if it fails at once */
    if (!c->closing && (!was_ready || !rconn_open(c, 0))) rclient_back_off(c);
    if (c->shared) {
      c->shared->out = out;        /* never written: safe to send on the next one */
      for (struct redis_cmd *m = out.head; m; m = m->next) m->conn = c->shared;
      memset(&out, 0, sizeof out);
    }
  }
  rcmd_fail_list(&fifo, err, msg);
  rcmd_fail_list(&out, err, msg);
  if (k->sub) rsub_ended(k, err, msg);
}

static void on_connect_timeout(uv_timer_t *t) {
  struct rconn *k = t->data;
  rconn_fail(k, REDIS_E_CONN, "%s %s: timed out after %u ms",
            k->state == C_LOGIN ? "login to" : "connect", k->c->where,
            k->c->o.connect_timeout_ms);
}

static void on_stall(uv_timer_t *t) {
  struct rconn *k = t->data;
  rconn_fail(k, REDIS_E_CONN, "%s: no reply for %u ms after a timeout; connection reset",
            k->c->where, k->c->o.stall_ms);
}

/* A command written on k timed out: watch for silence (see on_stall). */
void rconn_overdue(struct rconn *k) {
  if (k->overdue++ == 0) uv_timer_start(&k->timer, on_stall, k->c->o.stall_ms, 0);
}

static void on_written(uv_write_t *req, int status) {
  struct wbatch *w = req->data;
  for (size_t i = 0; i < w->n; i++) free(w->bufs[i]);
  struct rconn *k = w->conn;
  free(w);
  if (status < 0 && status != UV_ECANCELED)
    rconn_fail(k, REDIS_E_CONN, "write to %s: %s", k->c->where, uv_strerror(status));
}

/* Writes bufs[0..n) (taken) in one uv_write. */
int rconn_write(struct rconn *k, char **bufs, const size_t *lens, size_t n) {
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
void rconn_flush(struct rconn *k) {
  size_t n = k->out.n;
  if (k->sub && k->state == C_READY) { rsub_flush(k); return; }
  if (k->state != C_READY || n == 0) return;
  char **bufs = malloc(n * sizeof *bufs);
  size_t *lens = malloc(n * sizeof *lens);
  if (!bufs || !lens) {
    free(bufs);
    free(lens);
    rconn_fail(k, REDIS_E_CONN, "%s: out of memory writing commands", k->c->where);
    return;
  }
  size_t i = 0;
  struct redis_cmd *m;
  while ((m = k->out.head)) {
    rlist_remove(&k->out, m);
    bufs[i] = m->buf;
    lens[i++] = m->len;
    m->buf = NULL;
    m->where = W_FIFO;
    rlist_push(&k->fifo, m);
  }
  int rc = rconn_write(k, bufs, lens, n);
  free(bufs);
  free(lens);
  if (rc < 0) rconn_fail(k, REDIS_E_CONN, "write to %s: %s", k->c->where, uv_strerror(rc));
}

/* A blocking connection whose command is done: back to the pool, or closed. */
static void bconn_release(struct rconn *k) {
  struct redis_client *c = k->c;
  k->busy = 0;
  c->bbusy--;
  c->bidle++;
  if (c->closing || c->bidle > c->o.max_idle_blocking)
    rconn_fail(k, REDIS_E_CLOSED, "idle");     /* no command: a quiet close */
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
  rconn_flush(k);
}

static void on_reply(struct rconn *k, redisReply *r) {
  struct redis_client *c = k->c;
  if (k->state == C_LOGIN) {
    const char *step = k->login_step[0];
    memmove(k->login_step, k->login_step + 1, sizeof k->login_step - sizeof k->login_step[0]);
    if (r->type == REDIS_REPLY_ERROR) {
      rconn_fail(k, REDIS_E_AUTH, "%s refused by %s: %.*s", step, c->where,
                (int)(r->len > 200 ? 200 : r->len), r->str);
      freeReplyObject(r);
      return;
    }
    freeReplyObject(r);
    if (--k->login_left == 0) login_done(k);
    return;
  }
  if (k->sub) { rsub_reply(k, r); return; }   /* pushed, not matched to commands */
  struct redis_cmd *m = k->fifo.head;
  if (!m) {
    freeReplyObject(r);
    rconn_fail(k, REDIS_E_PROTOCOL, "protocol error from %s: a reply no command asked for",
              c->where);
    return;
  }
  if (m->cb) m->replies[m->got] = r; else freeReplyObject(r);   /* dropped */
  if (++m->got < m->n) return;
  rlist_remove(&k->fifo, m);
  m->where = W_NONE;
  if (m->timed_out && --k->overdue == 0) uv_timer_stop(&k->timer);
  if (k->blocking) bconn_release(k);
  rcmd_finish(m, 0, NULL);
  rcmd_free(m);
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
      rconn_fail(k, REDIS_E_CONN, "%s closed the connection", k->c->where);
    else
      rconn_fail(k, REDIS_E_CONN, "read from %s: %s", k->c->where, uv_strerror((int)nread));
    return;
  }
  if (k->overdue) uv_timer_start(&k->timer, on_stall, k->c->o.stall_ms, 0);
  if (redisReaderFeed(k->reader, buf->base, (size_t)nread) != REDIS_OK) {
    rconn_fail(k, REDIS_E_PROTOCOL, "protocol error from %s: %s", k->c->where,
              k->reader->errstr);
    return;
  }
  while (k->state != C_CLOSED) {
    void *r = NULL;
    if (redisReaderGetReply(k->reader, &r) != REDIS_OK) {
      rconn_fail(k, REDIS_E_PROTOCOL, "protocol error from %s: %s", k->c->where,
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
    rconn_fail(k, REDIS_E_CONN, "connect %s: %s", c->where, uv_strerror(status));
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
  if (n == 0) {
    rconn_fail(k, REDIS_E_CONN, "login to %s: out of memory", c->where);
    return;
  }
  k->login_left = n;
  k->state = C_LOGIN;
  int rc = uv_read_start(&k->io.s, on_alloc, on_read);
  if (rc == 0) rc = rconn_write(k, bufs, lens, (size_t)n);
  else for (int i = 0; i < n; i++) free(bufs[i]);
  if (rc < 0) rconn_fail(k, REDIS_E_CONN, "connect %s: %s", c->where, uv_strerror(rc));
}

static void connect_addr(struct rconn *k, const struct sockaddr *sa) {
  int rc = uv_tcp_connect(&k->connect_req, &k->io.tcp, sa, on_connect);
  if (rc < 0) rconn_fail(k, REDIS_E_CONN, "connect %s: %s", k->c->where, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct resolve *rs = req->data;
  struct rconn *k = rs->conn;
  free(rs);
  if (!k) { uv_freeaddrinfo(res); return; }
  k->resolve = NULL;
  if (status < 0) {
    rconn_fail(k, REDIS_E_CONN, "resolve %s: %s", k->c->where, uv_strerror(status));
  } else {
    struct addrinfo *a = res;
    for (struct addrinfo *p = res; p; p = p->ai_next)
      if (p->ai_family == AF_INET) { a = p; break; }
    connect_addr(k, a->ai_addr);
  }
  uv_freeaddrinfo(res);
}

/* A new connection, connecting (state C_CONNECTING); NULL: no memory. */
struct rconn *rconn_open(struct redis_client *c, int blocking) {
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
  if (rc < 0) rconn_fail(k, REDIS_E_CONN, "resolve %s: %s", c->where, uv_strerror(rc));
  return k;
}
