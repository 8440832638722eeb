/*
 * vm/state: the one factory of every lua_State the host creates (request
 * workers, scripts, tests, configuration; background threads later).
 *
 * A state gets: a counting allocator enforcing memory_limit; a count hook
 * enforcing the current task's deadline (it raises
 * runtime.DeadlineExceededError and keeps raising, so pcall cannot swallow
 * it); the standard libraries; host modules in package.preload; load,
 * loadfile, dofile and require text-only; os.exit refused (serve) or
 * caught (test); package.path covering the app directory.
 *
 * Threads: a state and its struct vm belong to one thread at a time (the
 * thread that runs it); nothing here is shared.  The struct vm lives in
 * the state's extra space, so vm_of() is one pointer load.
 */
#ifndef LUAHOST_VM_STATE_H
#define LUAHOST_VM_STATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#include "base/arena.h"

enum vm_role { VM_FRONTEND = 0, VM_BACKEND = 1 };
enum vm_exit { VM_EXIT_REFUSE, VM_EXIT_ALLOW, VM_EXIT_CATCH };

struct vm_task;

/* How a host call waits inside a task that can yield (a request coroutine
 * on a worker loop).  Supplied by the worker. */
struct queue;
struct queue_waiter;

struct vm_waiter {
  /* 1: sleep/park arrange a resume and the caller yields (request
   * coroutines); 0: sleep and block wait in place (background threads). */
  int yields;
  /* yields: arrange for the task to be resumed after ns nanoseconds (or
   * sooner at its deadline or shutdown); 0 or -1.  Blocking: sleep; 1
   * after the whole time, 0 when woken early (shutdown, cancel). */
  int (*sleep)(struct vm_task *t, uint64_t ns);
  /* Park the task until post(t) is called (from any thread) or timeout_ns
   * passes (UINT64_MAX: no timeout; the deadline still applies).  At the
   * timeout on_timeout(arg) runs on the owner's thread: 1 resumes the task
   * now, 0 means a post is on its way.  The caller then yields. 0 or -1. */
  int (*park)(struct vm_task *t, uint64_t timeout_ns, int (*on_timeout)(void *arg),
              void *arg);
  void (*post)(struct vm_task *t);
  /* Blocking only: waits for w, registered on q, so that a cancel can
   * interrupt it; returns w's final state. */
  int (*block)(struct vm_task *t, struct queue *q, struct queue_waiter *w, uint64_t ns);
};

/* A unit of work running in a state: a request, or the state's own code. */
struct vm_task {
  struct vm *vm;
  lua_State *co;                 /* the coroutine the task runs in, or NULL */
  const char *request_id;        /* NULL outside a request */
  uint64_t deadline_ns;          /* CLOCK_MONOTONIC; 0 = none */
  double deadline_s;             /* the deadline as configured, for messages */
  const struct vm_waiter *waiter;   /* NULL: waiting blocks the thread */
  void *owner;                   /* the waiter's per-task data */
  int64_t thread_id;             /* background thread ID, or 0 */
  atomic_int *cancel;            /* set by bt.cancel: the hook raises Cancelled */
  int woken_early;               /* set by the waiter: sleep returns false */
  int parked;                    /* set by the waiter: the yield is the host's */
};

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
  void *host_data;        /* the embedding layer's (e.g. apptest's config) */
};

struct vm_opts {
  int role;
  int exit_mode;
  size_t memory_limit;
  const char *path_dirs[3];      /* directories put first on package.path */
  const luaL_Reg *preload;       /* host modules, NULL-terminated */
  /* The whole package.path, as vm_package_path made it for path_dirs
   * (states built often skip rebuilding it); NULL: built from path_dirs. */
  const char *package_path;
};

/* Logs msg tagged with the task running in vm (its request or thread ID). */
void vm_log(struct vm *vm, int level, const char *msg, size_t len);

/* NULL (with a message in err) when the state cannot be built.  Lua's
 * warnings (warn(), errors in __gc) are logged as warnings through
 * vm_log until the state's code says warn("@off"). */
lua_State *vm_new(const struct vm_opts *o, char *err, size_t errlen);
void vm_close(lua_State *L);
/* The package.path a state built with o gets (malloc'd; NULL when out of
 * memory), for o->package_path of states built later in this process. */
char *vm_package_path(const struct vm_opts *o);
/* Pushes the embedded script `name` (scripts/<name>.lua) as a function:
 * compiled from text once per process, then loaded from that bytecode (the
 * host's own chunks are the only binary ones a state ever loads).
 * LUA_OK, or an error status with the message pushed. */
int vm_load_script(lua_State *L, const char *name);

/* (Re)arms the deadline hook of L (a state or a coroutine of it). */
void vm_arm_hook(lua_State *L);
/* Raises runtime.DeadlineExceededError for the task running in L. */
int vm_raise_deadline(lua_State *L);
/* 1 when a host call made here may yield: L is the coroutine of a task
 * whose waiter resumes it (a request) and Lua allows the yield. */
int vm_can_yield(lua_State *L);

static inline struct vm *vm_of(lua_State *L) {
  return *(struct vm **)lua_getextraspace(L);
}


#endif
