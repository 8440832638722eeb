/*
 * qwait: the one way Lua code waits on a queue (shared queue push/pop, a
 * background thread's join): inside a request coroutine the wait parks the
 * request and yields (the worker resumes it), in a background thread it
 * blocks cancellably, elsewhere it blocks.  The request deadline bounds
 * every wait.  Results as q:pop / q:push return them.
 */
#include "bindings/qwait.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "vm/state.h"
#include "vm/value.h"

/* timeout: nil waits without limit, 0 does not wait. */
uint64_t qwait_check_timeout(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return UINT64_MAX;
  lua_Number t = luaL_checknumber(L, idx);
  luaL_argcheck(L, t >= 0, idx, "timeout must be a number of seconds >= 0 (nil: no limit)");
  return t >= 1e9 ? UINT64_MAX : (uint64_t)(t * 1e9);
}

/* A wait in progress: lives as a userdata on the waiting coroutine's stack
 * so that it survives the yield; __gc frees a value left in it.  Owned by
 * the thread running that coroutine; while w is registered on q, w's state
 * and value belong to q's lock (another thread completes it). */
struct qwait {
  struct queue_waiter w;
  struct queue *q;
  int is_push;
};

static int qwait_gc(lua_State *L) {
  struct qwait *qw = lua_touserdata(L, 1);
  value_free(&qw->w.val);
  return 0;
}

static struct qwait *new_qwait(lua_State *L, struct queue *q, int is_push) {
  struct qwait *qw = lua_newuserdatauv(L, sizeof *qw, 0);
  memset(qw, 0, sizeof *qw);
  qw->q = q;
  qw->is_push = is_push;
  if (luaL_newmetatable(L, "luahost.shared.wait")) {
    lua_pushcfunction(L, qwait_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return qw;
}

static void notify_task(struct queue_waiter *w) {
  struct vm_task *t = w->ud;
  t->waiter->post(t);
}

static int on_wait_timeout(void *arg) {
  struct qwait *qw = arg;
  return queue_cancel(qw->q, &qw->w, QW_TIMEOUT);
}

static void raise_if_past_deadline(lua_State *L, struct vm_task *t) {
  if (t->deadline_ns && clock_now_ns() >= t->deadline_ns) vm_raise_deadline(L);
}

/* Results of a finished wait (the qwait is at stack index idx). */
static int wait_result(lua_State *L, struct qwait *qw) {
  int state = qw->w.state;
  if (state == QW_DONE) {
    if (qw->is_push) { lua_pushboolean(L, 1); return 1; }
    if (value_decode(L, &qw->w.val, 1) < 0) return luaL_error(L, "corrupt queue value");
    value_free(&qw->w.val);
    return 1;
  }
  if (state == QW_TIMEOUT) raise_if_past_deadline(L, vm_of(L)->current);
  if (qw->is_push) lua_pushboolean(L, 0); else lua_pushnil(L);
  lua_pushstring(L, state == QW_TIMEOUT ? (qw->is_push ? "full" : "timeout")
                    : state == QW_SHUTDOWN ? "shutting down"
                    : state == QW_CLOSED ? "closed" : "cancelled");
  return 2;
}

static int wait_cont(lua_State *L, int status, lua_KContext ctx) {
  return wait_result(L, lua_touserdata(L, (int)ctx));
}

/* Waits for qw, which queue_wait_* registered (done: it completed at
 * once; otherwise its state belongs to the queue's lock until the task is
 * resumed).  Yields; the worker resumes the task. */
static int wait_for(lua_State *L, struct qwait *qw, uint64_t timeout, int done) {
  struct vm_task *t = vm_of(L)->current;
  int idx = lua_gettop(L);   /* the qwait userdata */
  if (done) return wait_result(L, qw);
  if (t->waiter->park(t, timeout, on_wait_timeout, qw) < 0) {
    queue_cancel(qw->q, &qw->w, QW_CANCELLED);
    return luaL_error(L, "cannot wait: no timer");
  }
  return lua_yieldk(L, 0, idx, wait_cont);
}

/* Blocking: wait in slices, so a deadline passes through. */
static uint64_t blocking_slice(lua_State *L, uint64_t timeout) {
  struct vm_task *t = vm_of(L)->current;
  if (!t->deadline_ns) return timeout;
  uint64_t now = clock_now_ns();
  uint64_t left = t->deadline_ns > now ? t->deadline_ns - now : 0;
  return timeout < left ? timeout : left;
}

static void encode_or_raise(lua_State *L, int idx, struct value *v) {
  char err[512];
  if (value_encode(L, idx, "value", v, err, sizeof err) < 0) {
    value_free(v);
    luaL_argerror(L, idx, err);
  }
}

/* Tries, then waits in place (no loop to resume us): a background
 * thread's waiter makes the wait cancellable; elsewhere a plain condition
 * variable.  Timeout 0 does not wait; the deadline, if any, bounds the
 * wait.  Leaves the final state in qw. */
/* Tries qw's pop or push, registering it to wait: 1 when already final. */
static int try_or_register(struct qwait *qw) {
  return qw->is_push ? queue_wait_push(qw->q, &qw->w) : queue_wait_pop(qw->q, &qw->w);
}

static int block_wait(lua_State *L, struct qwait *qw, uint64_t timeout) {
  struct vm_task *t = vm_of(L)->current;
  pthread_cond_t cond;
  struct value v = qw->w.val;
  queue_waiter_init_blocking(&qw->w, &cond);
  qw->w.val = v;
  int done = try_or_register(qw);
  if (!done) {
    uint64_t slice = blocking_slice(L, timeout);
    if (slice == 0) queue_cancel(qw->q, &qw->w, QW_TIMEOUT);   /* no wait wanted, or past
                                                                  the deadline */
    else if (t->waiter && t->waiter->block) t->waiter->block(t, qw->q, &qw->w, slice);
    else queue_block(qw->q, &qw->w, slice);
  }
  pthread_cond_destroy(&cond);
  qw->w.cond = NULL;
  return qw->w.state;
}

/* A pop or push: a request coroutine that may wait yields; anything else
 * (no wait wanted, or no loop to resume it) goes through block_wait. */
static int wait_any(lua_State *L, struct qwait *qw, uint64_t timeout) {
  if (vm_can_yield(L) && timeout > 0) {
    qw->w.notify = notify_task;
    qw->w.ud = vm_of(L)->current;
    return wait_for(L, qw, timeout, try_or_register(qw));
  }
  block_wait(L, qw, timeout);
  return wait_result(L, qw);
}

int qwait_push(lua_State *L, struct queue *q, int idx, uint64_t timeout) {
  struct qwait *qw = new_qwait(L, q, 1);   /* owns the value until it is queued */
  encode_or_raise(L, idx, &qw->w.val);
  return wait_any(L, qw, timeout);
}

int qwait_pop(lua_State *L, struct queue *q, uint64_t timeout) {
  return wait_any(L, new_qwait(L, q, 0), timeout);
}
