/* vm/errors: error classes and instances. */
#include "vm/errors.h"

#include <stdarg.h>
#include <string.h>

#include <lauxlib.h>

static const char REG_KEY[] = "luahost.errors";

static int err_tostring(lua_State *L) {
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__name");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "error"), luaL_optstring(L, -1, ""));
  return 1;
}

/* cls:is_instance(v): v's metatable is cls or descends from it. */
static int err_is_instance(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_istable(L, 2) || !lua_getmetatable(L, 2)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  for (int depth = 0; depth < 32 && lua_istable(L, -1); depth++) {
    if (lua_rawequal(L, -1, 1)) { lua_pushboolean(L, 1); return 1; }
    lua_pushliteral(L, "__parent");
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* cls(message): a new instance, as raising code would make it. */
static int err_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len = 0;
  const char *msg = lua_isnoneornil(L, 2) ? "" : luaL_tolstring(L, 2, &len);
  lua_createtable(L, 0, 1);
  lua_pushlstring(L, msg, len);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, 1);
  lua_setmetatable(L, -2);
  return 1;
}

void vm_error_class(lua_State *L, const char *name, const char *parent) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_KEY);
  if (lua_getfield(L, -1, name) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 6);                 /* stack: reg cls */
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, err_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, err_is_instance);
  lua_setfield(L, -2, "is_instance");
  lua_createtable(L, 0, 2);                 /* the class's own metatable */
  lua_pushcfunction(L, err_new);
  lua_setfield(L, -2, "__call");            /* stack: reg cls clsmt */
  if (parent) {
    vm_error_class(L, parent, NULL);        /* stack: reg cls clsmt parent */
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "__parent");
    lua_setfield(L, -2, "__index");         /* inherit methods */
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  lua_remove(L, -2);                        /* stack: cls */
}

void vm_error_push(lua_State *L, const char *name, const char *parent,
                   const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 1);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  vm_error_class(L, name, parent);
  lua_setmetatable(L, -2);
}

int vm_error_is(lua_State *L, int idx, const char *name) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  int found = 0;
  for (int depth = 0; depth < 32 && lua_istable(L, -1); depth++) {
    lua_getfield(L, -1, "__name");
    found = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), name);
    lua_pop(L, 1);
    if (found) break;
    lua_pushliteral(L, "__parent");
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return found;
}

int vm_error_chain(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L);
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;   /* top+1: cls */
  lua_getfield(L, LUA_REGISTRYINDEX, REG_KEY);                      /* top+2: reg */
  lua_newtable(L);                                                  /* top+3: names */
  int n = 0, ours = lua_istable(L, top + 2);
  while (ours && lua_istable(L, top + 1)) {
    lua_pushliteral(L, "__name");   /* raw: a foreign metatable runs no code here */
    if (n == 32 || lua_rawget(L, top + 1) != LUA_TSTRING) { ours = 0; break; }
    /* a class made here is in the registry under its name */
    lua_pushvalue(L, top + 4);
    lua_rawget(L, top + 2);
    ours = lua_rawequal(L, top + 5, top + 1);
    lua_pop(L, 1);
    if (!ours) break;
    lua_rawseti(L, top + 3, ++n);
    lua_pushliteral(L, "__parent");
    lua_rawget(L, top + 1);
    lua_replace(L, top + 1);
  }
  if (!ours || n == 0) { lua_settop(L, top); return 0; }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 1;
}

void vm_error_from_chain(lua_State *L, int chain_idx, const char *msg, size_t len) {
  chain_idx = lua_absindex(L, chain_idx);
  const char *parent = NULL;   /* the strings stay alive in the chain */
  for (lua_Integer i = (lua_Integer)lua_rawlen(L, chain_idx); i >= 1; i--) {
    if (lua_rawgeti(L, chain_idx, i) == LUA_TSTRING) {
      const char *name = lua_tostring(L, -1);
      vm_error_class(L, name, parent);
      lua_pop(L, 1);
      parent = name;
    }
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 1);
  lua_pushlstring(L, msg, len);
  lua_setfield(L, -2, "message");
  vm_error_class(L, parent ? parent : "error", NULL);
  lua_setmetatable(L, -2);
}
