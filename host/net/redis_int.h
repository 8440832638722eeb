/*
 * net/redis_int: what redis.c and redis_batch.c share (private to net/).
 */
#ifndef LUAHOST_REDIS_INT_H
#define LUAHOST_REDIS_INT_H

#include <stddef.h>

struct redis_batch {
  char *buf;          /* the formatted commands back to back (malloc) */
  size_t len, cap;
  size_t n;           /* commands in buf */
  int blocking;       /* holds a command that blocks its connection */
  int txn_open;       /* a MULTI or WATCH not yet closed by EXEC/DISCARD */
  int txn_bad;        /* EXEC or DISCARD without MULTI */
  char why[160];      /* the last refusal */
};

/* 0 when b may be sent; REDIS_E_INVAL or REDIS_E_REFUSED (reason in b->why). */
int redis_batch_check(struct redis_batch *b);

#endif
