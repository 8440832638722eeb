/*
 * store/remote: shared dicts and queues on a Redis server (SPEC §14), the
 * Redis twins of store/dict and store/queue.  Knows no Lua; runs over
 * net/redis, asynchronously: each call sends and returns 0, then its
 * callback runs once on the client's loop thread (never inside the call),
 * or returns a negative REDIS_E_* and never calls back.
 *
 * Layout (P = the app's store_prefix; names length-prefixed, so that no
 * name can reach into another's keys):
 *   P:d:<len(dict)>:<dict>:<key>   a dict entry (a Redis string)
 *   P:q:<len(queue)>:<queue>       a queue (a Redis list, RPUSH / LPOP)
 *   P:w:<instance>:<n>             a pop's wake-up list (lives 10 s at most)
 * Dict values: an integer is its plain decimal text (so INCRBY works on
 * it); any other value is a tag byte and its text: "s" + bytes (string),
 * "f" + %.17g (float; the subtype kept: 1.5 + 1.5 stays a float), "b0" /
 * "b1" (boolean).  A value written by someone else (no tag) reads as a
 * string.  INCRBYFLOAT is never used; scripts do no 64-bit arithmetic
 * (Redis runs Lua 5.1 on doubles): integer incr is INCRBY, inside a
 * script that checks the key first and maps the overflow error.
 *
 * Queue items are opaque bytes to this module (the caller's versioned
 * value format).  A bounded push is one script (LLEN, then RPUSH below
 * the capacity); a push that waits for room retries with a short backoff
 * (Redis has no blocking push).  A pop that waits is BLPOP on the queue
 * and on a wake-up list of its own: remote_pop_abandon pushes to the
 * wake-up list, so Redis answers at once, and an item that came with that
 * answer is put back at the head of the queue before the callback runs
 * (nothing is lost when a waiter gives up; only a Redis that stops
 * answering while an item is on the wire can still lose it).
 *
 * Threads: all calls on the loop thread of the client's loop, except
 * remote_configure* (main thread, before any client exists).
 */
#ifndef LUAHOST_STORE_REMOTE_H
#define LUAHOST_STORE_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "net/redis.h"
#include "store/dict.h"

enum {
  REMOTE_OK = 0,
  REMOTE_EXISTS = 1,       /* add: the key is there */
  REMOTE_NOTFOUND = 2,     /* incr without init: no such key */
  REMOTE_NOTNUM = 3,       /* incr: the value is not a number */
  REMOTE_OVERFLOW = 4,     /* incr: the integer result would leave int64 */
  REMOTE_NOMEM = 5,        /* Redis answered -OOM (maxmemory, noeviction) */
  REMOTE_FULL = 6,         /* push without waiting: the queue is full */
  REMOTE_EMPTY = 7,        /* pop: nothing came (timeout) */
  REMOTE_ABANDONED = 8,    /* pop/push given up by remote_*_abandon */
  REMOTE_UNAVAILABLE = 9,  /* msg says why */
};

/* What a callback receives; pointers are valid during the callback only. */
struct remote_result {
  int status;
  const char *msg;            /* REMOTE_UNAVAILABLE: why */
  struct dict_val val;        /* get, incr */
  const char *data;           /* pop: the item's bytes */
  size_t len;                 /* pop: its length; len: the queue's length */
  const char *const *keys;    /* keys: the key names (without the namespace) */
  const size_t *klens;
  size_t nkeys;
};
typedef void (*remote_cb)(void *ud, const struct remote_result *r);

struct remote_op;

/* Main thread, once: the key prefix, the timeout of each Redis command
 * (ms), and the capacity of queues named in app.lua. */
int remote_configure(const char *prefix, unsigned timeout_ms);
int remote_configure_queue(const char *name, size_t capacity);

/* Why a call returned a negative code, as a sentence. */
const char *remote_error(struct redis_client *c, int rc);

/* Dicts.  ttl_ms 0: no expiry.  A DV_NIL value deletes (set) or is a
 * no-op unless present (add). */
int remote_dict_get(struct redis_client *c, const char *dict, size_t dl, const char *k,
                    size_t kl, remote_cb cb, void *ud, struct remote_op **op);
int remote_dict_set(struct redis_client *c, const char *dict, size_t dl, const char *k,
                    size_t kl, const struct dict_val *v, uint64_t ttl_ms, int only_new,
                    remote_cb cb, void *ud, struct remote_op **op);
int remote_dict_incr(struct redis_client *c, const char *dict, size_t dl, const char *k,
                     size_t kl, const struct dict_val *n, const struct dict_val *init,
                     remote_cb cb, void *ud, struct remote_op **op);
int remote_dict_delete(struct redis_client *c, const char *dict, size_t dl, const char *k,
                       size_t kl, remote_cb cb, void *ud, struct remote_op **op);
/* keys: up to max keys (0: all) by SCAN MATCH on the dict's namespace;
 * flush: SCAN and UNLINK.  Never KEYS. */
int remote_dict_keys(struct redis_client *c, const char *dict, size_t dl, size_t max,
                     remote_cb cb, void *ud, struct remote_op **op);
int remote_dict_flush(struct redis_client *c, const char *dict, size_t dl, remote_cb cb,
                      void *ud, struct remote_op **op);

/* Queues.  push: REMOTE_OK, or REMOTE_FULL when !wait; with wait it
 * retries until there is room or remote_push_abandon.  pop: timeout_ms 0
 * does not wait (LPOP), UINT64_MAX waits without limit; REMOTE_OK with
 * the item, or REMOTE_EMPTY. */
int remote_queue_push(struct redis_client *c, uv_loop_t *loop, const char *q, size_t ql,
                      const char *data, size_t len, int wait, remote_cb cb, void *ud,
                      struct remote_op **op);
int remote_queue_pop(struct redis_client *c, const char *q, size_t ql, uint64_t timeout_ms,
                     remote_cb cb, void *ud, struct remote_op **op);
int remote_queue_len(struct redis_client *c, const char *q, size_t ql, remote_cb cb,
                     void *ud, struct remote_op **op);

/* The waiter is gone.  remote_cancel (any op but a waiting pop or push):
 * no callback.  remote_pop_abandon / remote_push_abandon: 1 when no
 * callback will come; 0 when it is on its way (status REMOTE_ABANDONED,
 * or REMOTE_OK when the item was pushed or popped anyway: a popped item
 * then is put back first, and the callback says REMOTE_ABANDONED). */
void remote_cancel(struct remote_op *op);
int remote_pop_abandon(struct remote_op *op);
int remote_push_abandon(struct remote_op *op);

#endif
