/*
 * clock: monotonic time and the HTTP Date header.  Any thread.
 */
#ifndef LUAHOST_CLOCK_H
#define LUAHOST_CLOCK_H

#include <stdint.h>

uint64_t clock_now_ns(void);          /* CLOCK_MONOTONIC */
uint64_t clock_coarse_ns(void);       /* CLOCK_MONOTONIC_COARSE (cheap, ~4 ms) */
/* "Sun, 06 Nov 1994 08:49:37 GMT" (29 chars), cached per thread per second */
const char *clock_http_date(void);

#endif
