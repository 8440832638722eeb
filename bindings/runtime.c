/*
 * runtime: role, IDs, sleep, log, monotonic clock, memory usage and
 * DeadlineExceededError.  sleep yields inside a request coroutine that
 * can wait on its loop and blocks the thread elsewhere.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/clock.h"
#include "base/instance.h"
#include "base/log.h"
#include "bindings/bindings.h"
#include "vm/errors.h"
#include "threads.h"
#include "vm/state.h"
#include "vm/value.h"


static int role(lua_State *L) {
  lua_pushstring(L, vm_of(L)->role == VM_BACKEND ? "backend" : "frontend");
  return 1;
}

static int instance_id_(lua_State *L) {
  lua_pushstring(L, instance_id());
  return 1;
}

static int request_id(lua_State *L) {
  const char *rid = vm_of(L)->current->request_id;
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

static int sleep_done(lua_State *L, int status, lua_KContext k) {
  struct vm_task *t = vm_of(L)->current;
  if (t->deadline_ns && clock_now_ns() >= t->deadline_ns && !t->woken_early)
    vm_raise_deadline(L);
  lua_pushboolean(L, !t->woken_early);
  t->woken_early = 0;
  return 1;
}

/* runtime.sleep(seconds) -> true, or false when woken early by shutdown.
 * Channel: argument errors raise; DeadlineExceededError raises. */
static int sleep_(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s <= 1e9, 1, "expected a number of seconds >= 0");
  struct vm_task *t = vm_of(L)->current;
  uint64_t ns = (uint64_t)(s * 1e9);
  if (instance_shutting_down()) { lua_pushboolean(L, 0); return 1; }
  if (vm_can_yield(L)) {
    if (t->waiter->sleep(t, ns) < 0) return luaL_error(L, "runtime.sleep: cannot arm a timer");
    return lua_yieldk(L, 0, 0, sleep_done);
  }
  if (t->waiter && !t->waiter->yields) {   /* a background thread: shutdown or cancel wake it */
    lua_pushboolean(L, t->waiter->sleep(t, ns));
    return 1;
  }
  /* No loop to wait on: block this thread, in slices so that shutdown and
   * the deadline are noticed. */
  uint64_t end = clock_now_ns() + ns;
  for (;;) {
    uint64_t now = clock_now_ns();
    if (t->deadline_ns && now >= t->deadline_ns) vm_raise_deadline(L);
    if (instance_shutting_down()) { lua_pushboolean(L, 0); return 1; }
    if (now >= end) break;
    uint64_t step = end - now < 10000000 ? end - now : 10000000;
    struct timespec ts = {0, (long)step};
    nanosleep(&ts, NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* runtime.log(level, fmt, ...): a line tagged with the request ID.
 * Upvalue: string.format as the module found it (an app that replaces the
 * global changes nothing here). */
static int log_(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warning", "error", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  luaL_checkstring(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);     /* stack: format fmt ... */
  lua_call(L, lua_gettop(L) - 1, 1);
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  vm_log(vm_of(L), level, msg, len);
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
  lua_pushinteger(L, (lua_Integer)vm_of(L)->used);
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
  char err[600];
  bindings_check_target(L, 1, 1);
  if (!lua_isnoneornil(L, 1)) {
    if (value_encode(L, 1, "target", &v, err, sizeof err) < 0) {
      value_free(&v);
      vm_error_push(L, "background_thread.Error", NULL, "%s", err);
      return lua_error(L);
    }
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
  {"instance_id", instance_id_},
  {"request_id", request_id},
  {"is_shutting_down", is_shutting_down},
  {"sleep", sleep_},
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
  lua_pushcclosure(L, log_, 1);
  lua_setfield(L, -4, "log");
  lua_pop(L, 2);
  vm_error_class(L, VM_DEADLINE_CLASS, NULL);
  lua_setfield(L, -2, "DeadlineExceededError");
  return 1;
}
