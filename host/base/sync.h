/*
 * sync: small pthread helpers shared by the stores and the threads
 * module: monotonic condition variables, absolute deadlines for them,
 * detached threads.  Any thread.
 */
#ifndef LUAHOST_SYNC_H
#define LUAHOST_SYNC_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
void sync_cond_init(pthread_cond_t *c);
/* The CLOCK_MONOTONIC time ns from now, for pthread_cond_timedwait. */
struct timespec sync_deadline(uint64_t ns);
/* Starts fn(arg) on a detached thread: 0 or an errno value. */
int sync_spawn_detached(void *(*fn)(void *), void *arg);

#endif
