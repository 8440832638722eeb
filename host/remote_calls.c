/* remote_calls: shared on Redis, as §9 waits. */
#include "remote_calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/instance.h"
#include "bindings/bindings.h"
#include "metrics.h"
#include "redis_calls.h"
#include "store/remote.h"
#include "task.h"
#include "vm/errors.h"
#include "vm/state.h"
#include "vm/value.h"

#define WAIT_MT "luahost.task.remote_wait"

/* Written by the main thread before any state runs; read-only after. */
static int store_server = -1;

void remote_calls_configure(int server) { store_server = server; }
int remote_calls_on(void) { return store_server >= 0; }

enum { K_GET, K_SET, K_INCR, K_DELETE, K_KEYS, K_FLUSH, K_PUSH, K_POP, K_LEN };

/* A wait on a remote operation: a userdata on the waiting coroutine's
 * stack; the callback copies what it needs out of the replies. */
struct rwait {
  struct task_wait tw;
  struct remote_op *op;       /* while the operation may call back */
  int kind;
  int done;                   /* the callback came */
  int why;                    /* the task_end the wait was given up for, or 0 */
  int status;
  char *msg;
  struct dict_val val;        /* DV_STR: s is owned (str) */
  char *str;
  size_t len;                 /* len(), or the item's length */
  char **keys;
  size_t *klens;
  size_t nkeys;
};

static int rwait_gc(lua_State *L) {
  struct rwait *w = lua_touserdata(L, 1);
  if (w->op && !w->done) remote_cancel(w->op);   /* no callback after this */
  w->op = NULL;
  for (size_t i = 0; i < w->nkeys; i++) free(w->keys[i]);
  free(w->keys);
  free(w->klens);
  free(w->str);
  free(w->msg);
  w->keys = NULL;
  w->klens = NULL;
  w->str = w->msg = NULL;
  w->nkeys = 0;
  return 0;
}

static char *copy(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static void on_done(void *ud, const struct remote_result *r) {
  struct rwait *w = ud;
  w->op = NULL;
  w->done = 1;
  w->status = r->status;
  if (r->status == REMOTE_UNAVAILABLE) metrics_count_any(METRIC_REDIS_ERRORS);
  if (r->msg) w->msg = copy(r->msg, strlen(r->msg));
  w->val = r->val;
  if (r->status == REMOTE_OK) {
    if (w->kind == K_POP) {
      if (!(w->str = copy(r->data, r->len))) { w->status = REMOTE_UNAVAILABLE; w->msg = NULL; }
      w->len = r->len;
    } else if (w->kind == K_LEN) {
      w->len = r->len;
    } else if ((w->kind == K_GET || w->kind == K_INCR) && r->val.type == DV_STR) {
      if (!(w->str = copy(r->val.s, r->val.len))) w->status = REMOTE_UNAVAILABLE;
      w->val.s = w->str;
    } else if (w->kind == K_KEYS && r->nkeys) {
      w->keys = calloc(r->nkeys, sizeof *w->keys);
      w->klens = calloc(r->nkeys, sizeof *w->klens);
      if (!w->keys || !w->klens) w->status = REMOTE_UNAVAILABLE;
      for (size_t i = 0; w->keys && w->klens && i < r->nkeys; i++) {
        if (!(w->keys[i] = copy(r->keys[i], r->klens[i]))) { w->status = REMOTE_UNAVAILABLE; break; }
        w->klens[i] = r->klens[i];
        w->nkeys = i + 1;
      }
    }
  }
  task_complete(&w->tw);
}

static int rw_abandon(struct task_wait *tw, int why) {
  struct rwait *w = (struct rwait *)tw;
  w->why = why;
  if (w->done || !w->op) return 0;
  int gone;
  if (w->kind == K_POP) gone = remote_pop_abandon(w->op);
  else if (w->kind == K_PUSH) gone = remote_push_abandon(w->op);
  else { remote_cancel(w->op); gone = 1; }
  if (gone) w->op = NULL;
  return gone;
}

static int push_reason(lua_State *L, int kind, const char *reason) {
  if (kind == K_PUSH || kind == K_SET) lua_pushboolean(L, 0);
  else lua_pushnil(L);
  lua_pushstring(L, reason);
  return 2;
}

/* The answer for a wait given up early (why: a task_end). */
static int push_early(lua_State *L, struct rwait *w, int why) {
  if (why == TASK_DEADLINE) return vm_raise_deadline(L);
  if (why == TASK_CANCELLED) return push_reason(L, w->kind, "cancelled");
  if (why == TASK_SHUTDOWN) return push_reason(L, w->kind, "shutting down");
  return push_reason(L, w->kind, w->kind == K_PUSH ? "full" : "timeout");
}

static void push_val(lua_State *L, const struct dict_val *v) {
  switch (v->type) {
    case DV_BOOL: lua_pushboolean(L, v->b); break;
    case DV_INT: lua_pushinteger(L, v->i); break;
    case DV_FLOAT: lua_pushnumber(L, v->f); break;
    case DV_STR: lua_pushlstring(L, v->s, v->len); break;
    default: lua_pushnil(L);
  }
}

static int rw_result(lua_State *L, struct task_wait *tw) {
  struct rwait *w = (struct rwait *)tw;
  if (tw->end != TASK_DONE) return push_early(L, w, tw->end);
  if (w->status == REMOTE_ABANDONED) return push_early(L, w, w->why);
  if (w->why == TASK_DEADLINE) return vm_raise_deadline(L);
  switch (w->status) {
    case REMOTE_OK: break;
    case REMOTE_EXISTS: return push_reason(L, K_SET, "exists");
    case REMOTE_NOTFOUND: return push_reason(L, K_INCR, "not found");
    case REMOTE_NOTNUM: return push_reason(L, K_INCR, "not a number");
    case REMOTE_OVERFLOW: return push_reason(L, K_INCR, "overflow");
    case REMOTE_NOMEM: return push_reason(L, w->kind == K_INCR ? K_SET : w->kind, "no memory");
    case REMOTE_FULL: return push_reason(L, K_PUSH, "full");
    case REMOTE_EMPTY:
      return push_reason(L, K_POP, w->why == TASK_SHUTDOWN || instance_shutting_down()
                                       ? "shutting down" : "timeout");
    default:
      lua_pushnil(L);
      lua_pushfstring(L, "store unavailable: %s", w->msg ? w->msg : "out of memory");
      return 2;
  }
  switch (w->kind) {
    case K_GET: case K_INCR: push_val(L, &w->val); return 1;
    case K_LEN: lua_pushinteger(L, (lua_Integer)w->len); return 1;
    case K_KEYS:
      lua_createtable(L, (int)w->nkeys, 0);
      for (size_t i = 0; i < w->nkeys; i++) {
        lua_pushlstring(L, w->keys[i], w->klens[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return 1;
    case K_POP: {
      struct value v;
      memset(&v, 0, sizeof v);
      if (w->len < 1 || (unsigned char)w->str[0] != REMOTE_VALUE_VERSION)
        return luaL_error(L, "shared queue: an item in Redis is not a luahost value");
      v.data = w->str + 1;
      v.len = w->len - 1;
      if (value_decode(L, &v, 0) < 0)
        return luaL_error(L, "shared queue: an item in Redis is not a luahost value");
      return 1;
    }
    default: lua_pushboolean(L, 1); return 1;
  }
}

static struct rwait *new_wait(lua_State *L, int kind) {
  struct rwait *w = lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  w->kind = kind;
  w->tw.abandon = rw_abandon;
  w->tw.result = rw_result;
  if (kind == K_PUSH || kind == K_POP) w->tw.flags = TASK_ENDS_AT_SHUTDOWN;
  if (luaL_newmetatable(L, WAIT_MT)) {
    lua_pushcfunction(L, rwait_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return w;
}

static struct redis_client *client(lua_State *L) {
  struct task_loop *tl = task_io_loop(L);
  struct redis_client *c = tl ? redis_calls_client(tl, store_server) : NULL;
  if (!c) luaL_error(L, "not enough memory");
  return c;
}

/* After a start: wait, or answer a start that failed at once. */
static int wait_or_fail(lua_State *L, struct rwait *w, struct redis_client *c, int rc,
                        uint64_t timeout_ns) {
  metrics_count_any(METRIC_REDIS_COMMANDS);   /* /_ah/metrics: one store call */
  if (rc < 0) {
    metrics_count_any(METRIC_REDIS_ERRORS);
    if (rc == REDIS_E_NOMEM) return luaL_error(L, "not enough memory");
    lua_pushnil(L);
    lua_pushfstring(L, "store unavailable: %s", remote_error(c, rc));
    return 2;
  }
  return task_wait(L, &w->tw, timeout_ns);
}

int remote_calls_get(lua_State *L, const char *dict, const char *k, size_t kl) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_GET);
  int rc = remote_dict_get(c, dict, strlen(dict), k, kl, on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

int remote_calls_set(lua_State *L, const char *dict, const char *k, size_t kl,
                     const struct dict_val *v, uint64_t ttl_ms, int only_new) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_SET);
  int rc = remote_dict_set(c, dict, strlen(dict), k, kl, v, ttl_ms, only_new, on_done, w,
                           &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

int remote_calls_incr(lua_State *L, const char *dict, const char *k, size_t kl,
                      const struct dict_val *n, const struct dict_val *init) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_INCR);
  int rc = remote_dict_incr(c, dict, strlen(dict), k, kl, n, init, on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

int remote_calls_delete(lua_State *L, const char *dict, const char *k, size_t kl) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_DELETE);
  int rc = remote_dict_delete(c, dict, strlen(dict), k, kl, on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

int remote_calls_keys(lua_State *L, const char *dict, size_t max) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_KEYS);
  int rc = remote_dict_keys(c, dict, strlen(dict), max, on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

int remote_calls_flush(lua_State *L, const char *dict) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_FLUSH);
  int rc = remote_dict_flush(c, dict, strlen(dict), on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

/* ---- queue values --------------------------------------------------------- */

/* Refuses what cannot cross machines (functions, userdata: shared handles
 * are process-local) with bt.Error naming its path; the rest is
 * value_encode's to judge.  visited: a table at vidx. */
static void check_portable(lua_State *L, int idx, char *path, size_t plen, size_t cap,
                           int vidx, int depth) {
  int t = lua_type(L, idx);
  if (t == LUA_TFUNCTION || t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA) {
    vm_error_push(L, BT_CLASS_ERROR, NULL, "%s: cannot store a %s in a Redis queue (it "
                  "cannot cross machines)", path, t == LUA_TFUNCTION ? "function"
                  : "userdata (a shared handle or host object)");
    lua_error(L);
  }
  if (t != LUA_TTABLE || depth > VALUE_MAX_DEPTH) return;
  luaL_checkstack(L, 6, "value too deep");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, vidx) != LUA_TNIL) { lua_pop(L, 1); return; }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, vidx);
  int abs = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, abs)) {
    size_t n = plen;
    if (lua_type(L, -2) == LUA_TSTRING)
      n += (size_t)snprintf(path + plen, cap - plen, ".%s", lua_tostring(L, -2));
    else if (lua_isinteger(L, -2))
      n += (size_t)snprintf(path + plen, cap - plen, "[%lld]", (long long)lua_tointeger(L, -2));
    else
      n += (size_t)snprintf(path + plen, cap - plen, "[?]");
    if (n >= cap) n = cap - 1;
    check_portable(L, -2, path, n, cap, vidx, depth + 1);   /* keys too */
    check_portable(L, -1, path, n, cap, vidx, depth + 1);
    path[plen] = '\0';
    lua_pop(L, 1);
  }
}

int remote_calls_push(lua_State *L, const char *queue, uint64_t timeout_ns) {
  char path[256] = "value";
  lua_newtable(L);
  check_portable(L, 2, path, strlen(path), sizeof path, lua_gettop(L), 0);
  lua_pop(L, 1);
  struct value v;
  memset(&v, 0, sizeof v);
  bindings_encode(L, 2, "value", &v);
  /* the version byte, then the value's record */
  char *bytes = malloc(v.len + 1);
  if (!bytes) { value_free(&v); return luaL_error(L, "not enough memory"); }
  bytes[0] = REMOTE_VALUE_VERSION;
  memcpy(bytes + 1, v.data, v.len);
  size_t len = v.len + 1;
  value_free(&v);
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_PUSH);
  int wait = timeout_ns > 0;
  int rc = remote_queue_push(c, task_io_loop(L)->uv, queue, strlen(queue), bytes, len, wait,
                             on_done, w, &w->op);
  free(bytes);
  return wait_or_fail(L, w, c, rc, wait ? timeout_ns : TASK_NO_TIMEOUT);
}

int remote_calls_pop(lua_State *L, const char *queue, uint64_t timeout_ns) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_POP);
  uint64_t ms = timeout_ns == TASK_NO_TIMEOUT ? UINT64_MAX
                : timeout_ns == 0 ? 0 : (timeout_ns + 999999) / 1000000;
  if (instance_shutting_down()) ms = 0;   /* take what is there, wait for nothing */
  int rc = remote_queue_pop(c, queue, strlen(queue), ms, on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}

int remote_calls_len(lua_State *L, const char *queue) {
  struct redis_client *c = client(L);
  struct rwait *w = new_wait(L, K_LEN);
  int rc = remote_queue_len(c, queue, strlen(queue), on_done, w, &w->op);
  return wait_or_fail(L, w, c, rc, TASK_NO_TIMEOUT);
}
