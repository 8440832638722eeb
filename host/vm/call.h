/*
 * vm/call: the one way the host calls into Lua.  vm_pcall is lua_pcall
 * with a message handler that keeps error objects and records a traceback;
 * vm_resume resumes a coroutine and, on error, records the coroutine's
 * traceback.  vm_error_text turns the error at the top into one string
 * (tostring of the error, protected, plus the traceback).  Caller's thread.
 *
 * The rule: outside host/vm no code calls lua_pcall; it calls vm_pcall
 * (or vm_require, vm_resume).  Inside host/vm a raw lua_pcall stays only
 * where there is no host state to report through yet (vm_new building a
 * state, vm_package_path's scratch state) or where the error is turned
 * into a value at once and never shown with a traceback (value.c's
 * encoder, vm_error_text's own __tostring call).  A plain lua_call is fine
 * inside a C function already running under a protected call.
 */
#ifndef LUAHOST_VM_CALL_H
#define LUAHOST_VM_CALL_H

#include <lua.h>

/* The memory limit is on during the call. */
int vm_pcall(lua_State *L, int nargs, int nresults);
struct vm_task;
/* Resumes t->co as task t (limit on, deadline armed) and leaves it again;
 * on error the error value stays on the coroutine's stack and its
 * traceback is recorded. */
int vm_resume(struct vm_task *t, int nargs, int *nres);
/* require(name), protected: LUA_OK with the module's value pushed, or an
 * error status with the error's text and traceback pushed (the caller
 * says what failed to load: a handler script, a thread target). */
int vm_require(lua_State *L, const char *name);
/* Pops the error value at the top of L and pushes a message with the
 * traceback recorded for it.  Never raises. */
const char *vm_error_text(lua_State *L);

#endif
