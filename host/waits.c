/* waits: sleep and queue waits on the task layer. */
#include "waits.h"

#include <string.h>

#include <lauxlib.h>

#include "task.h"
#include "vm/value.h"

/* ---- sleep ------------------------------------------------------------- */

static int sleep_result(lua_State *L, struct task_wait *w) {
  lua_pushboolean(L, w->end == TASK_TIMEOUT);
  return 1;
}

int waits_sleep(lua_State *L, uint64_t ns) {
  struct task_wait *w = lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  w->result = sleep_result;
  w->flags = TASK_ENDS_AT_SHUTDOWN | TASK_NO_IO;
  return task_wait(L, w, ns);
}

/* The LH_E* code of a wait's early end. */
static int lh_of_end(int end) {
  return end == TASK_SHUTDOWN ? LH_ESHUTDOWN : end == TASK_CANCELLED ? LH_ECANCELLED
                                                                     : LH_ETIMEDOUT;
}

/* ---- queues ------------------------------------------------------------ */

/* A queue wait: a userdata on the waiting coroutine's stack (it survives
 * a yield); __gc frees a value left in it.  While qw is registered on q,
 * qw->qw's state and value belong to q's lock. */
struct qwait {
  struct task_wait tw;
  struct queue_waiter qw;
  struct queue *q;
  int is_push;
};

static int qwait_gc(lua_State *L) {
  struct qwait *w = lua_touserdata(L, 1);
  value_free(&w->qw.val);
  return 0;
}

static void notify(struct queue_waiter *qw) {
  task_complete(&((struct qwait *)qw->ud)->tw);
}

static int q_start(struct task_wait *tw) {
  struct qwait *w = (struct qwait *)tw;
  w->qw.notify = notify;
  w->qw.ud = w;
  return w->is_push ? queue_wait_push(w->q, &w->qw) : queue_wait_pop(w->q, &w->qw);
}

static int q_abandon(struct task_wait *tw, int why) {
  struct qwait *w = (struct qwait *)tw;
  return queue_cancel(w->q, &w->qw, lh_of_end(why));
}

static int q_result(lua_State *L, struct task_wait *tw) {
  struct qwait *w = (struct qwait *)tw;
  int state = tw->end == TASK_DONE ? w->qw.state : lh_of_end(tw->end);
  if (state == LH_OK) {
    if (w->is_push) { lua_pushboolean(L, 1); return 1; }
    if (value_decode(L, &w->qw.val, 1) < 0) return luaL_error(L, "corrupt queue value");
    value_free(&w->qw.val);
    return 1;
  }
  if (w->is_push) lua_pushboolean(L, 0); else lua_pushnil(L);
  /* a push that timed out found the queue full */
  lua_pushstring(L, lh_strerror(state == LH_ETIMEDOUT && w->is_push ? LH_EFULL : state));
  return 2;
}

static struct qwait *new_qwait(lua_State *L, struct queue *q, int is_push) {
  struct qwait *w = lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  w->q = q;
  w->is_push = is_push;
  w->tw.start = q_start;
  w->tw.abandon = q_abandon;
  w->tw.result = q_result;
  w->tw.flags = TASK_ENDS_AT_SHUTDOWN | TASK_NO_IO;
  if (luaL_newmetatable(L, "luahost.task.queue_wait")) {
    lua_pushcfunction(L, qwait_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return w;
}

int waits_pop(lua_State *L, struct queue *q, uint64_t timeout_ns) {
  return task_wait(L, &new_qwait(L, q, 0)->tw, timeout_ns);
}

struct value *waits_push_slot(lua_State *L, struct queue *q) {
  return &new_qwait(L, q, 1)->qw.val;   /* the wait owns the value until it is queued */
}

int waits_push(lua_State *L, uint64_t timeout_ns) {
  struct qwait *w = luaL_checkudata(L, -1, "luahost.task.queue_wait");
  return task_wait(L, &w->tw, timeout_ns);
}
