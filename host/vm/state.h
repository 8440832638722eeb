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
 * Threads: a state and its bookkeeping belong to one thread at a time (the
 * thread that runs it); nothing here is shared, except a task's cancel
 * flag (atomic) and the compiled embedded scripts (locked).
 */
#ifndef LUAHOST_VM_STATE_H
#define LUAHOST_VM_STATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>


enum vm_role { VM_FRONTEND = 0, VM_BACKEND = 1 };
enum vm_exit { VM_EXIT_REFUSE, VM_EXIT_ALLOW, VM_EXIT_CATCH };

/* What the VM knows of the piece of Lua running in a state now (a
 * request, a background thread, a script): its deadline and cancel flag,
 * enforced by the count hook, and its IDs, for log lines.  The task layer
 * (host/task.c) owns the record and says how it waits; `owner` points back
 * to the task layer's struct.  Plain data: the thread running the state
 * reads and writes it; `cancel` is set by any thread. */
struct vm_task {
  lua_State *co;                 /* the coroutine the task runs in, or NULL */
  const char *request_id;        /* NULL outside a request */
  uint64_t deadline_ns;          /* CLOCK_MONOTONIC; 0 = none */
  double deadline_s;             /* the deadline as configured, for messages */
  int deadline_hit;              /* the deadline's error was raised (maybe caught) */
  int64_t thread_id;             /* background thread ID, or 0 */
  atomic_int *cancel;            /* set by bt.cancel: the hook raises vm_cancel_class */
  void *owner;                   /* the task layer's record, or NULL */
};

/* The error class a cancelled task raises and its parent: set once by the
 * module that owns them (background_thread) before any thread runs. */
struct vm_cancel_class { const char *name, *parent; };
void vm_set_cancel_class(const char *name, const char *parent);

/* A state's bookkeeping (allocator, limits, tasks) lives in its extra
 * space; only host/vm sees inside. */
struct vm;

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

/* Logs msg tagged with the task running in L now (its request or thread ID). */
void vm_log(lua_State *L, int level, const char *msg, size_t len);

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
/* The task running in L now, and the state's own task (its code outside
 * any request).  The caller's thread owns both. */
struct vm_task *vm_current(lua_State *L);
struct vm_task *vm_base(lua_State *L);
/* Makes t the task running in L until vm_leave(L, prev); returns prev. */
struct vm_task *vm_enter(lua_State *L, struct vm_task *t);
void vm_leave(lua_State *L, struct vm_task *prev);

int vm_role(lua_State *L);                  /* enum vm_role */
void *vm_host_data(lua_State *L);           /* the embedding layer's (the app config) */
void vm_set_host_data(lua_State *L, void *p);
size_t vm_memory_used(lua_State *L);        /* bytes the state holds now */
size_t vm_memory_limit(lua_State *L);       /* 0 = none */
void vm_set_memory_limit(lua_State *L, size_t limit);

/* The state's allocator with its memory limit enforced even while the
 * host works (for buffers the host fills on the state's behalf, such as a
 * fetch's response): same contract as lua_Alloc; *ud receives its
 * argument.  Only on the state's own thread. */
lua_Alloc vm_charged_allocf(lua_State *L, void **ud);

/* The one scoped way to do host work in a state without charging it to
 * the memory limit (building a response, bookkeeping after a handler
 * filled the heap): vm_limit_off returns the previous setting, which
 * vm_limit_restore puts back.  Pairs nest. */
int vm_limit_off(lua_State *L);
void vm_limit_restore(lua_State *L, int was_on);

#endif
