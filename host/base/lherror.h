/*
 * base/lherror: the host's one error convention (as libuv's 0 / UV_E* and
 * uv_strerror): functions return 0 (LH_OK) or a negative LH_E* code, and
 * lh_strerror names it in the words Lua code gets as a reason ("no
 * memory", "timeout", "shutting down"...).  The net layer's clients keep
 * codes of their own (FETCH_E*, REDIS_E*) of the same shape.  Pure; any
 * thread.
 */
#ifndef LUAHOST_BASE_LHERROR_H
#define LUAHOST_BASE_LHERROR_H

enum {
  LH_OK = 0,
  LH_ENOMEM = -1,       /* out of memory, or a store's capacity is full */
  LH_ENOTFOUND = -2,    /* no such key */
  LH_EEXISTS = -3,      /* the key is already present */
  LH_ENOTNUM = -4,      /* the value is not a number */
  LH_EOVERFLOW = -5,    /* an integer result would leave int64 */
  LH_EFULL = -6,        /* a bounded queue is full */
  LH_EEMPTY = -7,       /* a queue is empty */
  LH_ETIMEDOUT = -8,    /* a wait's timeout passed */
  LH_ESHUTDOWN = -9,    /* the instance is shutting down */
  LH_ECANCELLED = -10,  /* the waiter was cancelled */
  LH_ECLOSED = -11,     /* the queue was closed (a joined thread's outcome) */
  LH_ELIMIT = -12,      /* a configured limit is reached */
  LH_EINVAL = -13,      /* invalid input (configuration, arguments) */
  LH_ESYSTEM = -14,     /* the system refused (a thread, a file) */
};

/* A static string naming err; "unknown error" for other values. */
const char *lh_strerror(int err);

#endif
