/*
 * spares: the spare pool of background threads.  A spare is a new OS
 * thread that already holds a fresh lua_State and waits for its one job;
 * a start hands the job to a spare (no thread creation or state building
 * on the starter's path) and a replacement is made in the background.
 * Each thread still runs exactly one job, and its state is closed after.
 *
 * Threads: every function may be called from any thread; the pool is
 * guarded by its own mutex, never held while a job runs or a state is
 * built.  Lock order: a caller may hold no lock of its own across
 * spares_take (it may wait for a spare in the making).
 */
#ifndef LUAHOST_SPARES_H
#define LUAHOST_SPARES_H

#include <lua.h>

struct spares_ops {
  /* On the spare's thread: its fresh state, or NULL (the spare ends). */
  lua_State *(*make_state)(void);
  /* On the spare's thread: runs job in L and closes L. */
  void (*run)(void *job, lua_State *L);
};

/* Main thread, first: keeps `wanted` spares ready (0: none, no thread). */
void spares_init(int wanted, const struct spares_ops *ops);
/* Hands job to a ready spare, waiting for one being made when none is
 * ready: 1 when a spare runs it now, 0 when none could take it (the caller
 * makes a thread of its own). */
int spares_take(void *job);
/* A thread that ran its job starts the spare that replaces it (so a
 * start wakes one thread, not the replenisher too). */
void spares_replace(void);
/* Idle spares end; no more are made; waiting takers give up. */
void spares_shutdown(void);

#endif
