/*
 * background_thread: App Engine's background_thread API for Lua (SPEC §5),
 * thin over host/threads.  The BackgroundThread class and bt.join are Lua
 * (scripts/background_thread.lua, run when the module loads).
 *
 * Channels: misuse and refusals raise error objects of the classes
 * bt.Error, bt.FrontendsNotSupported, bt.BackgroundThreadLimitReachedError
 * (bt.Cancelled is raised inside a cancelled thread); join's expected
 * outcomes return nil, "timeout" | "unknown thread".
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings/bindings.h"
#include "threads.h"
#include "waits.h"
#include "task.h"
#include "vm/errors.h"
#include "vm/state.h"
#include "vm/value.h"

#define ERR BT_CLASS_ERROR

static void raise_class(lua_State *L, const char *cls, const char *msg) {
  vm_error_push(L, cls, strcmp(cls, ERR) ? ERR : NULL, "%s", msg);
  lua_error(L);
}

void bindings_encode(lua_State *L, int idx, const char *path, struct value *out) {
  char err[600];
  if (value_encode(L, idx, path, out, err, sizeof err) < 0) {
    value_free(out);
    raise_class(L, ERR, err);
  }
}

static void encode_arg(lua_State *L, int idx, const char *root, struct value *v,
                       struct value *others[2]) {
  char err[600];
  if (value_encode(L, idx, root, v, err, sizeof err) < 0) {
    value_free(v);
    for (int i = 0; i < 2; i++) if (others[i]) value_free(others[i]);
    raise_class(L, ERR, err);
  }
}

void bindings_check_target(lua_State *L, int idx, int nil_ok) {
  int tt = lua_type(L, idx);
  if (tt == LUA_TSTRING) {
    if (!threads_valid_target(lua_tostring(L, idx)))
      raise_class(L, ERR, lua_pushfstring(L, "target '%s': expected \"module:function\"",
                                          lua_tostring(L, idx)));
  } else if (tt == LUA_TFUNCTION) {
    if (lua_iscfunction(L, idx))
      raise_class(L, ERR, "target: a C function cannot cross to another state");
  } else if (!(nil_ok && (tt == LUA_TNIL || tt == LUA_TNONE))) {
    raise_class(L, ERR, lua_pushfstring(L, "target: expected a function%s \"module:function\" "
                                           "string%s, got %s", nil_ok ? "," : " or a",
                                        nil_ok ? " or nil" : "", luaL_typename(L, idx)));
  }
}

/* start_new_background_thread(target, args, kwargs) -> id */
static int start_new_background_thread(lua_State *L) {
  if (vm_role(L) != VM_BACKEND)
    raise_class(L, BT_CLASS_FRONTENDS,
                "background threads are not supported on frontend instances "
                "(set role = \"backend\" in app.lua or --role backend)");
  bindings_check_target(L, 1, 0);
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    raise_class(L, ERR, lua_pushfstring(L, "args: expected an array or nil, got %s",
                                        luaL_typename(L, 2)));
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    raise_class(L, ERR, lua_pushfstring(L, "kwargs: expected a table or nil, got %s",
                                        luaL_typename(L, 3)));
  struct value target = {0}, args = {0}, kwargs = {0};
  struct value *none[2] = {NULL, NULL}, *t_only[2] = {&target, NULL},
               *t_args[2] = {&target, &args};
  encode_arg(L, 1, "target", &target, none);
  if (lua_istable(L, 2)) encode_arg(L, 2, "args", &args, t_only);
  if (lua_istable(L, 3)) encode_arg(L, 3, "kwargs", &kwargs, t_args);
  char err[512];
  int64_t id = threads_start(&target, &args, &kwargs, err, sizeof err);
  if (id == LH_ELIMIT) raise_class(L, BT_CLASS_LIMIT, err);
  if (id < 0) raise_class(L, ERR, err);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

static int64_t check_id(lua_State *L, int idx) {
  return (int64_t)luaL_checkinteger(L, idx);
}

static int release_box(lua_State *L) {
  struct queue **box = lua_touserdata(L, 1);
  if (*box) queue_release(*box);
  *box = NULL;
  return 0;
}

/* _join_raw(id, timeout) -> outcome table | nil, reason (bt.join is Lua) */
static int join_raw(lua_State *L) {
  int64_t id = check_id(L, 1);
  uint64_t timeout = task_check_timeout(L, 2);
  if (id == vm_current(L)->thread_id)
    raise_class(L, ERR, "a background thread cannot join itself");
  struct queue *q = threads_outcome(id);
  if (!q) {
    lua_pushnil(L);
    lua_pushliteral(L, "unknown thread");
    return 2;
  }
  /* Our reference to the outcome queue lives in a box on this stack (it
   * survives a yield) and is released when the box is collected. */
  struct queue **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = q;
  if (luaL_newmetatable(L, "luahost.bt.outcome")) {
    lua_pushcfunction(L, release_box);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return waits_pop(L, q, timeout);
}

static int forget(lua_State *L) {
  threads_forget(check_id(L, 1));
  return 0;
}

static int is_alive(lua_State *L) {
  lua_pushboolean(L, threads_is_alive(check_id(L, 1)));
  return 1;
}

static int active_count(lua_State *L) {
  lua_pushinteger(L, threads_active());
  return 1;
}

static int max_threads(lua_State *L) {
  lua_pushinteger(L, threads_max());
  return 1;
}

static int current_thread_id(lua_State *L) {
  int64_t id = vm_current(L)->thread_id;
  if (id) lua_pushinteger(L, (lua_Integer)id); else lua_pushnil(L);
  return 1;
}

static int cancel(lua_State *L) {
  lua_pushboolean(L, threads_cancel(check_id(L, 1)));
  return 1;
}

/* Default thread names: one counter for the process, any thread (atomic). */
static atomic_int names;
static int next_name(lua_State *L) {
  lua_pushfstring(L, "BackgroundThread-%d", atomic_fetch_add(&names, 1) + 1);
  return 1;
}

/* _error_from(class_chain, text) -> an instance of the class, its message
 * the text without the "<class>: " that tostring puts back (a thread's
 * error object, rebuilt in the joiner's state). */
static int error_from(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len, nlen = 0;
  const char *text = luaL_checklstring(L, 2, &len);
  lua_rawgeti(L, 1, 1);
  const char *name = lua_tolstring(L, -1, &nlen);
  if (name && len > nlen + 1 && !memcmp(text, name, nlen) && text[nlen] == ':' &&
      text[nlen + 1] == ' ') {
    text += nlen + 2;
    len -= nlen + 2;
  }
  vm_error_from_chain(L, 1, text, len);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"_error_from", error_from},
  {"start_new_background_thread", start_new_background_thread},
  {"is_alive", is_alive},
  {"active_count", active_count},
  {"max_threads", max_threads},
  {"current_thread_id", current_thread_id},
  {"cancel", cancel},
  {"_join_raw", join_raw},
  {"_forget", forget},
  {"_next_name", next_name},
  {NULL, NULL}
};

int luaopen_background_thread(lua_State *L) {
  static const char *const classes[][2] = {
    {"Error", NULL}, {"FrontendsNotSupported", ERR},
    {"BackgroundThreadLimitReachedError", ERR}, {"Cancelled", ERR}};
  luaL_newlib(L, funcs);
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    char name[96];
    snprintf(name, sizeof name, "background_thread.%s", classes[i][0]);
    vm_error_class(L, name, classes[i][1]);
    lua_setfield(L, -2, classes[i][0]);
  }
  /* the Lua part: BackgroundThread and join */
  if (vm_load_script(L, "background_thread") != LUA_OK) return lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  return 1;
}
