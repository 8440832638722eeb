/* store/queue: bounded FIFOs with direct hand-off to waiters. */
#include "store/queue.h"

#include "base/sync.h"
#include "store/caps.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct queue {
  pthread_mutex_t lock;        /* guards ring to closed */
  struct value *ring;          /* items [head, head + count) mod ring_cap */
  size_t head, count, ring_cap;
  size_t capacity;             /* set at creation, read-only after */
  struct list pops;            /* waiting pops, oldest first (queue_waiter.node) */
  struct list pushes;          /* waiting pushes, oldest first */
  int closed;                  /* 0, or the final state every wait now ends
                                  with: LH_ESHUTDOWN, LH_ECLOSED */
  int private_;                /* set at creation: not in the registry, freed at refs 0 */
  atomic_int refs;             /* atomic, no lock */
  struct queue *next_queue;    /* registry list (registry lock) */
  char name[];                 /* set at creation, read-only after */
};

/* Registry of names and configured capacities, guarded by reg_lock. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct queue *all;
static int all_shutting_down;
static struct store_caps caps = STORE_CAPS_INIT;

int queue_configure(const char *name, size_t capacity) {
  return store_caps_set(&caps, name, capacity);
}

struct queue *queue_open(const char *name, size_t len) {
  pthread_mutex_lock(&reg_lock);
  struct queue *q;
  for (q = all; q; q = q->next_queue)
    if (strlen(q->name) == len && memcmp(q->name, name, len) == 0) break;
  if (!q && (q = calloc(1, sizeof *q + len + 1))) {
    q->capacity = store_caps_get(&caps, name, len, QUEUE_DEFAULT_CAPACITY);
    memcpy(q->name, name, len);
    pthread_mutex_init(&q->lock, NULL);
    list_init(&q->pops);
    list_init(&q->pushes);
    atomic_init(&q->refs, 1);   /* the registry's */
    q->closed = all_shutting_down ? LH_ESHUTDOWN : 0;
    q->next_queue = all;
    all = q;
  }
  if (q) atomic_fetch_add(&q->refs, 1);
  pthread_mutex_unlock(&reg_lock);
  return q;
}

void queue_retain(struct queue *q) { atomic_fetch_add(&q->refs, 1); }

static void queue_destroy(struct queue *q);

void queue_release(struct queue *q) {
  if (atomic_fetch_sub(&q->refs, 1) == 1 && q->private_) queue_destroy(q);
}

struct queue *queue_new_private(size_t capacity) {
  struct queue *q = calloc(1, sizeof *q + 1);
  if (!q) return NULL;
  q->capacity = capacity;
  q->private_ = 1;
  pthread_mutex_init(&q->lock, NULL);
  list_init(&q->pops);
  list_init(&q->pushes);
  atomic_init(&q->refs, 1);
  return q;
}
const char *queue_name(const struct queue *q) { return q->name; }

size_t queue_len(struct queue *q) {
  pthread_mutex_lock(&q->lock);
  size_t n = q->count;
  pthread_mutex_unlock(&q->lock);
  return n;
}

/* ---- under q->lock ---------------------------------------------------- */

/* The oldest waiter of l, or NULL. */
static struct queue_waiter *first(struct list *l) {
  struct list_node *n = list_first(l);
  return n ? list_entry(n, struct queue_waiter, node) : NULL;
}

static void finish(struct queue_waiter *w, int state) {
  w->state = state;
  if (w->notify) w->notify(w);
}

/* Appends a value (moved), growing the ring up to capacity. */
static int ring_put(struct queue *q, struct value *v) {
  if (q->count == q->ring_cap) {
    size_t n = q->ring_cap ? q->ring_cap * 2 : 16;
    if (n > q->capacity) n = q->capacity;
    struct value *r = malloc(n * sizeof *r);
    if (!r) return -1;
    for (size_t i = 0; i < q->count; i++) r[i] = q->ring[(q->head + i) % q->ring_cap];
    free(q->ring);
    q->ring = r;
    q->ring_cap = n;
    q->head = 0;
  }
  q->ring[(q->head + q->count) % q->ring_cap] = *v;
  q->count++;
  memset(v, 0, sizeof *v);
  return 0;
}

static void ring_take(struct queue *q, struct value *out) {
  *out = q->ring[q->head];
  q->head = (q->head + 1) % q->ring_cap;
  q->count--;
}

/* After a pop made room: the oldest waiting push gets in. */
static void admit_push(struct queue *q) {
  struct queue_waiter *w = first(&q->pushes);
  if (w && q->count < q->capacity && ring_put(q, &w->val) == 0) {
    list_remove(&w->node);
    finish(w, LH_OK);
  }
}

/* A push: straight to the oldest waiting pop, else into the ring. */
static int push_locked(struct queue *q, struct value *v) {
  struct queue_waiter *w = first(&q->pops);
  if (w) {
    list_remove(&w->node);
    value_free(&w->val);
    w->val = *v;
    memset(v, 0, sizeof *v);
    finish(w, LH_OK);
    return LH_OK;
  }
  if (q->count >= q->capacity || ring_put(q, v) < 0) return LH_EFULL;
  return LH_OK;
}

static int pop_locked(struct queue *q, struct value *out) {
  if (q->count == 0) return LH_EEMPTY;
  ring_take(q, out);
  admit_push(q);
  return LH_OK;
}

/* ---- API -------------------------------------------------------------- */

int queue_push(struct queue *q, struct value *v) {
  pthread_mutex_lock(&q->lock);
  int rc = push_locked(q, v);
  pthread_mutex_unlock(&q->lock);
  return rc;
}

static int state_rc(int state);

int queue_pop(struct queue *q, struct value *out) {
  pthread_mutex_lock(&q->lock);
  int rc = pop_locked(q, out);
  if (rc == LH_EEMPTY && q->closed) rc = state_rc(q->closed);
  pthread_mutex_unlock(&q->lock);
  return rc;
}

int queue_wait_pop(struct queue *q, struct queue_waiter *w) {
  int done = 1;
  pthread_mutex_lock(&q->lock);
  value_reset(&w->val);
  if (pop_locked(q, &w->val) == LH_OK) w->state = LH_OK;
  else if (q->closed) w->state = q->closed;
  else {
    w->state = QW_WAITING;
    list_push_back(&q->pops, &w->node);
    done = 0;
  }
  pthread_mutex_unlock(&q->lock);
  return done;
}

int queue_wait_push(struct queue *q, struct queue_waiter *w) {
  int done = 1;
  pthread_mutex_lock(&q->lock);
  if (push_locked(q, &w->val) == LH_OK) w->state = LH_OK;
  else if (q->closed) w->state = q->closed;
  else {
    w->state = QW_WAITING;
    list_push_back(&q->pushes, &w->node);
    done = 0;
  }
  pthread_mutex_unlock(&q->lock);
  return done;
}

int queue_cancel(struct queue *q, struct queue_waiter *w, int why) {
  int took = 0;
  pthread_mutex_lock(&q->lock);
  if (w->state == QW_WAITING) {
    list_remove(&w->node);
    w->state = why;
    took = 1;
  }
  pthread_mutex_unlock(&q->lock);
  return took;
}

static void signal_cond(struct queue_waiter *w) { pthread_cond_signal(w->cond); }

/* Waits on a condition variable until w is final or the timeout passes. */
static int queue_block(struct queue *q, struct queue_waiter *w, uint64_t timeout_ns) {
  struct timespec ts = sync_deadline(timeout_ns == UINT64_MAX ? 0 : timeout_ns);
  pthread_mutex_lock(&q->lock);
  while (w->state == QW_WAITING) {
    int rc = timeout_ns == UINT64_MAX ? pthread_cond_wait(w->cond, &q->lock)
                                      : pthread_cond_timedwait(w->cond, &q->lock, &ts);
    if (rc == ETIMEDOUT && w->state == QW_WAITING) {
      list_remove(&w->node);
      w->state = LH_ETIMEDOUT;
    }
  }
  pthread_mutex_unlock(&q->lock);
  return w->state;
}

/* A final waiter state is already the return code. */
static int state_rc(int state) { return state <= 0 ? state : LH_ECANCELLED; }

static void queue_waiter_init_blocking(struct queue_waiter *w, pthread_cond_t *cond) {
  memset(w, 0, sizeof *w);
  sync_cond_init(cond);
  w->cond = cond;
  w->notify = signal_cond;
}

int queue_pop_wait(struct queue *q, struct value *out, uint64_t timeout_ns) {
  pthread_cond_t cond;
  struct queue_waiter w;
  queue_waiter_init_blocking(&w, &cond);
  if (!queue_wait_pop(q, &w) && timeout_ns > 0) queue_block(q, &w, timeout_ns);
  else if (w.state == QW_WAITING) queue_cancel(q, &w, LH_ETIMEDOUT);
  pthread_cond_destroy(&cond);
  if (w.state == LH_OK) *out = w.val;
  else value_free(&w.val);
  return state_rc(w.state);
}

int queue_push_wait(struct queue *q, struct value *v, uint64_t timeout_ns) {
  pthread_cond_t cond;
  struct queue_waiter w;
  queue_waiter_init_blocking(&w, &cond);
  w.val = *v;
  memset(v, 0, sizeof *v);
  if (!queue_wait_push(q, &w) && timeout_ns > 0) queue_block(q, &w, timeout_ns);
  else if (w.state == QW_WAITING) queue_cancel(q, &w, LH_ETIMEDOUT);
  pthread_cond_destroy(&cond);
  if (w.state != LH_OK) *v = w.val;   /* not added: the caller keeps it */
  return state_rc(w.state);
}

void queue_close(struct queue *q, int why) {
  pthread_mutex_lock(&q->lock);
  q->closed = why;
  struct queue_waiter *w;
  while ((w = first(&q->pops)) || (w = first(&q->pushes))) {
    list_remove(&w->node);
    finish(w, why);
  }
  pthread_mutex_unlock(&q->lock);
}

void queue_shutdown_all(void) {
  pthread_mutex_lock(&reg_lock);
  all_shutting_down = 1;
  for (struct queue *q = all; q; q = q->next_queue) queue_close(q, LH_ESHUTDOWN);
  pthread_mutex_unlock(&reg_lock);
}

void queue_each(void (*fn)(void *ud, const char *name, size_t len), void *ud) {
  pthread_mutex_lock(&reg_lock);
  for (struct queue *q = all; q; q = q->next_queue) fn(ud, q->name, queue_len(q));
  pthread_mutex_unlock(&reg_lock);
}

/* Frees the values q holds. */
static void drain(struct queue *q) {
  while (q->count) {
    struct value v;
    ring_take(q, &v);
    value_free(&v);
  }
}

/* Frees q and what it holds (no waiter may be registered). */
static void queue_destroy(struct queue *q) {
  drain(q);
  free(q->ring);
  pthread_mutex_destroy(&q->lock);
  free(q);
}

void queue_free_all(void) {
  pthread_mutex_lock(&reg_lock);
  /* Values first (they may hold references to other queues), then queues. */
  for (struct queue *q = all; q; q = q->next_queue) drain(q);
  while (all) {
    struct queue *q = all;
    all = q->next_queue;
    queue_destroy(q);
  }
  pthread_mutex_unlock(&reg_lock);
  store_caps_free(&caps);
}
