/*
 * bindings: the Lua modules the host gives to every state, one file each
 * (thin: argument checks, then host/ calls).  Each luaopen_* runs on the
 * thread that owns the state that requires it.
 */
#ifndef LUAHOST_BINDINGS_H
#define LUAHOST_BINDINGS_H

#include <lua.h>

#include "vm/value.h"

/* The error classes of background_thread, named once here (SPEC §5). */
#define BT_CLASS_ERROR "background_thread.Error"
#define BT_CLASS_FRONTENDS "background_thread.FrontendsNotSupported"
#define BT_CLASS_LIMIT "background_thread.BackgroundThreadLimitReachedError"
#define BT_CLASS_CANCELLED "background_thread.Cancelled"

int luaopen_runtime(lua_State *L);
int luaopen_apptest(lua_State *L);
int luaopen_shared(lua_State *L);
int luaopen_background_thread(lua_State *L);
int luaopen_urlfetch(lua_State *L);
int luaopen_json(lua_State *L);
int luaopen_redis(lua_State *L);

/* Checks the thread target at idx (a Lua function or "module:function";
 * nil too when nil_ok), raising background_thread.Error naming what is
 * wrong.  For start_new_background_thread and runtime.set_shutdown_hook. */
void bindings_check_target(lua_State *L, int idx, int nil_ok);

/* Encodes the value at idx into out (vm/value), raising bt.Error naming
 * where a value that cannot cross sits (path is the root's name: "value",
 * "args").  out is freed on failure. */
void bindings_encode(lua_State *L, int idx, const char *path, struct value *out);

#endif
