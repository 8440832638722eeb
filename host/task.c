/* task: how a running piece of Lua waits. */
#include "task.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "base/instance.h"
#include "base/sync.h"

/* Every live loop, so that cancel and shutdown reach every wait.  A loop
 * leaves the list (under all_lock) before its handles close, so a poke
 * made under all_lock never touches a closed async handle. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct list all_loops = {{&all_loops.head, &all_loops.head}};

/* The calling thread's own loop, made on its first in-place wait that
 * needs one (network I/O). */
static _Thread_local struct task_loop *own_loop;
/* The loop whose tasks this thread yields to (a worker's, apptest's): set
 * by the thread that runs it, so `tl == yield_loop` means "on tl's thread". */
static _Thread_local struct task_loop *yield_loop;

/* A thread's parker: its in-place waits that need no loop (TASK_NO_IO)
 * wait on it.  Registered, as loops are, so that cancel and shutdown
 * reach it; freed by task_thread_end. */
struct task_parker {
  pthread_mutex_t lock;           /* guards `completed` of the waits parked here
                                     (set by task_complete on any thread) */
  pthread_cond_t cond;            /* (lock) a completion, or a poke */
  struct list_node all;           /* (all_lock) every live parker */
};
static struct list all_parkers = {{&all_parkers.head, &all_parkers.head}};
/* In the thread's static TLS block, not malloc'd: a thread's first malloc
 * sets up a malloc arena for it, which an idle thread would pay in RSS. */
static _Thread_local struct task_parker parker_storage;
static _Thread_local struct task_parker *own_parker;

static struct task_parker *thread_parker(void) {
  if (own_parker) return own_parker;
  struct task_parker *p = &parker_storage;
  pthread_mutex_init(&p->lock, NULL);
  sync_cond_init(&p->cond);
  pthread_mutex_lock(&all_lock);
  list_push_back(&all_parkers, &p->all);
  pthread_mutex_unlock(&all_lock);
  return own_parker = p;
}

static void on_async(uv_async_t *a);
static void end_wait(struct task_wait *w, int end);

/* ---- loops ------------------------------------------------------------- */

int task_loop_init(struct task_loop *tl, uv_loop_t *uv) {
  memset(tl, 0, sizeof *tl);
  tl->uv = uv;
  list_init(&tl->waiting);
  if (uv_async_init(uv, &tl->async, on_async) < 0) return -1;
  tl->async.data = tl;
  uv_idle_init(uv, &tl->idle);
  tl->idle.data = tl;
  pthread_mutex_init(&tl->lock, NULL);
  pthread_mutex_lock(&all_lock);
  list_push_back(&all_loops, &tl->all);
  pthread_mutex_unlock(&all_lock);
  return 0;
}

void task_loop_close(struct task_loop *tl) {
  pthread_mutex_lock(&all_lock);
  if (list_linked(&tl->all)) list_remove(&tl->all);
  pthread_mutex_unlock(&all_lock);
  for (int i = 0; i < TASK_CLIENT_MAX; i++)
    if (tl->clients[i]) {
      tl->client_close[i](tl->clients[i]);
      tl->clients[i] = NULL;
    }
  if (tl->own) uv_close((uv_handle_t *)&tl->own_timer, NULL);
  uv_close((uv_handle_t *)&tl->idle, NULL);
  if (yield_loop == tl) yield_loop = NULL;   /* its memory may serve another loop */
  pthread_mutex_lock(&tl->lock);   /* a sender still in task_complete is done */
  uv_close((uv_handle_t *)&tl->async, NULL);
  pthread_mutex_unlock(&tl->lock);
  pthread_mutex_destroy(&tl->lock);
}

void *task_loop_client(struct task_loop *tl, int kind, void *(*make)(uv_loop_t *uv),
                       void (*close)(void *client)) {
  if (!tl->clients[kind] && (tl->clients[kind] = make(tl->uv)))
    tl->client_close[kind] = close;
  return tl->clients[kind];
}

struct task_loop *task_thread_loop(void) {
  if (own_loop) return own_loop;
  struct task_loop *tl = malloc(sizeof *tl);
  uv_loop_t *uv = malloc(sizeof *uv);
  if (!tl || !uv || uv_loop_init(uv) < 0) goto fail;
  if (task_loop_init(tl, uv) < 0) { uv_loop_close(uv); goto fail; }
  uv_timer_init(uv, &tl->own_timer);
  tl->own = 1;
  return own_loop = tl;
fail:
  free(tl);
  free(uv);
  return NULL;
}

void task_thread_end(void) {
  struct task_parker *p = own_parker;
  if (p) {
    own_parker = NULL;
    pthread_mutex_lock(&all_lock);
    list_remove(&p->all);
    pthread_mutex_unlock(&all_lock);
    pthread_mutex_lock(&p->lock);   /* a sender still in task_complete is done */
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
  }
  struct task_loop *tl = own_loop;
  if (!tl) return;
  own_loop = NULL;
  task_loop_close(tl);
  uv_run(tl->uv, UV_RUN_DEFAULT);   /* the close callbacks, and clients' */
  uv_loop_close(tl->uv);
  free(tl->uv);
  free(tl);
}

/* ---- tasks ------------------------------------------------------------- */

void task_init(struct task *t, struct task_loop *tl, void (*resume)(struct task *t)) {
  memset(t, 0, sizeof *t);
  t->vt.owner = t;
  t->loop = tl;
  t->resume = resume;
  list_init(&t->ops);
}

void task_op_add(lua_State *L, struct task_op *op) {
  struct task *t = vm_current(L)->owner;
  list_node_init(&op->node);
  if (t && t->loop) list_push_back(&t->ops, &op->node);
}

void task_op_done(struct task_op *op) {
  if (list_linked(&op->node)) list_remove(&op->node);
}

void task_end_ops(struct task *t) {
  struct list_node *n;
  while ((n = list_first(&t->ops))) {
    struct task_op *op = list_entry(n, struct task_op, node);
    list_remove(n);
    op->cancel(op);
  }
}

static void on_task_timer_closed(uv_handle_t *h) {
  struct task *t = h->data;
  t->released(t);
}

void task_release(struct task *t, void (*done)(struct task *t)) {
  if (!t->timer_init) { done(t); return; }
  t->timer_init = 0;
  t->timer.data = t;
  t->released = done;
  uv_close((uv_handle_t *)&t->timer, on_task_timer_closed);
}

/* The yielding task running in L, or NULL when a wait here must happen in
 * place: L is not the task's own coroutine (a coroutine the handler made),
 * or the task has no loop (a thread, a script). */
static struct task *yielding_task(lua_State *L) {
  struct vm_task *vt = vm_current(L);
  struct task *t = vt->owner;
  if (!t || !t->loop || vt->co != L || !lua_isyieldable(L)) return NULL;
  return t;
}

struct task_loop *task_io_loop(lua_State *L) {
  struct task *t = yielding_task(L);
  return t ? t->loop : task_thread_loop();
}

uint64_t task_check_timeout(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return TASK_NO_TIMEOUT;
  lua_Number s = luaL_checknumber(L, idx);
  luaL_argcheck(L, s >= 0, idx, "timeout must be a number of seconds >= 0 (nil: no limit)");
  return s >= 1e9 ? TASK_NO_TIMEOUT : (uint64_t)(s * 1e9);
}

/* ---- ending waits ------------------------------------------------------ */

/* (loop thread) w's wait is over: off the loop, its timer stopped, its
 * task resumed (a yielding task) or its in-place loop left. */
static void end_wait(struct task_wait *w, int end) {
  w->end = end;
  if (list_linked(&w->node)) list_remove(&w->node);
  if (w->timer) uv_timer_stop(w->timer);
  if (w->task) w->task->resume(w->task);
  else uv_stop(w->loop->uv);
}

/* (loop thread) Ends w early for `why`, unless its completion is already
 * on its way (then it ends TASK_DONE when the mail comes). */
static void end_early(struct task_wait *w, int why) {
  if (w->abandon && !w->abandon(w, why)) return;
  end_wait(w, why);
}

static void on_timer(uv_timer_t *h) {
  struct task_wait *w = h->data;
  end_early(w, w->by_deadline ? TASK_DEADLINE : TASK_TIMEOUT);
}

/* (loop thread) A cancel or shutdown for w? */
static int early_reason(struct task_wait *w) {
  if (w->vt->cancel && atomic_load(w->vt->cancel)) return TASK_CANCELLED;
  if ((w->flags & TASK_ENDS_AT_SHUTDOWN) && instance_shutting_down()) return TASK_SHUTDOWN;
  return TASK_PENDING;
}

/* (loop thread) Ends the waits whose completion came, oldest first, and,
 * after a poke, those that cancel or shutdown ends. */
static void read_mail(struct task_loop *tl) {
  pthread_mutex_lock(&tl->lock);
  struct task_wait *mail = tl->mailbox;
  int poked = tl->poked;
  tl->mailbox = NULL;
  tl->poked = 0;
  pthread_mutex_unlock(&tl->lock);
  struct task_wait *rev = NULL;   /* oldest first */
  while (mail) {
    struct task_wait *n = mail->mail_next;
    mail->mail_next = rev;
    rev = mail;
    mail = n;
  }
  while (rev) {
    struct task_wait *w = rev;
    rev = w->mail_next;
    if (w->end == TASK_PENDING) end_wait(w, TASK_DONE);
  }
  if (poked)
    list_each(&tl->waiting, it, tmp) {
      struct task_wait *w = list_entry(it, struct task_wait, node);
      int why = early_reason(w);
      if (why != TASK_PENDING) end_early(w, why);
    }
}

static void on_async(uv_async_t *a) { read_mail(a->data); }

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  read_mail(h->data);
}

/* The send is made under the lock: once the waiting thread has taken the
 * mail (and may end, closing its loop), no sender still holds the loop. */
void task_complete(struct task_wait *w) {
  struct task_parker *p = w->parker;
  if (p) {
    pthread_mutex_lock(&p->lock);
    w->completed = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return;
  }
  struct task_loop *tl = w->loop;
  int here = tl == yield_loop || tl == own_loop;   /* on tl's own thread */
  pthread_mutex_lock(&tl->lock);
  w->completed = 1;
  w->mail_next = tl->mailbox;
  tl->mailbox = w;
  if (!here) uv_async_send(&tl->async);
  pthread_mutex_unlock(&tl->lock);
  /* from a callback of tl's loop: read in its next idle phase (an active
   * idle handle also keeps the coming poll from blocking) */
  if (here) uv_idle_start(&tl->idle, on_idle);
}

void task_poke_all(void) {
  pthread_mutex_lock(&all_lock);
  list_each(&all_loops, it, tmp) {
    struct task_loop *tl = list_entry(it, struct task_loop, all);
    pthread_mutex_lock(&tl->lock);
    tl->poked = 1;
    uv_async_send(&tl->async);
    pthread_mutex_unlock(&tl->lock);
  }
  list_each(&all_parkers, it, tmp) {
    struct task_parker *p = list_entry(it, struct task_parker, all);
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
  }
  pthread_mutex_unlock(&all_lock);
}

void task_shutdown(void) {
  instance_set_shutting_down();
  task_poke_all();
}

/* ---- waiting ----------------------------------------------------------- */

static int wait_cont(lua_State *L, int status, lua_KContext ctx) {
  struct task_wait *w = (struct task_wait *)ctx;
  if (w->end == TASK_DEADLINE) return vm_raise_deadline(L);
  return w->result(L, w);
}

/* ns capped by the deadline; 0 when past it. */
static uint64_t capped(const struct vm_task *vt, uint64_t ns, int *by_deadline) {
  *by_deadline = 0;
  if (!vt->deadline_ns) return ns;
  uint64_t now = clock_now_ns();
  uint64_t left = vt->deadline_ns > now ? vt->deadline_ns - now : 0;
  if (left <= ns) { *by_deadline = 1; return left; }
  return ns;
}

/* In place on the thread's parker (TASK_NO_IO): until the completion, the
 * timeout (or deadline), a cancel or shutdown.  abandon runs without the
 * parker's lock (it takes the source's lock, whose notify takes ours). */
static int park(lua_State *L, struct task_wait *w, uint64_t timeout_ns) {
  struct task_parker *p = w->parker;
  int by_deadline;
  uint64_t ns = capped(w->vt, timeout_ns, &by_deadline);
  uint64_t end_ns = ns == TASK_NO_TIMEOUT ? 0 : clock_now_ns() + ns;
  if (w->start && w->start(w)) {
    w->end = TASK_DONE;
    return w->result(L, w);
  }
  pthread_mutex_lock(&p->lock);
  while (!w->completed) {
    int why = early_reason(w);
    if (why == TASK_PENDING && end_ns && clock_now_ns() >= end_ns)
      why = by_deadline ? TASK_DEADLINE : TASK_TIMEOUT;
    if (why != TASK_PENDING && !w->abandon_failed) {
      pthread_mutex_unlock(&p->lock);
      int let_go = !w->abandon || w->abandon(w, why);
      pthread_mutex_lock(&p->lock);
      if (let_go) { w->end = why; break; }
      w->abandon_failed = 1;   /* the completion is on its way: wait for it */
      continue;
    }
    if (end_ns && !w->abandon_failed) {
      uint64_t now = clock_now_ns();
      struct timespec ts = sync_deadline(end_ns > now ? end_ns - now : 0);
      pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    } else {
      pthread_cond_wait(&p->cond, &p->lock);
    }
  }
  if (w->completed && w->end == TASK_PENDING) w->end = TASK_DONE;
  pthread_mutex_unlock(&p->lock);
  return wait_cont(L, LUA_OK, (lua_KContext)w);
}

int task_wait(lua_State *L, struct task_wait *w, uint64_t timeout_ns) {
  struct task *t = yielding_task(L);
  w->vt = vm_current(L);
  w->task = t;
  w->end = TASK_PENDING;
  w->completed = 0;
  w->mail_next = NULL;
  list_node_init(&w->node);
  w->abandon_failed = 0;
  w->parker = NULL;
  w->loop = NULL;
  if (!t && (w->flags & TASK_NO_IO)) {
    if (!(w->parker = thread_parker()))
      return luaL_error(L, "cannot wait: out of memory for the thread's parker");
    return park(L, w, timeout_ns);
  }
  w->loop = t ? t->loop : task_thread_loop();
  if (!w->loop) return luaL_error(L, "cannot wait: out of memory for the thread's loop");
  if (t && !t->timer_init) {
    if (uv_timer_init(t->loop->uv, &t->timer) < 0) return luaL_error(L, "cannot wait: no timer");
    t->timer_init = 1;
  }
  w->timer = t ? &t->timer : &w->loop->own_timer;
  int by_deadline;
  uint64_t ns = capped(w->vt, timeout_ns, &by_deadline);
  w->by_deadline = by_deadline;
  int why = early_reason(w);
  if (w->start && w->start(w)) {
    w->end = TASK_DONE;
    return w->result(L, w);
  }
  if (why == TASK_PENDING && ns == 0) why = by_deadline ? TASK_DEADLINE : TASK_TIMEOUT;
  if (why != TASK_PENDING && (!w->abandon || w->abandon(w, why))) {
    w->end = why;
    return wait_cont(L, LUA_OK, (lua_KContext)w);
  }
  list_push_back(&w->loop->waiting, &w->node);
  if (ns != TASK_NO_TIMEOUT) {
    /* the loop's clock may be stale (Lua ran since it was read); the
     * extra millisecond keeps a wait from ending before its time */
    w->timer->data = w;
    uv_update_time(w->loop->uv);
    uv_timer_start(w->timer, on_timer, (ns + 999999) / 1000000 + 1, 0);
  }
  if (t) {
    t->waiting = 1;
    yield_loop = t->loop;
    return lua_yieldk(L, 0, (lua_KContext)w, wait_cont);
  }
  /* In place: drive the thread's own loop until the wait is over (a
   * completion, the timer, or a poke end it with uv_stop). */
  while (w->end == TASK_PENDING) uv_run(w->loop->uv, UV_RUN_DEFAULT);
  return wait_cont(L, LUA_OK, (lua_KContext)w);
}
