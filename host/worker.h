/*
 * worker: one request-handling thread: a libuv loop, a Lua state with the
 * app's handlers loaded once, and the connections it accepted from the
 * shared listening socket.  Each request runs through the request runner
 * (dispatch.c) as a task on the worker's task loop: a handler waiting in a
 * host call yields and the loop resumes it.
 *
 * Threads: worker_init and worker_free run on the main thread (before the
 * worker thread starts / after it is joined); everything else in struct
 * worker belongs to the worker thread, except: `stop_phase`, `done`,
 * `started`, `running`, `busy_since` and `http.nconns` (atomics, read by
 * the main thread or other workers); `wake` and `mail` (uv_async_send from
 * any thread); `inbox` (under `mail_lock`, filled by other threads);
 * `tl` (its mailbox is the task layer's, locked there); `group`/`ngroup`
 * (set before the threads start, read-only).  Before the worker thread
 * starts, the main thread may drive the loop (the backend's /_ah/start).
 */
#ifndef LUAHOST_WORKER_H
#define LUAHOST_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "base/list.h"
#include "config.h"
#include "dispatch.h"
#include "task.h"
#include "http/http.h"
#include "http/listener.h"

struct req_job;
struct metrics_worker;

struct worker {
  int index;
  const struct config *cfg;
  uv_loop_t loop;
  uv_thread_t thread;
  struct task_loop tl;          /* the loop as the task layer sees it */
  uv_async_t wake;              /* main -> worker: look at stop_phase */
  uv_async_t mail;              /* any worker -> this one: inbox has fds */
  uv_mutex_t mail_lock;         /* guards inbox; held by a hand-off's send
                                   and by on_check's close */
  uv_timer_t check;             /* while draining: is everything done? */
  struct http_server http;
  struct listener_poll lp;
  int listen_fd;
  struct app_state *st;         /* the current state and its handlers; a
                                   replaced one lives on (not here) until
                                   its last request finishes */
  const luaL_Reg *preload;
  struct list jobs;             /* requests in flight (struct req_job) */
  struct list free_jobs;        /* cache of job structs */
  atomic_int stop_phase;        /* 0 running, 1 drain, 2 close everything */
  atomic_uint_fast64_t running; /* seq of the request whose Lua code runs
                                   now (0: none); read by the main thread */
  atomic_uint_fast64_t busy_since;  /* when that Lua code started (0: idle);
                                   read by other workers when balancing */
  int *inbox; int ninbox, inbox_cap;  /* accepted fds handed to this worker
                                   (mail_lock) */
  struct worker *group; int ngroup;   /* all workers, for balancing */
  atomic_int done;              /* set by the worker when its loop ended */
  atomic_int started;           /* set by the worker when its loop runs */
  struct metrics_worker *metrics;   /* written by this worker only (metrics.h) */
  pthread_spinlock_t jobs_lock; /* guards `jobs` links and each job's seq, so
                                   the main thread can list the requests in
                                   flight at the end of the shutdown grace.
                                   A spinlock: taken twice per request by the
                                   worker, contended only at that one read,
                                   and held for list steps only, never over
                                   a log line or I/O */
  _Atomic(struct config *) next_cfg;  /* a reload's config, handed over by the
                                   main thread (with a reference) */
};

/* Builds the state and loads the handlers.  0 or -1 with err. */
int worker_init(struct worker *w, struct worker *group, int index,
                const struct config *cfg, const luaL_Reg *preload, char *err,
                size_t errlen);
int worker_start(struct worker *w, int listen_fd);
void worker_stop(struct worker *w, int phase);    /* any thread */
void worker_join(struct worker *w);
/* Main thread: logs the ID of each request still in flight (running or
 * waiting) with the worker's number; returns how many. */
int worker_log_unfinished(struct worker *w);
/* Any thread: from its next loop turn, w builds a fresh state with cfg
 * (takes a reference) and hands new requests to it; requests in flight
 * finish on their old state, which is closed after the last. */
void worker_reload(struct worker *w, struct config *cfg);
void worker_free(struct worker *w);

#endif
