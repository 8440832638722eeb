/*
 * vm/errors: error classes as Lua sees them.  A class is a table with
 * __name ("runtime.DeadlineExceededError"), __index (itself), __tostring
 * ("<name>: <message>"), is_instance(cls, v) and __parent; instances are
 * {message = ...} with the class as metatable.  Calling a class,
 * cls(message), makes an instance (for code that raises its own).  Classes live in the
 * registry of each state, made on first use.  Calls are made on the
 * state's own thread.
 */
#ifndef LUAHOST_VM_ERRORS_H
#define LUAHOST_VM_ERRORS_H

#include <lua.h>

/* Pushes the class `name`, creating it (as a child of `parent`, which may
 * be NULL) on first use. */
void vm_error_class(lua_State *L, const char *name, const char *parent);
/* The class a past deadline raises (runtime.DeadlineExceededError). */
#define VM_DEADLINE_CLASS "runtime.DeadlineExceededError"

/* Pushes a new instance of class `name` with a formatted message. */
void vm_error_push(lua_State *L, const char *name, const char *parent,
                   const char *fmt, ...);
/* 1 when the value at idx is an instance of class `name` (or a subclass). */
int vm_error_is(lua_State *L, int idx, const char *name);
/* When the value at idx is an instance of a class made here, pushes the
 * names of its class and ancestors (an array, the class first) and returns
 * 1; otherwise pushes nothing and returns 0.  With vm_error_from_chain it
 * carries an error object into another state. */
int vm_error_chain(lua_State *L, int idx);
/* Pushes an instance of the class named first in the array at chain_idx
 * (creating the classes root first, so their parents are as the chain
 * says) whose message is msg. */
void vm_error_from_chain(lua_State *L, int chain_idx, const char *msg, size_t len);

#endif
