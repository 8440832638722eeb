/*
 * fault: injected failures for tests (a build with -DLUAHOST_FAULTS=ON).
 * Each fault point counts its calls; an armed point lets `after` calls
 * pass, then fails the next `count` (count < 0: every one after).
 *
 * Points: thread_create (starting a host thread fails with EAGAIN),
 * state_alloc (an allocation made while building a Lua state fails),
 * accept (accepting a connection fails with EMFILE), outcome (a
 * background thread's outcome cannot be copied out, not even as a
 * failure).
 *
 * In a normal build fault_hit is the constant 0 and nothing is compiled
 * in.  Any thread: the counters are atomic.
 */
#ifndef LUAHOST_FAULT_H
#define LUAHOST_FAULT_H

#include <stddef.h>

enum fault_point { FAULT_THREAD_CREATE, FAULT_STATE_ALLOC, FAULT_ACCEPT, FAULT_OUTCOME,
                   FAULT_NPOINTS };

#ifdef LUAHOST_FAULT_INJECTION
/* 1 when this call at point p is to fail. */
int fault_hit(enum fault_point p);
void fault_arm(enum fault_point p, long after, long count);
/* Arms points from "name=after:count,..." (the LUAHOST_FAULTS variable):
 * 0, or -1 with err naming what was wrong. */
int fault_arm_spec(const char *spec, char *err, size_t errlen);
#else
#define fault_hit(p) 0
#endif

#endif
