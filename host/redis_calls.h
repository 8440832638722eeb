/*
 * redis_calls: the Redis servers an app names (app.lua key `redis`) and
 * the clients that reach them, one per server per task loop (SPEC §14:
 * a worker's requests share one pipelined connection per server).
 * Knows no Lua.
 *
 * The registry is filled once by the main thread before any state runs
 * (redis_calls_configure) and read-only afterwards.  Clients live in the
 * loop's TASK_CLIENT_REDIS slot (a small table, server index -> client),
 * made on first use and closed with the loop; redis_calls_client runs on
 * the loop's thread.
 */
#ifndef LUAHOST_REDIS_CALLS_H
#define LUAHOST_REDIS_CALLS_H

#include "net/redis.h"
#include "task.h"

#define REDIS_CALLS_MAX 32
/* Blocking commands (and waiting pops of a Redis store) in flight per
 * loop per server; past it a call answers REDIS_E_BUSY. */
#define REDIS_CALLS_MAX_BLOCKING 256

/* Main thread, before workers start: the servers, name -> URL (already
 * validated by config).  0, or -1 (too many, or a URL that does not
 * parse: then the registry is left empty). */
int redis_calls_configure(const char *const *names, const char *const *urls, int n);
/* The index of the server called name, or -1. */
int redis_calls_find(const char *name);
const char *redis_calls_name(int server);
/* Where server points, without credentials ("127.0.0.1:6379/0"). */
const char *redis_calls_where(int server);

/* The client of server on tl (made on first use); NULL: no memory. */
struct redis_client *redis_calls_client(struct task_loop *tl, int server);

#endif
