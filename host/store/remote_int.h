/*
 * store/remote_int: what the two halves of store/remote share (remote.c:
 * configuration, keys, values, the operation record and its replies, the
 * dicts; remote_queue.c: the queues).  Not part of the module's API.
 * Threads: as store/remote.h.
 */
#ifndef LUAHOST_STORE_REMOTE_INT_H
#define LUAHOST_STORE_REMOTE_INT_H

#include "store/caps.h"
#include "store/remote.h"

/* Set by the main thread before any client exists; read-only after. */
extern char remote_prefix[256];
extern unsigned remote_timeout_ms;          /* each command's */
extern struct store_caps remote_queue_caps; /* capacities from app.lua */

enum remote_op_kind { OP_GET, OP_SET, OP_ADD_NIL, OP_INCR, OP_DELETE, OP_KEYS, OP_FLUSH, OP_PUSH,
                         OP_POP, OP_LEN };

struct remote_op {
  struct redis_client *c;
  int kind;
  remote_cb cb;
  void *ud;
  struct redis_cmd *cmd;      /* the command in flight, or NULL */
  int refs;                   /* cmd, wake command, timer: the op lives while any does */
  int delivered;              /* cb ran (or cancelled): never again */
  /* keys, flush */
  char *match;                /* the escaped namespace + "*" */
  size_t ns_len;              /* the namespace's length (stripped from keys) */
  size_t max;
  char cursor[32];
  char **keys; size_t *klens; size_t nkeys, kcap;
  /* push */
  uv_timer_t timer;
  int timer_on;               /* the handle is open */
  int timer_armed;            /* a retry is scheduled (holds a reference) */
  int unlinking;              /* flush: the reply is an UNLINK's */
  int putting_back;           /* pop: the reply is the put-back LPUSH's */
  char *qkey; size_t qlen;
  char *data; size_t len;
  size_t cap;
  int wait;
  unsigned delay_ms;
  int abandoned;
  /* pop */
  char *wake;
  struct redis_cmd *wake_cmd;
};

/* An operation lives while it holds references (refs): one per command
 * in flight, one for an armed retry, one for an open timer handle. */
struct remote_op *remote_op_new(struct redis_client *c, int kind, remote_cb cb, void *ud);
void remote_op_free(struct remote_op *op);
void remote_op_unref(struct remote_op *op);
/* The callback, once (never after a cancel). */
void remote_deliver(struct remote_op *op, struct remote_result *r);
void remote_deliver_status(struct remote_op *op, int status, const char *msg);
/* -OOM is REMOTE_NOMEM; any other error or shape REMOTE_UNAVAILABLE. */
void remote_deliver_bad(struct remote_op *op, const redisReply *rep);
/* Sends argv as op's command (one more reference). */
int remote_send_cmd(struct remote_op *op, int argc, const char **argv, const size_t *lens,
                    unsigned timeout_ms);
/* Sends argv as op's first command; on failure frees op.  0 (and *out
 * = op) or the negative code. */
int remote_start(struct remote_op *op, int argc, const char **argv, const size_t *lens,
                 unsigned timeout_ms, struct remote_op **out);
/* "P:<kind>:<len>:<name>" (+ ":" + key when colon) in a new string. */
char *remote_make_key(char kind, const char *name, size_t nl, const char *k, size_t kl,
                      int colon, size_t *len);

/* remote_queue.c: the reply of a queue command (OP_PUSH, OP_POP, OP_LEN),
 * and closing a push's retry timer (no-op without one). */
void remote_queue_reply(struct remote_op *op, const redisReply *rep);
void remote_stop_timer(struct remote_op *op);

#endif
