/*
 * remote_calls: `shared` dicts and queues on Redis as Lua calls (SPEC §14):
 * each call starts a store/remote operation on the task loop's client of
 * the store server and waits for it as a §9 wait (task_wait), then pushes
 * the same answers as the memory store, plus nil, "store unavailable:
 * <reason>" when Redis cannot answer within shared.timeout.
 *
 * Queue items are the neutral value format (vm/value) after a version
 * byte; functions and shared handles are refused with bt.Error (they
 * cannot cross machines).  Waits: a pop or a push that waits for room ends
 * at shutdown (TASK_ENDS_AT_SHUTDOWN); dict calls and len run on.
 *
 * Threads: remote_calls_configure on the main thread before any state
 * runs; the rest on the thread that owns L.  Each returns as a
 * lua_CFunction does (it may yield).
 */
#ifndef LUAHOST_REMOTE_CALLS_H
#define LUAHOST_REMOTE_CALLS_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "store/dict.h"

#define REMOTE_VALUE_VERSION 1

/* server: the redis_calls index of the store server, or -1 (memory). */
void remote_calls_configure(int server);
/* 1 when shared dicts and queues live on Redis. */
int remote_calls_on(void);

int remote_calls_get(lua_State *L, const char *dict, const char *k, size_t kl);
int remote_calls_set(lua_State *L, const char *dict, const char *k, size_t kl,
                     const struct dict_val *v, uint64_t ttl_ms, int only_new);
int remote_calls_incr(lua_State *L, const char *dict, const char *k, size_t kl,
                      const struct dict_val *n, const struct dict_val *init);
int remote_calls_delete(lua_State *L, const char *dict, const char *k, size_t kl);
int remote_calls_keys(lua_State *L, const char *dict, size_t max);
int remote_calls_flush(lua_State *L, const char *dict);

/* push: the value at index 2 of L. */
int remote_calls_push(lua_State *L, const char *queue, uint64_t timeout_ns);
int remote_calls_pop(lua_State *L, const char *queue, uint64_t timeout_ns);
int remote_calls_len(lua_State *L, const char *queue);

#endif
