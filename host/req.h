/*
 * req: the fields of a handler's `req` that are computed on first use:
 * req.form, req.files (http/form.c over req.body and its Content-Type),
 * req.cookies (the Cookie header) and req.captures when the route has
 * none.  They come from one metatable shared by every req of a state, so
 * a request that never reads them pays only for setting it (the metatable
 * is marked VALUE_PLAIN_MT: req still crosses to queues and threads, as a
 * plain table of the fields it holds).  A malformed
 * form body raises a FormError (vm/errors class "runtime.FormError", runtime.FormError to Lua, with the
 * field status = 400, or 413 for too many parts) that the runner answers
 * with that status when the handler does not catch it.  Runs on the
 * thread that owns the state.
 */
#ifndef LUAHOST_REQ_H
#define LUAHOST_REQ_H

#include <lua.h>

#define REQ_FORM_ERROR "runtime.FormError"

/* Pushes the metatable for req tables (one per state: call once, keep it). */
void req_push_meta(lua_State *L);

/* When the value at idx is a FormError: 1 with its status; else 0. */
int req_form_error_status(lua_State *L, int idx, int *status);

#endif
