/*
 * vm/call: the one way the host calls into Lua.  vm_pcall is lua_pcall
 * with a message handler that keeps error objects and records a traceback;
 * vm_resume resumes a coroutine and, on error, records the coroutine's
 * traceback.  vm_error_text turns the error at the top into one string
 * (tostring of the error, protected, plus the traceback).  Caller's thread.
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
/* Pops the error value at the top of L and pushes a message with the
 * traceback recorded for it.  Never raises. */
const char *vm_error_text(lua_State *L);

#endif
