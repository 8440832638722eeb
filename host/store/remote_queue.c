/* store/remote_queue: shared queues on Redis (lists), see store/remote.h. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/instance.h"
#include "store/queue.h"
#include "store/remote_int.h"

#define WAKE_TTL_MS "10000"
#define PUSH_RETRY_MIN_MS 2
#define PUSH_RETRY_MAX_MS 50

/* Wake-up lists are named by instance and this sequence (any thread). */
static atomic_uint_fast64_t wake_seq;

/* push: KEYS[1] the list, ARGV[1] the item, ARGV[2] the capacity. */
static const char push_script[] =
  "if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end\n"
  "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
  "return 1\n";

static void on_push_timer(uv_timer_t *t);
static int push_try(struct remote_op *op);

static void on_timer_closed(uv_handle_t *h) { remote_op_unref(h->data); }

void remote_stop_timer(struct remote_op *op) {
  if (!op->timer_on) return;
  op->timer_on = 0;
  uv_close((uv_handle_t *)&op->timer, on_timer_closed);
}

/* A popped item that nobody waits for any more goes back to the head of
 * its queue; the callback (ABANDONED) runs once that is done. */
static void put_back(struct remote_op *op, const redisReply *item) {
  const char *argv[3] = {"LPUSH", op->qkey, item->str};
  size_t lens[3] = {5, op->qlen, (size_t)item->len};
  op->putting_back = 1;
  if (remote_send_cmd(op, 3, argv, lens, remote_timeout_ms) < 0)
    remote_deliver_status(op, REMOTE_ABANDONED, NULL);
}

/* The reply of a queue command (the caller has handled errors and runs
 * the op's bookkeeping afterwards). */
void remote_queue_reply(struct remote_op *op, const redisReply *rep) {
  struct remote_result r;
  memset(&r, 0, sizeof r);
  switch (op->kind) {
    case OP_LEN:
      if (rep->type != REDIS_REPLY_INTEGER) { remote_deliver_bad(op, rep); break; }
      r.len = (size_t)rep->integer;
      remote_deliver(op, &r);
      break;
    case OP_PUSH:
      if (rep->type != REDIS_REPLY_INTEGER) { remote_deliver_bad(op, rep); break; }
      if (rep->integer == 1) { remote_deliver(op, &r); break; }
      if (op->abandoned) { remote_deliver_status(op, REMOTE_ABANDONED, NULL); break; }
      if (!op->wait) { remote_deliver_status(op, REMOTE_FULL, NULL); break; }
      /* full: try again a little later */
      op->refs++;   /* the timer's */
      op->timer_armed = 1;
      op->timer.data = op;
      uv_timer_start(&op->timer, on_push_timer, op->delay_ms, 0);
      if (op->delay_ms < PUSH_RETRY_MAX_MS) op->delay_ms *= 2;
      break;
    case OP_POP:
      if (op->putting_back) {   /* the put-back LPUSH: done either way */
        remote_deliver_status(op, REMOTE_ABANDONED, NULL);
        break;
      }
      if (rep->type == REDIS_REPLY_NIL) {
        remote_deliver_status(op, op->abandoned ? REMOTE_ABANDONED : REMOTE_EMPTY, NULL);
        break;
      }
      {
        const redisReply *item = rep;
        if (rep->type == REDIS_REPLY_ARRAY) {   /* BLPOP: [key, item] */
          if (rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
              rep->element[1]->type != REDIS_REPLY_STRING) {
            remote_deliver_bad(op, rep);
            break;
          }
          if (op->wake && !strcmp(rep->element[0]->str, op->wake)) {   /* woken */
            remote_deliver_status(op, op->abandoned ? REMOTE_ABANDONED : REMOTE_EMPTY, NULL);
            break;
          }
          item = rep->element[1];
        }
        if (item->type != REDIS_REPLY_STRING) { remote_deliver_bad(op, rep); break; }
        if (op->abandoned) { put_back(op, item); break; }
        r.data = item->str;
        r.len = (size_t)item->len;
        remote_deliver(op, &r);
      }
      break;
  }
}

/* ---- queues ------------------------------------------------------------- */

static int push_try(struct remote_op *op) {
  char cap[32];
  const char *argv[6] = {"EVAL", push_script, "1", op->qkey, op->data, cap};
  size_t lens[6] = {4, sizeof push_script - 1, 1, op->qlen, op->len, 0};
  lens[5] = (size_t)snprintf(cap, sizeof cap, "%zu", op->cap);
  return remote_send_cmd(op, 6, argv, lens, remote_timeout_ms);
}

static void on_push_timer(uv_timer_t *t) {
  struct remote_op *op = t->data;
  op->timer_armed = 0;
  int rc = push_try(op);
  if (rc < 0) {
    remote_deliver_status(op, REMOTE_UNAVAILABLE, remote_error(op->c, rc));
    remote_stop_timer(op);
  }
  remote_op_unref(op);   /* the timer's run; the handle itself stays until remote_stop_timer */
}

int remote_queue_push(struct redis_client *c, uv_loop_t *loop, const char *q, size_t ql,
                      const char *data, size_t len, int wait, remote_cb cb, void *ud,
                      struct remote_op **out) {
  struct remote_op *op = remote_op_new(c, OP_PUSH, cb, ud);
  if (!op || !(op->qkey = remote_make_key('q', q, ql, "", 0, 0, &op->qlen)) ||
      !(op->data = malloc(len ? len : 1))) {
    if (op) remote_op_free(op);
    return REDIS_E_NOMEM;
  }
  memcpy(op->data, data, len);
  op->len = len;
  op->cap = store_caps_get(&remote_queue_caps, q, ql, QUEUE_DEFAULT_CAPACITY);
  op->wait = wait;
  op->delay_ms = PUSH_RETRY_MIN_MS;
  if (wait) {
    if (uv_timer_init(loop, &op->timer) < 0) { remote_op_free(op); return REDIS_E_NOMEM; }
    op->timer.data = op;
    op->timer_on = 1;
    op->refs++;   /* the handle's, dropped when it is closed */
  }
  int rc = push_try(op);
  if (rc < 0) {
    if (op->timer_on) { op->delivered = 1; remote_stop_timer(op); }   /* frees op once closed */
    else remote_op_free(op);
    return rc;
  }
  if (out) *out = op;
  return 0;
}

int remote_queue_pop(struct redis_client *c, const char *q, size_t ql, uint64_t timeout_ms,
                     remote_cb cb, void *ud, struct remote_op **out) {
  struct remote_op *op = remote_op_new(c, OP_POP, cb, ud);
  if (!op || !(op->qkey = remote_make_key('q', q, ql, "", 0, 0, &op->qlen))) {
    free(op);
    return REDIS_E_NOMEM;
  }
  int rc;
  if (timeout_ms == 0) {
    const char *argv[2] = {"LPOP", op->qkey};
    size_t lens[2] = {4, op->qlen};
    rc = remote_send_cmd(op, 2, argv, lens, remote_timeout_ms);
  } else {
    char secs[32], wake[400];
    snprintf(wake, sizeof wake, "%s:w:%s:%" PRIu64, remote_prefix, instance_id(),
             (uint64_t)atomic_fetch_add(&wake_seq, 1));
    if (!(op->wake = strdup(wake))) { remote_op_free(op); return REDIS_E_NOMEM; }
    /* BLPOP 0 waits for ever; luahost's forever is UINT64_MAX.  The
     * server's timeout ends the wait; ours is later, for a silent Redis. */
    unsigned client_ms = 0;
    if (timeout_ms == UINT64_MAX) snprintf(secs, sizeof secs, "0");
    else {
      snprintf(secs, sizeof secs, "%.3f", (double)timeout_ms / 1000.0);
      client_ms = timeout_ms + remote_timeout_ms > UINT32_MAX ? 0
                  : (unsigned)(timeout_ms + remote_timeout_ms);
    }
    const char *argv[4] = {"BLPOP", op->qkey, op->wake, secs};
    rc = remote_send_cmd(op, 4, argv, NULL, client_ms);
  }
  if (rc < 0) { remote_op_free(op); return rc; }
  if (out) *out = op;
  return 0;
}

int remote_queue_len(struct redis_client *c, const char *q, size_t ql, remote_cb cb,
                     void *ud, struct remote_op **out) {
  struct remote_op *op = remote_op_new(c, OP_LEN, cb, ud);
  size_t n;
  char *key = op ? remote_make_key('q', q, ql, "", 0, 0, &n) : NULL;
  if (!key) { free(op); return REDIS_E_NOMEM; }
  const char *argv[2] = {"LLEN", key};
  size_t lens[2] = {4, n};
  int rc = remote_start(op, 2, argv, lens, remote_timeout_ms, out);
  free(key);
  return rc;
}

static void on_wake(void *ud, struct redis_done *d) {
  struct remote_op *op = ud;
  op->wake_cmd = NULL;
  /* Redis did not take the wake-up (down, or silent): give the pop up
   * too; nothing can have been popped that we could still put back. */
  if (d->err && op->cmd && !op->delivered && !op->putting_back) {
    redis_cancel(op->cmd);
    op->cmd = NULL;
    remote_deliver_status(op, REMOTE_ABANDONED, NULL);
    remote_op_unref(op);
  }
  remote_op_unref(op);
}

int remote_pop_abandon(struct remote_op *op) {
  if (op->delivered) return 0;
  if (op->abandoned) return 0;
  op->abandoned = 1;
  if (!op->wake) return 0;   /* LPOP: its answer comes at once */
  const char *argv[2][3] = {{"RPUSH", op->wake, "1"}, {"PEXPIRE", op->wake, WAKE_TTL_MS}};
  struct redis_batch *b = redis_batch_new();
  int rc = b ? 0 : REDIS_E_NOMEM;
  for (int i = 0; i < 2 && rc == 0; i++) rc = redis_batch_add(b, 3, argv[i], NULL);
  if (rc == 0) rc = redis_send(op->c, b, remote_timeout_ms, on_wake, op, &op->wake_cmd);
  if (b) redis_batch_free(b);
  if (rc == 0) { op->refs++; return 0; }
  /* cannot wake it: let the pop go (Redis is unreachable anyway) */
  if (op->cmd) {
    redis_cancel(op->cmd);
    op->cmd = NULL;
    op->delivered = 1;
    remote_op_unref(op);
    return 1;
  }
  return 0;
}

int remote_push_abandon(struct remote_op *op) {
  if (op->delivered) return 0;
  op->abandoned = 1;
  if (op->cmd) return 0;   /* a try is in flight: its answer decides */
  /* between tries: no callback will come */
  op->delivered = 1;
  if (op->timer_armed) {
    op->timer_armed = 0;
    uv_timer_stop(&op->timer);
    remote_op_unref(op);   /* the run that will not come; the handle's reference remains */
  }
  remote_stop_timer(op);
  return 1;
}
