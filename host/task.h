/*
 * task: a running piece of Lua (a request's coroutine, a background
 * thread, a `run` or `test` script, a shutdown hook) and the one way it
 * waits (SPEC §9).
 *
 * A binding says what it waits for in a struct task_wait: how to start it
 * (register with a queue, start a fetch), how to let go of it early, and
 * how to turn its outcome into Lua values.  task_wait decides how to
 * wait: a request's coroutine yields and its loop resumes it when the
 * wait ends; anything else (a thread, a script, a coroutine the handler
 * made itself) waits in place: on the thread's parker (a condition
 * variable) when nothing on the thread ends the wait (TASK_NO_IO), else
 * by driving its OS thread's own small loop, where its network I/O runs.
 * Nothing polls.  Every wait ends early
 * at the task's deadline (runtime.DeadlineExceededError is raised), at
 * bt.cancel (TASK_CANCELLED) and, when flagged TASK_ENDS_AT_SHUTDOWN, at
 * shutdown (TASK_SHUTDOWN).
 *
 * Threads: a task_loop belongs to the thread that runs its uv loop;
 * task_complete, task_poke_all and task_shutdown may be called from any
 * thread.  A wait belongs to the thread running its task, except
 * `completed` and `mail_next` (its loop's lock, or its parker's).
 */
#ifndef LUAHOST_TASK_H
#define LUAHOST_TASK_H

#include <pthread.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "base/list.h"
#include "vm/state.h"

enum task_end { TASK_PENDING, TASK_DONE, TASK_TIMEOUT, TASK_CANCELLED, TASK_SHUTDOWN,
                TASK_DEADLINE };

/* TASK_ENDS_AT_SHUTDOWN: shutdown ends the wait.  TASK_NO_IO: nothing on
 * the waiting thread's loop ends it (a sleep, a queue), so in place it
 * waits on the thread's parker, a condition variable, and a thread that
 * only sleeps or pops never makes a loop (an idle thread stays small). */
enum { TASK_ENDS_AT_SHUTDOWN = 1, TASK_NO_IO = 2 };

#define TASK_NO_TIMEOUT UINT64_MAX

/* Per-loop clients of the net layer (a fetch client, Redis connections),
 * made on first use and closed with the loop. */
enum { TASK_CLIENT_FETCH, TASK_CLIENT_REDIS, TASK_CLIENT_MAX };

/* A uv loop that drives waits: a worker's loop, apptest's, or a thread's
 * own.  Registered process-wide while it lives, so that cancel and
 * shutdown can reach every wait. */
struct task_loop {
  uv_loop_t *uv;
  uv_async_t async;               /* any thread: mail, or look at cancel/shutdown */
  uv_idle_t idle;                 /* (loop thread) mail the loop's own thread
                                     posted: read in the next idle phase, no
                                     eventfd write and read */
  pthread_mutex_t lock;           /* guards mailbox and poked */
  struct task_wait *mailbox;      /* (lock) completed waits, newest first */
  int poked;                      /* (lock) cancel or shutdown: check the waits */
  struct list waiting;            /* (loop thread) waits in progress */
  uv_timer_t own_timer;           /* a thread's own loop: its one in-place wait */
  int own;                        /* a thread's own loop (made by task_thread_loop) */
  struct list_node all;           /* (all_lock in task.c) every live loop */
  void *clients[TASK_CLIENT_MAX];             /* (loop thread) */
  void (*client_close[TASK_CLIENT_MAX])(void *client);
};

/* An operation a request started that must not outlive it (an RPC
 * started and never waited for): cancel runs if the request ends first
 * (SPEC §9: an operation whose request coroutine ended is cancelled and
 * its resources freed).  Owned by the binding; on the request's thread. */
struct task_op {
  struct list_node node;          /* its task's ops, while linked */
  void (*cancel)(struct task_op *op);
};

/* A request's task: its coroutine yields to `loop`, and resume (on the
 * loop thread) resumes it when its wait has ended. */
struct task {
  struct vm_task vt;              /* what the VM sees; vt.owner == this */
  struct task_loop *loop;
  void (*resume)(struct task *t);
  uv_timer_t timer;               /* its waits' timeouts; made on first use */
  int timer_init;
  int waiting;                    /* task_wait yielded (cleared on resume) */
  struct list ops;                /* struct task_op started by the request */
  void (*released)(struct task *t);   /* task_release's callback */
};

struct task_wait {
  /* The binding's.  start: begin the wait; 1 when it is already over
   * (end becomes TASK_DONE), 0 when task_complete(w) will come.  NULL:
   * nothing to wait for but the timeout (a sleep).
   * abandon: the wait ends early (why: a task_end); 1 when the binding let
   * go (task_complete will not come), 0 when task_complete is on its way
   * (then the wait ends TASK_DONE when it comes).  NULL: always 1.
   * result: after the wait, pushes the results; returns their number. */
  int (*start)(struct task_wait *w);
  int (*abandon)(struct task_wait *w, int why);
  int (*result)(lua_State *L, struct task_wait *w);
  int flags;                      /* TASK_ENDS_AT_SHUTDOWN */
  int end;                        /* enum task_end: the outcome */
  /* The task layer's. */
  struct vm_task *vt;             /* deadline and cancel flag */
  struct task *task;              /* the yielding task, or NULL (in place) */
  struct task_loop *loop;         /* the loop that ends it, or NULL: */
  struct task_parker *parker;     /* the thread's parker ends it */
  int abandon_failed;             /* in place: a completion is on its way */
  uv_timer_t *timer;
  int by_deadline;                /* the timer is the deadline's */
  struct list_node node;          /* loop->waiting */
  int completed;                  /* (loop->lock) task_complete came */
  struct task_wait *mail_next;    /* (loop->lock) loop->mailbox */
};

/* Loops.  task_loop_init/close on the loop's thread (or before it runs). */
int task_loop_init(struct task_loop *tl, uv_loop_t *uv);
/* Closes the clients and the loop's handles (run the loop once more to
 * finish closing them); unregisters it first. */
void task_loop_close(struct task_loop *tl);
/* The calling OS thread's own loop, made on first use (NULL: no memory). */
struct task_loop *task_thread_loop(void);
/* Ends the calling thread's own loop, if it made one (at thread end). */
void task_thread_end(void);
/* The client of kind `kind` on tl, made by make(tl->uv) on first use and
 * closed by close at task_loop_close.  NULL when make fails. */
void *task_loop_client(struct task_loop *tl, int kind, void *(*make)(uv_loop_t *uv),
                       void (*close)(void *client));

/* A request task on loop tl; resume is called when its wait ends. */
void task_init(struct task *t, struct task_loop *tl, void (*resume)(struct task *t));
/* Releases t's timer; done(t) runs once the loop let go of it (at once
 * when it has none). */
void task_release(struct task *t, void (*done)(struct task *t));

/* Ties op to the request running in L, if any (elsewhere nothing: a
 * thread's operations end with its loop).  task_op_done unties it (the op
 * completed or was freed; idempotent); task_end_ops cancels those left
 * when the request ends (the request runner calls it). */
void task_op_add(lua_State *L, struct task_op *op);
void task_op_done(struct task_op *op);
void task_end_ops(struct task *t);

/* The loop a wait started now in L would be ended by: the task's loop
 * when L may yield to it, else the thread's own.  For net clients. */
struct task_loop *task_io_loop(lua_State *L);

/* Waits for w, which lives in a userdata on L's stack (kept there until
 * the results are pushed).  timeout_ns: TASK_NO_TIMEOUT for none.
 * Returns as a lua_CFunction does (it may yield).  Raises the deadline
 * error when the deadline ended the wait. */
int task_wait(lua_State *L, struct task_wait *w, uint64_t timeout_ns);
/* Any thread: the event w waited for happened. */
void task_complete(struct task_wait *w);

/* Any thread: every wait looks at its cancel flag and at shutdown now. */
void task_poke_all(void);
/* Any thread: shutdown began: waits flagged TASK_ENDS_AT_SHUTDOWN end now,
 * and later ones at once. */
void task_shutdown(void);
/* A timeout argument: nil waits without limit, else seconds >= 0. */
uint64_t task_check_timeout(lua_State *L, int idx);

#endif
