/*
 * threads: background threads (SPEC §5).  Each runs one target in a fresh
 * lua_State (made by vm/state, so the memory limit applies) on a new OS
 * thread, then closes the state and ends.  The module keeps the count of
 * active threads against max_background_threads (one reservation, taken at
 * start and released when the thread's state is closed), the outcomes of
 * finished threads until joined (at most 1000, oldest dropped), cancel
 * flags, and the shutdown hook.
 *
 * A thread's outcome is one value pushed to a private queue of capacity
 * 1: joining is popping it, so a join waits (yielding in a request,
 * blocking in a thread) like any queue pop.  The value is a table
 * {ok = true, n = N, ...results} or {ok = false, err = "message\ntraceback"}.
 *
 * Uses spares.c for threads kept ready with a fresh state.
 *
 * Threads: every function may be called from any thread; the registry of
 * records is guarded by one mutex (lock order: that mutex, then a
 * queue's).
 */
#ifndef LUAHOST_THREADS_H
#define LUAHOST_THREADS_H

#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>

#include "base/lherror.h"
#include "vm/value.h"


struct threads_config {
  int max_threads;
  size_t memory_limit;
  const char *app_dir;           /* on package.path; copied */
  const luaL_Reg *preload;       /* host modules of thread states */
  int spares;                    /* threads kept ready with a fresh state */
  int role;                      /* enum vm_role of the instance: runtime.role()
                                    in every thread state (a frontend runs
                                    only its shutdown hook in one) */
};

void threads_init(const struct threads_config *c);   /* main thread, first */

/* 1 when s is a "module:function" target: one colon, a module path and a
 * function name of name characters (letters, digits, '_', '.'). */
int threads_valid_target(const char *s);

/* Starts target(args[1..n], kwargs) on a new thread and returns its ID
 * once the thread runs, or BT_* with a message.  target is an encoded
 * function or "module:function" string; args/kwargs encoded (len 0: none).
 * Takes the values in every case. */
int64_t threads_start(struct value *target, struct value *args, struct value *kwargs,
                      char *err, size_t errlen);

/* The outcome queue of thread id (retained: release it), or NULL when the
 * ID is unknown or its outcome was dropped or joined. */
struct queue *threads_outcome(int64_t id);
void threads_forget(int64_t id);     /* a join took the outcome */
int threads_is_alive(int64_t id);
int threads_active(void);
int threads_max(void);
int threads_cancel(int64_t id);      /* 1 when the thread was alive */
/* Cancels every thread still alive (as bt.cancel each; the shutdown hook
 * too); returns how many.  `luahost test` at the end of a run. */
int threads_cancel_all(void);

/* Shutdown: later starts are refused and idle spares end (the threads'
 * waits are ended by task_shutdown, queues by queue_shutdown_all). */
void threads_shutdown(void);
/* 0 when no thread is active within timeout_ns (UINT64_MAX: no limit). */
int threads_wait_idle(uint64_t timeout_ns);
int threads_log_running(void);       /* warning lines with the IDs; how many */

/* The shutdown hook: sets a new target (encoded; NULL clears), moving the
 * previous one (or an empty value) into prev. */
void threads_set_hook(struct value *target, struct value *prev);
/* Runs the hook, if set, once on its own thread (counted as active). */
void threads_run_hook(void);
void threads_free_all(void);         /* process exit */

#endif
