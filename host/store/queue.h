/*
 * store/queue: process-wide named bounded FIFOs of encoded values
 * (shared.queue).  A pop on an empty queue or a push on a full one can
 * wait: the caller registers a struct queue_waiter, and whoever makes
 * progress hands the value over to the first waiter directly and calls
 * its notify (under the queue's lock).  Lua code waits through the task
 * layer (host/waits.c), whose notify completes the task's wait; C callers
 * may block with queue_pop_wait / queue_push_wait.  Knows no Lua.
 *
 * Threads: any thread may call any function.  Each queue has its own
 * mutex; a waiter's fields are guarded by its queue's mutex while it is
 * registered.  Queues live until queue_free_all at process exit.
 */
#ifndef LUAHOST_QUEUE_H
#define LUAHOST_QUEUE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "base/lherror.h"
#include "base/list.h"
#include "vm/value.h"

#define QUEUE_DEFAULT_CAPACITY 1000


/* A waiter's state: QW_IDLE, QW_WAITING while registered, then final:
 * LH_OK (done: the value moved), or LH_ETIMEDOUT, LH_ESHUTDOWN,
 * LH_ECANCELLED, LH_ECLOSED. */
enum { QW_IDLE = 2, QW_WAITING = 1 };

struct queue_waiter {
  int state;                  /* QW_* or a final LH_OK / LH_E* */
  struct value val;           /* pop: the value received; push: the value to add */
  /* Called under the queue's lock when state leaves QW_WAITING; must be
   * quick and must not call back into the queue. */
  void (*notify)(struct queue_waiter *w);
  void *ud;
  pthread_cond_t *cond;       /* blocking waiters: signalled by notify */
  struct list_node node;      /* (the queue's lock) its pops or pushes list */
};

struct queue;

int queue_configure(const char *name, size_t capacity);   /* main thread, early */
struct queue *queue_open(const char *name, size_t len);    /* retained; NULL: no memory */
/* A queue outside the registry (a thread's outcome), freed with its last
 * reference. */
struct queue *queue_new_private(size_t capacity);
void queue_retain(struct queue *q);
void queue_release(struct queue *q);
const char *queue_name(const struct queue *q);
size_t queue_len(struct queue *q);
/* Calls fn once per named queue with its length, under the registry lock
 * and then the queue's (as queue_shutdown_all): fn must not call into
 * queue.  Any thread. */
void queue_each(void (*fn)(void *ud, const char *name, size_t len), void *ud);

/* Non-waiting: push moves *v in (LH_OK) or leaves it (LH_EFULL);
 * pop moves the head into *out (LH_OK), or LH_EEMPTY (LH_ESHUTDOWN,
 * LH_ECLOSED once the queue is closed). */
int queue_push(struct queue *q, struct value *v);
int queue_pop(struct queue *q, struct value *out);

/* Waiting, in two steps: try or register (returns 1 when w->state is
 * already final, 0 when registered and waiting), then either notify comes
 * or the owner cancels: queue_cancel returns 1 when it took w out (state
 * becomes `why`), 0 when w was already completed (notify came or is on its
 * way).  For push, w->val holds the value to add; it is moved into the
 * queue when state becomes LH_OK. */
int queue_wait_pop(struct queue *q, struct queue_waiter *w);
int queue_wait_push(struct queue *q, struct queue_waiter *w);
int queue_cancel(struct queue *q, struct queue_waiter *w, int why);

/* Blocking forms on a condition variable, for C callers without a task
 * (Lua code waits through host/waits.c).  timeout_ns UINT64_MAX: no
 * limit. */
int queue_pop_wait(struct queue *q, struct value *out, uint64_t timeout_ns);
int queue_push_wait(struct queue *q, struct value *v, uint64_t timeout_ns);

/* Every waiting pop and push on q ends with `why` (a final state), and
 * later waits end at once with it; a pop or push that need not wait (an
 * item is there, there is room) still goes through.  A
 * thread's outcome queue is closed (LH_ECLOSED) once a joiner took the
 * outcome, so that a second joiner is not left waiting for it. */
void queue_close(struct queue *q, int why);
/* Shutdown: queue_close(LH_ESHUTDOWN) on every named queue, now and later. */
void queue_shutdown_all(void);
void queue_free_all(void);

#endif
