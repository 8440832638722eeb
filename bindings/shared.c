/*
 * shared: process-wide dicts and queues (SPEC §7), thin over store/.
 * Handles are userdata proxies holding a retained C object; they cross
 * states by reference (registered with vm/value).
 *
 * Channels: misuse (bad arguments, values that cannot be stored) raises;
 * expected outcomes return nil|false plus a reason: set/add ->
 * false, "no memory" | "exists"; incr -> nil, "not found" | "not a number" |
 * "overflow";
 * push -> false, "full" | "shutting down"; pop -> nil, "timeout" |
 * "shutting down".  A waiting push/pop yields inside a request coroutine
 * (the worker resumes it) and blocks the thread elsewhere.
 *
 * Two stores behind the same API: the memory store (store/dict, queue)
 * or, with app.lua `shared.store`, Redis (host/remote_calls, where every
 * call is a §9 wait).  The handles are the same either way: the memory
 * objects carry the name and the references.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "remote_calls.h"
#include "bindings/bindings.h"
#include "task.h"
#include "waits.h"
#include "store/dict.h"
#include "store/queue.h"
#include "vm/state.h"
#include "vm/value.h"

#define DICT_MT "luahost.shared.Dict"
#define QUEUE_MT "luahost.shared.Queue"

struct proxy { void *obj; };   /* NULL once closed */

/* ---- handle types for vm/value ----------------------------------------- */

static void *proxy_get(lua_State *L, int idx) {
  struct proxy *p = lua_touserdata(L, idx);
  return p ? p->obj : NULL;
}

static void ensure_class(lua_State *L, const char *mt);

static void push_proxy(lua_State *L, void *obj, const char *mt) {
  ensure_class(L, mt);
  struct proxy *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->obj = NULL;
  luaL_setmetatable(L, mt);
  p->obj = obj;
}

static void retain_dict(void *o) { dict_retain(o); }
static void release_dict(void *o) { dict_release(o); }
static void retain_queue(void *o) { queue_retain(o); }
static void release_queue(void *o) { queue_release(o); }
static void push_dict(lua_State *L, void *o) { dict_retain(o); push_proxy(L, o, DICT_MT); }
static void push_queue(lua_State *L, void *o) { queue_retain(o); push_proxy(L, o, QUEUE_MT); }

static const struct value_handle_type dict_handle = {
  DICT_MT, proxy_get, retain_dict, release_dict, push_dict};
static const struct value_handle_type queue_handle = {
  QUEUE_MT, proxy_get, retain_queue, release_queue, push_queue};

/* The handle types are registered with vm/value once per process, by the
 * first state that requires the module (pthread_once: any thread). */
static pthread_once_t registered = PTHREAD_ONCE_INIT;
static void register_types(void) {
  value_register_handle_type(&dict_handle);
  value_register_handle_type(&queue_handle);
}

/* ---- dict ------------------------------------------------------------- */

/* The proxy at index 1, checked against the class metatable that the
 * methods carry as upvalue 1 (cheaper than a registry lookup per call). */
static struct proxy *check_proxy(lua_State *L, const char *mt) {
  struct proxy *p = lua_touserdata(L, 1);
  if (!p || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, mt);
  lua_pop(L, 1);
  return p;
}

static struct dict *check_dict(lua_State *L) {
  struct proxy *p = check_proxy(L, DICT_MT);
  if (!p->obj) luaL_argerror(L, 1, "shared dict handle is closed");
  return p->obj;
}

static const char *check_key(lua_State *L, int idx, size_t *len) {
  const char *k = luaL_checklstring(L, idx, len);
  if (*len == 0) luaL_argerror(L, idx, "key must not be empty");
  return k;
}

/* The value at idx as a dict value; raises for other types. */
static void check_val(lua_State *L, int idx, struct dict_val *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: case LUA_TNONE: v->type = DV_NIL; break;
    case LUA_TBOOLEAN: v->type = DV_BOOL; v->b = lua_toboolean(L, idx); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) { v->type = DV_INT; v->i = lua_tointeger(L, idx); }
      else { v->type = DV_FLOAT; v->f = lua_tonumber(L, idx); }
      break;
    case LUA_TSTRING: v->type = DV_STR; v->s = lua_tolstring(L, idx, &v->len); break;
    default:
      luaL_argerror(L, idx, lua_pushfstring(L, "expected nil, boolean, number or string, "
                                               "got %s", luaL_typename(L, idx)));
  }
}

static uint64_t check_ttl(lua_State *L, int idx) {
  lua_Number t = luaL_optnumber(L, idx, 0);
  luaL_argcheck(L, t >= 0 && t < 1e12, idx, "ttl must be a number of seconds >= 0");
  return t > 0 && t < 0.001 ? 1 : (uint64_t)(t * 1000.0 + 0.5);
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

/* false, reason (set, add). */
static int fail(lua_State *L, int rc) {
  lua_pushboolean(L, 0);
  lua_pushstring(L, lh_strerror(rc));
  return 2;
}

/* A per-thread copy buffer for string values read from dicts, made on a
 * thread's first get and freed by the key's destructor when the thread
 * ends (background threads are one-shot: a plain thread-local would leak
 * each one's buffer). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_free(void *p) {
  struct dict_buf *b = p;
  free(b->p);
  free(b);
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }
static struct dict_buf *scratch(void) {
  pthread_once(&scratch_once, scratch_init);
  struct dict_buf *b = pthread_getspecific(scratch_key);
  if (!b && (b = calloc(1, sizeof *b)) && pthread_setspecific(scratch_key, b) != 0) {
    free(b);
    b = NULL;
  }
  return b;
}

static int d_get(lua_State *L) {
  struct dict *d = check_dict(L);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  if (remote_calls_on()) return remote_calls_get(L, dict_name(d), k, kl);
  struct dict_val v;
  struct dict_buf *buf = scratch();
  if (!buf || dict_get(d, k, kl, &v, buf) != LH_OK) return luaL_error(L, "not enough memory");
  push_val(L, &v);
  return 1;
}

/* set and add: the same arguments and answers, one store call apart. */
static int store_with(lua_State *L, int (*op)(struct dict *, const char *, size_t,
                                              const struct dict_val *, uint64_t)) {
  struct dict *d = check_dict(L);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  struct dict_val v;
  check_val(L, 3, &v);
  if (remote_calls_on())
    return remote_calls_set(L, dict_name(d), k, kl, &v, check_ttl(L, 4), op == dict_add);
  int rc = op(d, k, kl, &v, check_ttl(L, 4));
  if (rc != LH_OK) return fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int d_set(lua_State *L) { return store_with(L, dict_set); }
static int d_add(lua_State *L) { return store_with(L, dict_add); }

static int d_incr(lua_State *L) {
  struct dict *d = check_dict(L);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  struct dict_val n, init, out;
  luaL_checktype(L, 3, LUA_TNUMBER);   /* a numeric string is not a number here */
  check_val(L, 3, &n);
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TNUMBER);
    check_val(L, 4, &init);
  }
  if (remote_calls_on())
    return remote_calls_incr(L, dict_name(d), k, kl, &n, lua_isnoneornil(L, 4) ? NULL : &init);
  int rc = dict_incr(d, k, kl, &n, lua_isnoneornil(L, 4) ? NULL : &init, &out);
  if (rc == LH_ENOMEM) return fail(L, rc);
  if (rc != LH_OK) {   /* nil, "not found" | "not a number" */
    lua_pushnil(L);
    lua_pushstring(L, lh_strerror(rc));
    return 2;
  }
  push_val(L, &out);
  return 1;
}

static int d_delete(lua_State *L) {
  struct dict *d = check_dict(L);
  size_t kl;
  const char *k = check_key(L, 2, &kl);
  if (remote_calls_on()) return remote_calls_delete(L, dict_name(d), k, kl);
  dict_delete(d, k, kl);
  lua_pushboolean(L, 1);
  return 1;
}

static int d_flush_all(lua_State *L) {
  if (remote_calls_on()) return remote_calls_flush(L, dict_name(check_dict(L)));
  dict_flush_all(check_dict(L));
  lua_pushboolean(L, 1);
  return 1;
}

/* Keys are copied out under the dict's lock, pushed after it. */
struct keybuf { char *p; size_t len, cap; size_t n; int oom; };

static void collect_key(void *ud, const char *k, size_t kl) {
  struct keybuf *b = ud;
  if (b->oom) return;
  if (b->len + kl + sizeof(size_t) > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + kl + sizeof(size_t)) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, &kl, sizeof kl);
  memcpy(b->p + b->len + sizeof kl, k, kl);
  b->len += sizeof kl + kl;
  b->n++;
}

static int d_keys(lua_State *L) {
  struct dict *d = check_dict(L);
  lua_Integer max = luaL_optinteger(L, 2, 1024);
  luaL_argcheck(L, max >= 0, 2, "max must be >= 0 (0: all keys)");
  if (remote_calls_on()) return remote_calls_keys(L, dict_name(d), (size_t)max);
  struct keybuf b = {0};
  dict_keys(d, (size_t)max, collect_key, &b);
  if (b.oom) { free(b.p); return luaL_error(L, "not enough memory"); }
  /* pushing may raise: keep b.p owned by a to-be-collected box */
  char *copy = lua_newuserdatauv(L, b.len ? b.len : 1, 0);
  if (b.len) memcpy(copy, b.p, b.len);
  free(b.p);
  lua_createtable(L, (int)b.n, 0);
  size_t off = 0;
  for (size_t i = 1; i <= b.n; i++) {
    size_t kl;
    memcpy(&kl, copy + off, sizeof kl);
    lua_pushlstring(L, copy + off + sizeof kl, kl);
    lua_rawseti(L, -2, (lua_Integer)i);
    off += sizeof kl + kl;
  }
  return 1;
}

/* ---- queue ------------------------------------------------------------ */

static struct queue *check_queue(lua_State *L) {
  struct proxy *p = check_proxy(L, QUEUE_MT);
  if (!p->obj) luaL_argerror(L, 1, "shared queue handle is closed");
  return p->obj;
}

static int q_push(lua_State *L) {
  struct queue *q = check_queue(L);
  luaL_checkany(L, 2);
  uint64_t timeout = task_check_timeout(L, 3);
  lua_settop(L, 2);
  if (remote_calls_on()) return remote_calls_push(L, queue_name(q), timeout);
  bindings_encode(L, 2, "value", waits_push_slot(L, q));
  return waits_push(L, timeout);
}

static int q_pop(lua_State *L) {
  struct queue *q = check_queue(L);
  uint64_t timeout = task_check_timeout(L, 2);
  lua_settop(L, 1);
  if (remote_calls_on()) return remote_calls_pop(L, queue_name(q), timeout);
  return waits_pop(L, q, timeout);
}

static int q_len(lua_State *L) {
  if (remote_calls_on()) return remote_calls_len(L, queue_name(check_queue(L)));
  lua_pushinteger(L, (lua_Integer)queue_len(check_queue(L)));
  return 1;
}

/* ---- module ----------------------------------------------------------- */

/* __gc and __close of both proxy classes.  The argument is checked
 * against the two metatables: Lua code can reach this function (through
 * getmetatable) and hand it any value. */
static int proxy_close(lua_State *L) {
  struct proxy *p;
  if ((p = luaL_testudata(L, 1, DICT_MT)) && p->obj) dict_release(p->obj);
  else if ((p = luaL_testudata(L, 1, QUEUE_MT)) && p->obj) queue_release(p->obj);
  else return 0;
  p->obj = NULL;
  return 0;
}

static int d_tostring(lua_State *L) {
  struct proxy *p = luaL_checkudata(L, 1, DICT_MT);
  lua_pushfstring(L, "shared.dict(\"%s\")", p->obj ? dict_name(p->obj) : "closed");
  return 1;
}

static int q_tostring(lua_State *L) {
  struct proxy *p = luaL_checkudata(L, 1, QUEUE_MT);
  lua_pushfstring(L, "shared.queue(\"%s\")", p->obj ? queue_name(p->obj) : "closed");
  return 1;
}

static const char *check_name(lua_State *L, size_t *len) {
  const char *name = luaL_checklstring(L, 1, len);
  luaL_argcheck(L, *len > 0 && *len <= 255, 1, "name must be 1 to 255 bytes");
  return name;
}

static int open_dict(lua_State *L) {
  size_t n;
  const char *name = check_name(L, &n);
  struct dict *d = dict_open(name, n);
  if (!d) return luaL_error(L, "not enough memory");
  push_proxy(L, d, DICT_MT);
  return 1;
}

static int open_queue(lua_State *L) {
  size_t n;
  const char *name = check_name(L, &n);
  struct queue *q = queue_open(name, n);
  if (!q) return luaL_error(L, "not enough memory");
  push_proxy(L, q, QUEUE_MT);
  return 1;
}

static const luaL_Reg dict_methods[] = {
  {"get", d_get}, {"set", d_set}, {"add", d_add}, {"incr", d_incr},
  {"delete", d_delete}, {"keys", d_keys}, {"flush_all", d_flush_all}, {NULL, NULL}};
static const luaL_Reg queue_methods[] = {
  {"push", q_push}, {"pop", q_pop}, {"len", q_len}, {NULL, NULL}};

static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                      lua_CFunction tostring) {
  if (!luaL_newmetatable(L, mt)) { lua_pop(L, 1); return; }   /* made already */
  lua_newtable(L);
  lua_pushvalue(L, -2);             /* the metatable, as the methods' upvalue */
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, proxy_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, proxy_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* A proxy's metatable in L, made when the first proxy of its kind is
 * (a handle may arrive, copied, in a state that never required "shared";
 * a thread that only uses queues never pays for the dict class). */
static void ensure_class(lua_State *L, const char *mt) {
  if (strcmp(mt, DICT_MT) == 0) new_class(L, DICT_MT, dict_methods, d_tostring);
  else new_class(L, QUEUE_MT, queue_methods, q_tostring);
}

int luaopen_shared(lua_State *L) {
  static const luaL_Reg funcs[] = {{"dict", open_dict}, {"queue", open_queue}, {NULL, NULL}};
  pthread_once(&registered, register_types);
  luaL_newlib(L, funcs);
  return 1;
}
