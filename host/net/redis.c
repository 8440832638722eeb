/* redis: connections on a uv loop, pipelined commands, a blocking pool,
 * deadlines, reconnects (the contract is in the header). */
#include "net/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/redis_int.h"

#define NO_HEAP ((size_t)-1)

static void on_deadline(uv_timer_t *t);

/* ---- lists and the deadline heap ---- */

void rlist_push(struct cmd_list *l, struct redis_cmd *m) {
  m->next = NULL;
  m->prev = l->tail;
  if (l->tail) l->tail->next = m; else l->head = m;
  l->tail = m;
  l->n++;
}

void rlist_remove(struct cmd_list *l, struct redis_cmd *m) {
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

void rcmd_free(struct redis_cmd *m) {
  for (size_t i = 0; i < m->got && i < m->n; i++)
    if (m->replies[i]) freeReplyObject(m->replies[i]);
  free(m->replies);
  free(m->buf);
  free(m);
}

/* Detaches m (out of the heap, its cb cleared) and tells its waiter. */
void rcmd_finish(struct redis_cmd *m, int err, const char *msg) {
  redis_cb cb = m->cb;
  m->cb = NULL;
  heap_del(m->c, m);
  if (!cb) return;
  struct redis_done d = {err, msg, err ? 0 : m->n, err ? NULL : m->replies};
  cb(m->ud, &d);
}

void rcmd_fail_list(struct cmd_list *l, int err, const char *msg) {
  struct redis_cmd *m;
  while ((m = l->head)) {
    rlist_remove(l, m);
    m->where = W_NONE;
    rcmd_finish(m, err, msg);
    rcmd_free(m);
  }
}

/* ---- the client ---- */

/* Writes what was sent since the last iteration, one write per connection. */
void rclient_on_flush(uv_prepare_t *p) {
  struct redis_client *c = p->data;
  uv_prepare_stop(p);
  if (c->shared) rconn_flush(c->shared);
  struct rconn *k = c->bconns, *next;
  for (; k; k = next) {
    next = k->next;              /* a failed write unlinks k */
    rconn_flush(k);
  }
}

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
  if (!rconn_open(c, 0)) {
    snprintf(c->err, sizeof c->err, "%s: out of memory", c->where);
    rclient_back_off(c);
  }
  return c;
}

static void on_client_handle_closed(uv_handle_t *h) { rclient_unlive(h->data); }

void redis_client_close(struct redis_client *c, void (*closed_cb)(void *), void *ud) {
  if (c->closing) return;
  c->closing = 1;
  c->closed_cb = closed_cb;
  c->closed_ud = ud;
  uv_close((uv_handle_t *)&c->backoff_timer, on_client_handle_closed);
  uv_close((uv_handle_t *)&c->deadline_timer, on_client_handle_closed);
  uv_close((uv_handle_t *)&c->flush, on_client_handle_closed);
  if (c->shared) rconn_fail(c->shared, REDIS_E_CLOSED, "%s: client closed", c->where);
  while (c->bconns) rconn_fail(c->bconns, REDIS_E_CLOSED, "%s: client closed", c->where);
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

/* A blocking connection for one command: an idle one or a new one.
 * NULL: no memory, or the new one failed at once (c->err says why). */
static struct rconn *bconn_take(struct redis_client *c) {
  struct rconn *k;
  for (k = c->bconns; k; k = k->next)
    if (!k->busy && k->state == C_READY) break;
  if (k) c->bidle--;
  else if (!(k = rconn_open(c, 1)) || k->state == C_CLOSED) return NULL;
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
    uv_update_time(c->loop);   /* Lua may have run since the loop read it */
    m->deadline = uv_now(c->loop) + timeout_ms;
    if (heap_add(c, m) < 0) { rcmd_free(m); return REDIS_E_NOMEM; }
  }
  struct rconn *k = b->blocking ? bconn_take(c) : c->shared;
  if (!k) {
    heap_del(c, m);
    rcmd_free(m);
    return REDIS_E_UNAVAILABLE;
  }
  m->buf = b->buf;
  m->len = b->len;
  memset(b, 0, sizeof *b);
  m->conn = k;
  m->where = W_OUT;
  rlist_push(&k->out, m);
  if (k->state == C_READY && !uv_is_active((uv_handle_t *)&c->flush))
    uv_prepare_start(&c->flush, rclient_on_flush);      /* written later: no callback in here */
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
    rconn_fail(k, REDIS_E_CLOSED, "abandoned");   /* m is silent now: freed there */
  } else if (m->where == W_OUT) {
    rlist_remove(&k->out, m);
    rcmd_free(m);
  } else if (timed_out) {
    m->timed_out = 1;
    rconn_overdue(k);
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
