/* vm/call: protected calls and resumes with tracebacks. */
#include "vm/call.h"

#include <lauxlib.h>

#include "vm/internal.h"
#include "vm/state.h"

static const char TB_KEY[] = "luahost.traceback";

/* Message handler: the error value is kept as raised (a message stays
 * the message, an object the object) and the traceback is stored aside,
 * for vm_error_text. */
static int msghandler(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, TB_KEY);
  return 1;
}

int vm_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  struct vm *vm = vm_of(L);
  int was_on = vm->limit_on;
  vm->limit_on = 1;
  int st = lua_pcall(L, nargs, nresults, base);
  vm->limit_on = was_on;
  if (st != LUA_OK) vm_arm_hook(L);   /* a deadline may have re-armed it */
  lua_remove(L, base);
  return st;
}

int vm_resume(struct vm_task *t, int nargs, int *nres) {
  lua_State *co = t->co;
  struct vm *vm = vm_of(co);
  struct vm_task *prev = vm->current;
  int was_on = vm->limit_on;
  vm->current = t;
  vm->limit_on = 1;
  int st = lua_resume(co, NULL, nargs, nres);
  vm->current = prev;
  vm->limit_on = 0;
  if (st != LUA_OK && st != LUA_YIELD) {
    luaL_traceback(co, co, NULL, 0);
    lua_setfield(co, LUA_REGISTRYINDEX, TB_KEY);
  }
  vm->limit_on = was_on;
  return st;
}

static int describe(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  if (lua_getfield(L, LUA_REGISTRYINDEX, TB_KEY) == LUA_TSTRING) {
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
  return 1;
}

const char *vm_error_text(lua_State *L) {
  lua_pushcfunction(L, describe);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(error object whose __tostring failed)");
  }
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, TB_KEY);
  return lua_tostring(L, -1);
}

/* require(name) under vm_pcall.  Stack: name -> module value. */
static int require_protected(lua_State *L) {
  lua_getglobal(L, "require");
  lua_insert(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

int vm_require(lua_State *L, const char *name) {
  lua_pushcfunction(L, require_protected);
  lua_pushstring(L, name);
  int st = vm_pcall(L, 1, 1);
  if (st != LUA_OK) vm_error_text(L);
  return st;
}
