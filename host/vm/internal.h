/*
 * vm/internal: the bookkeeping of a state, private to host/vm (state.c,
 * call.c).  Everything outside host/vm goes through the accessors of
 * vm/state.h.  A struct vm belongs to the thread running its state.
 */
#ifndef LUAHOST_VM_INTERNAL_H
#define LUAHOST_VM_INTERNAL_H

#include <stddef.h>

#include <lua.h>

#include "base/arena.h"
#include "vm/state.h"

struct vm {
  struct arena arena;     /* the state's small blocks */
  size_t used;            /* bytes allocated by the state now */
  size_t limit;           /* memory_limit; 0 = none */
  int limit_on;           /* off while the host itself works in the state */
  int building;           /* set while vm_new builds it (fault injection) */
  int warn_off;           /* warn("@off") given: Lua warnings not logged */
  size_t warn_len;        /* a warning being assembled from pieces */
  char *warn;             /* its buffer (VM_WARN_MAX), made on first use */
  int role;
  struct vm_task base;    /* the state's own code, outside any request */
  struct vm_task *current;   /* the task running now (base when none) */
  void *host_data;        /* the embedding layer's (the app's config) */
};

/* The struct vm lives in the state's extra space (a coroutine's extra
 * space is a copy of its main thread's): one pointer load. */
static inline struct vm *vm_of(lua_State *L) {
  return *(struct vm **)lua_getextraspace(L);
}

#endif
