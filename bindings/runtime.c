/*
 * runtime: role, IDs, sleep, log, monotonic clock, memory usage and
 * DeadlineExceededError.  sleep yields inside a request coroutine that
 * can wait on its loop and blocks the thread elsewhere.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/clock.h"
#include "base/instance.h"
#include "bindings/bindings.h"
#include "req.h"
#include "vm/errors.h"
#include "threads.h"
#include "vm/state.h"
#include "vm/value.h"
#include "waits.h"


static int role(lua_State *L) {
  lua_pushstring(L, vm_role(L) == VM_BACKEND ? "backend" : "frontend");
  return 1;
}

static int runtime_instance_id(lua_State *L) {
  lua_pushstring(L, instance_id());
  return 1;
}

static int request_id(lua_State *L) {
  const char *rid = vm_current(L)->request_id;
  if (rid) lua_pushstring(L, rid); else lua_pushnil(L);
  return 1;
}

static int is_shutting_down(lua_State *L) {
  lua_pushboolean(L, instance_shutting_down());
  return 1;
}

static int monotonic(lua_State *L) {
  lua_pushnumber(L, (lua_Number)(clock_now_ns() / 1000) / 1e6);
  return 1;
}

/* runtime.sleep(seconds) -> true, or false when cancel or shutdown woke
 * it early.  Channel: argument errors raise; DeadlineExceededError raises. */
static int runtime_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s <= 1e9, 1, "expected a number of seconds >= 0");
  lua_settop(L, 1);
  return waits_sleep(L, (uint64_t)(s * 1e9));
}

/* runtime.log(level, fmt, ...): a line tagged with the request ID.
 * Upvalue: string.format as the module found it (an app that replaces the
 * global changes nothing here). */
static int runtime_log(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warning", "error", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  luaL_checkstring(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);     /* stack: format fmt ... */
  lua_call(L, lua_gettop(L) - 1, 1);
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  vm_log(L, level, msg, len);
  return 0;
}

static size_t rss_bytes(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static int memory_usage(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)vm_memory_used(L));
  lua_setfield(L, -2, "lua");
  lua_pushinteger(L, (lua_Integer)rss_bytes());
  lua_setfield(L, -2, "process");
  return 1;
}

/* runtime.set_shutdown_hook(target) -> the previous hook's target (or
 * nil); target as in start_new_background_thread, or nil to clear.
 * Misuse raises background_thread.Error. */
static int set_shutdown_hook(lua_State *L) {
  struct value v = {0}, prev = {0};
  bindings_check_target(L, 1, 1);
  if (!lua_isnoneornil(L, 1)) {
    bindings_encode(L, 1, "target", &v);
    threads_set_hook(&v, &prev);
  } else {
    threads_set_hook(NULL, &prev);
  }
  value_free(&v);
  if (!prev.len || value_decode(L, &prev, 1) < 0) lua_pushnil(L);
  value_free(&prev);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"set_shutdown_hook", set_shutdown_hook},
  {"role", role},
  {"instance_id", runtime_instance_id},
  {"request_id", request_id},
  {"is_shutting_down", is_shutting_down},
  {"sleep", runtime_sleep},
  {"log", NULL},          /* a closure: see luaopen_runtime */
  {"monotonic", monotonic},
  {"memory_usage", memory_usage},
  {NULL, NULL}
};

int luaopen_runtime(lua_State *L) {
  luaL_newlib(L, funcs);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_STRLIBNAME);
  if (lua_getfield(L, -1, "format") != LUA_TFUNCTION)
    return luaL_error(L, "runtime: the string library is not loaded");
  lua_pushcclosure(L, runtime_log, 1);
  lua_setfield(L, -4, "log");
  lua_pop(L, 2);
  vm_error_class(L, VM_DEADLINE_CLASS, NULL);
  lua_setfield(L, -2, "DeadlineExceededError");
  vm_error_class(L, REQ_FORM_ERROR, NULL);   /* what req.form raises on a malformed body */
  lua_setfield(L, -2, "FormError");
  return 1;
}
