/*
 * qwait: waiting on a store queue from Lua (yield in requests, block in
 * threads), shared by the shared and background_thread modules.  Called
 * on the thread that runs L.
 */
#ifndef LUAHOST_QWAIT_H
#define LUAHOST_QWAIT_H

#include <stdint.h>

#include <lua.h>

#include "store/queue.h"

/* timeout argument: nil -> UINT64_MAX (no limit), else seconds >= 0. */
uint64_t qwait_check_timeout(lua_State *L, int idx);
/* value | nil, "timeout" | "shutting down" | "cancelled" */
int qwait_pop(lua_State *L, struct queue *q, uint64_t timeout);
/* Copies the value at idx in: true | false, "full" | "shutting down". */
int qwait_push(lua_State *L, struct queue *q, int idx, uint64_t timeout);

#endif
