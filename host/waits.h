/*
 * waits: the host's own waits, described for the task layer: a sleep, and
 * a pop or push on a store queue (shared queues; a thread's outcome, which
 * bt.join pops).  Bindings call these and return what they return; how
 * the wait happens (yield or in place) is the task layer's choice.  Called
 * on the thread that runs L.
 */
#ifndef LUAHOST_WAITS_H
#define LUAHOST_WAITS_H

#include <stdint.h>

#include <lua.h>

#include "store/queue.h"
#include "vm/value.h"

/* true after the whole time; false when cancel or shutdown ended it. */
int waits_sleep(lua_State *L, uint64_t ns);
/* value | nil, "timeout" | "shutting down" | "cancelled" | "closed" */
int waits_pop(lua_State *L, struct queue *q, uint64_t timeout_ns);
/* A push in two steps, so the caller encodes the value with its own error
 * class for what cannot cross: waits_push_slot pushes the wait (a
 * userdata that owns the value from then on) and returns where the
 * encoded value goes; waits_push then waits with the wait at the top.
 * true | false, "full" | "shutting down" | "cancelled". */
struct value *waits_push_slot(lua_State *L, struct queue *q);
int waits_push(lua_State *L, uint64_t timeout_ns);

#endif
