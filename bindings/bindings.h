/*
 * bindings: the Lua modules the host gives to every state, one file each
 * (thin: argument checks, then host/ calls).  Each luaopen_* runs on the
 * thread that owns the state that requires it.
 */
#ifndef LUAHOST_BINDINGS_H
#define LUAHOST_BINDINGS_H

#include <lua.h>

int luaopen_runtime(lua_State *L);
int luaopen_apptest(lua_State *L);
int luaopen_shared(lua_State *L);
int luaopen_background_thread(lua_State *L);
int luaopen_json(lua_State *L);

/* Checks the thread target at idx (a Lua function or "module:function";
 * nil too when nil_ok), raising background_thread.Error naming what is
 * wrong.  For start_new_background_thread and runtime.set_shutdown_hook. */
void bindings_check_target(lua_State *L, int idx, int nil_ok);

#endif
