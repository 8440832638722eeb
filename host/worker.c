/* worker: a loop, a state, requests as coroutines. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "lifecycle.h"
#include "metrics.h"
#include "vm/state.h"

/* A request in flight.  Owner: the worker thread. */
struct req_job {
  struct run_job rj;            /* first: the runner's job, and its task */
  struct worker *w;
  struct http_conn *conn;       /* NULL: the host's own lifecycle request */
  struct list_node node;        /* w->jobs while in flight (w->jobs_lock) */
  struct http_request own;      /* the request of a host lifecycle job */
  uint64_t seq;                 /* its request ID's number (w->jobs_lock) */
};

static int ah_route_id;         /* metrics label of the host's /_ah/ answers
                                   (set before workers start) */

/* app_state.busy: marks Lua code running on this worker (for shutdown
 * logs and for the other workers, which then stop handing it
 * connections). */
static void worker_busy(void *ud, uint64_t seq) {
  struct worker *w = ud;
  atomic_store_explicit(&w->busy_since, seq ? clock_coarse_ns() : 0, memory_order_relaxed);
  atomic_store_explicit(&w->running, seq, memory_order_relaxed);
}

static void job_release(struct task *t) {
  struct req_job *j = (struct req_job *)t;
  list_push_front(&j->w->free_jobs, &j->node);
}

static void complete(struct run_job *rj);

/* seq: the request's ID number, for the list at the end of the grace. */
static struct req_job *job_new(struct worker *w, uint64_t seq) {
  struct list_node *n = list_first(&w->free_jobs);
  struct req_job *j;
  if (n) { list_remove(n); j = list_entry(n, struct req_job, node); }
  else if (!(j = malloc(sizeof *j))) return NULL;
  /* No memset of the whole job (over 1 KiB with its header buffer and
   * lifecycle request): run_start sets the runner's fields; these are
   * the ones it leaves to the runner's later steps or to us. */
  j->w = w;
  j->conn = NULL;
  j->rj.done = complete;
  j->rj.co_ref = LUA_NOREF;
  j->rj.status = 0;
  j->rj.body = NULL;
  j->rj.body_len = 0;
  j->rj.static_rest = 0;
  pthread_spin_lock(&w->jobs_lock);
  j->seq = seq;
  list_push_back(&w->jobs, &j->node);
  pthread_spin_unlock(&w->jobs_lock);
  return j;
}

/* A worker state: the VM with the app's handlers loaded.  NULL on error. */
static struct app_state *state_new(struct worker *w, const struct config *cfg, char *err,
                                   size_t errlen) {
  struct vm_opts vo = {cfg->role, VM_EXIT_REFUSE, cfg->memory_limit,
                       {cfg->app_dir, NULL, NULL}, w->preload, NULL};
  struct app_state *d = calloc(1, sizeof *d);
  if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
  lua_State *L = vm_new(&vo, err, errlen);
  if (!L) { free(d); return NULL; }
  vm_set_host_data(L, (void *)cfg);
  if (app_state_init(d, L, cfg, err, errlen) < 0) {
    app_state_free(d);
    vm_close(L);
    free(d);
    return NULL;
  }
  d->busy = worker_busy;
  d->busy_ud = w;
  config_retain(cfg);   /* the state's: released by state_free */
  metrics_set_heap(w->metrics, vm_memory_used(L));   /* before its first request */
  return d;
}

static void state_free(struct app_state *d) {
  lua_State *L = d->L;
  const struct config *cfg = d->cfg;
  app_state_free(d);
  vm_close(L);
  free(d);
  config_release(cfg);
}

/* The state stays full after a memory error (module-level data filled
 * it): later requests get a fresh state, as after an instance restart;
 * requests still running in the old one finish there. */
static void replace_state(struct worker *w) {
  char err[1024];
  struct app_state *old = w->st;
  struct app_state *d = state_new(w, w->cfg, err, sizeof err);
  if (!d) {
    log_msg(LOG_ERROR, NULL, NULL, "worker %d: cannot replace its full Lua state: %s",
            w->index, err);
    return;
  }
  log_msg(LOG_WARNING, NULL, NULL, "worker %d: its Lua state still holds %zu KiB of its "
          "%zu KiB memory_limit after a memory error; replaced by a fresh state (module "
          "state starts over)", w->index, vm_memory_used(old->L) >> 10,
          vm_memory_limit(old->L) >> 10);
  w->st = d;
  if (old->inflight == 0) state_free(old);
}

/* The request's numbers for /_ah/metrics (owner-only writes, no lock). */
static void count_request(struct worker *w, const struct run_job *rj) {
  const struct config *cfg = rj->st->cfg;
  int id = rj->route >= 0 ? cfg->routes[rj->route].metrics_id
           : rj->task.vt.co ? METRICS_ROUTE_NONE : ah_route_id;   /* no coroutine: /_ah/ */
  metrics_request_end(w->metrics, id, rj->status, clock_now_ns() - rj->req->start_ns);
  if (rj->out_of_memory) metrics_count(w->metrics, METRIC_MEMORY_ERRORS);
  else if (rj->failed && rj->task.vt.deadline_hit) metrics_count(w->metrics, METRIC_DEADLINES);
  else if (rj->failed) metrics_count(w->metrics, METRIC_HANDLER_ERRORS);
}

/* run_job.done: sends what the handler produced and recycles the job. */
static void complete(struct run_job *rj) {
  struct req_job *j = (struct req_job *)rj;
  struct worker *w = j->w;
  struct app_state *d = rj->st;
  const struct http_request *r = rj->req;
  if (!j->conn) {   /* the host's own lifecycle request */
    log_msg(LOG_INFO, "request_id", r->request_id, "%.*s answered %d", (int)r->path_len,
            r->path, rj->status);
  } else {
    count_request(w, rj);
    http_respond(j->conn, rj->status, rj->headers, rj->nheaders, rj->body, rj->body_len);
  }
  if (run_finish(rj) && d == w->st) replace_state(w);
  else if (d != w->st && d->inflight == 0) state_free(d);
  /* the heap once the request let go of it (a state past its memory limit
   * was just replaced) */
  if (j->conn) metrics_set_heap(w->metrics, vm_memory_used(w->st->L));
  pthread_spin_lock(&w->jobs_lock);
  list_remove(&j->node);
  pthread_spin_unlock(&w->jobs_lock);
  task_release(&rj->task, job_release);
}

/* Hands over the fds other workers accepted for this one. */
static void on_handoff(uv_async_t *a) {
  struct worker *w = a->data;
  int fds[64], nfd = 0;
  uv_mutex_lock(&w->mail_lock);
  while (w->ninbox > 0 && nfd < 64) fds[nfd++] = w->inbox[--w->ninbox];
  int more = w->ninbox > 0;
  uv_mutex_unlock(&w->mail_lock);
  if (more) uv_async_send(&w->mail);
  for (int i = 0; i < nfd; i++) {
    atomic_fetch_sub_explicit(&w->http.nconns, 1, memory_order_relaxed);   /* arrived */
    if (atomic_load(&w->stop_phase) > 0) close(fds[i]);
    else http_conn_open(&w->http, fds[i]);
  }
}

/* ---- balancing connections ------------------------------------------- */

#define STUCK_NS 10000000u   /* Lua running this long: the worker is busy */

/* (w->mail_lock) Room for one more fd in w's inbox: 0, or -1. */
static int grow_inbox(struct worker *w) {
  if (w->ninbox < w->inbox_cap) return 0;
  int cap = w->inbox_cap ? w->inbox_cap * 2 : 64;
  int *p = realloc(w->inbox, (size_t)cap * sizeof *p);
  if (!p) return -1;
  w->inbox = p;
  w->inbox_cap = cap;
  return 0;
}

/* listener_accept_fn: the connection goes to the worker with the fewest
 * connections among those not busy in a long handler (this one if tied),
 * so loops share the load and a stuck worker gets no new connections. */
static void on_accepted(void *ud, int fd) {
  struct worker *w = ud, *best = w;
  uint64_t now = clock_coarse_ns();
  int best_n = atomic_load_explicit(&w->http.nconns, memory_order_relaxed);
  for (int i = 0; i < w->ngroup; i++) {
    struct worker *o = &w->group[i];
    if (o == w || atomic_load(&o->stop_phase) > 0 || !atomic_load(&o->started)) continue;
    uint64_t since = atomic_load_explicit(&o->busy_since, memory_order_relaxed);
    if (since && now > since && now - since > STUCK_NS) continue;
    int n = atomic_load_explicit(&o->http.nconns, memory_order_relaxed);
    if (n < best_n) { best = o; best_n = n; }
  }
  if (best == w) { http_conn_open(&w->http, fd); return; }
  /* Under best's mail_lock: its stop is checked again and the send made
   * before on_check, which closes `mail` under the same lock, can run. */
  uv_mutex_lock(&best->mail_lock);
  if (atomic_load(&best->stop_phase) > 0 || grow_inbox(best) < 0) {
    uv_mutex_unlock(&best->mail_lock);
    http_conn_open(&w->http, fd);
    return;
  }
  best->inbox[best->ninbox++] = fd;
  atomic_fetch_add_explicit(&best->http.nconns, 1, memory_order_relaxed);   /* on its way */
  uv_async_send(&best->mail);
  uv_mutex_unlock(&best->mail_lock);
}

/* http_dispatch_fn: one complete request from a connection. */
static void on_request(void *ud, struct http_conn *c, const struct http_request *r) {
  struct worker *w = ud;
  struct lifecycle_answer a;
  metrics_request_begin(w->metrics);
  w->http.close_each = lifecycle_draining();
  if (lifecycle_instance_path(w->cfg, r, &a)) {   /* /_ah/metrics, draining health */
    struct http_header ct = {"Content-Type", 12, a.content_type, strlen(a.content_type)};
    metrics_request_end(w->metrics, ah_route_id, a.status, clock_now_ns() - r->start_ns);
    http_respond(c, a.status, &ct, 1, a.body, a.len);
    if (a.owned) free(a.body);
    return;
  }
  struct req_job *j = job_new(w, r->seq);
  if (!j) {
    struct http_header ct = HTTP_HEADER_TEXT_PLAIN;
    metrics_request_end(w->metrics, METRICS_ROUTE_NONE, 503, clock_now_ns() - r->start_ns);
    http_respond(c, 503, &ct, 1, "out of memory\n", 14);
    return;
  }
  j->conn = c;
  run_start(w->st, &j->rj, r, 0, &w->tl);
}

/* http_server.refused: a request the HTTP layer answered itself. */
static void on_refused(void *ud, const struct http_request *r, int status) {
  struct worker *w = ud;
  metrics_request_begin(w->metrics);
  metrics_request_end(w->metrics, METRICS_ROUTE_NONE, status, clock_now_ns() - r->start_ns);
}

/* ---- reload ----------------------------------------------------------- */

void worker_reload(struct worker *w, struct config *cfg) {
  config_retain(cfg);
  struct config *old = atomic_exchange(&w->next_cfg, cfg);
  config_release(old);   /* a reload this worker had not picked up yet */
  uv_async_send(&w->wake);
}

/* On the worker: a fresh state with the new config takes new requests;
 * the old one lives until its last request (complete() frees it). */
static void take_reload(struct worker *w) {
  char err[1024];
  struct config *cfg = atomic_exchange(&w->next_cfg, NULL);
  if (!cfg) return;
  struct app_state *d = state_new(w, cfg, err, sizeof err);
  if (!d) {
    log_msg(LOG_ERROR, NULL, NULL, "worker %d: reload failed, it keeps its running code: %s",
            w->index, err);
    config_release(cfg);
    return;
  }
  struct app_state *old = w->st;
  const struct config *old_cfg = w->cfg;
  w->st = d;
  w->cfg = cfg;   /* the reference worker_reload took is now w->cfg's */
  w->http.lim.max_body = cfg->max_body;
  w->http.lim.access_log = cfg->access_log;
  if (old->inflight == 0) state_free(old);
  if (old_cfg != NULL) config_release(old_cfg);
}

/* ---- stopping --------------------------------------------------------- */

/* A backend sends GET /_ah/stop through its handlers when shutdown starts
 * (on worker 0); its answer is logged. */
static void send_stop_request(struct worker *w) {
  struct http_request own;
  dispatch_internal_request(&own, "/_ah/stop");
  struct req_job *j = job_new(w, own.seq);   /* listed at the grace like any request */
  if (!j) return;
  j->own = own;
  run_start(w->st, &j->rj, &j->own, 1, &w->tl);
}

static void on_check(uv_timer_t *t) {
  struct worker *w = t->data;
  uv_mutex_lock(&w->mail_lock);   /* no hand-off in flight (see on_accepted) */
  int idle = w->http.nconns == 0 && list_empty(&w->jobs);
  if (idle) {
    uv_close((uv_handle_t *)&w->check, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->mail, NULL);
    task_loop_close(&w->tl);
  }
  uv_mutex_unlock(&w->mail_lock);
}

/* Stopping: waits that end at shutdown were ended by task_shutdown
 * (lifecycle_begin_shutdown, before this). */
static void on_stop(uv_async_t *a) {
  struct worker *w = a->data;
  int phase = atomic_load(&w->stop_phase);
  if (phase == 0) {   /* woken for a reload */
    take_reload(w);
    return;
  }
  if (!uv_is_active((uv_handle_t *)&w->check) && !uv_is_closing((uv_handle_t *)&w->check)) {
    listener_stop(&w->lp);
    http_server_drain(&w->http);
    uv_timer_start(&w->check, on_check, 0, 20);
    if (w->index == 0 && w->cfg->role == VM_BACKEND) send_stop_request(w);
  }
  if (phase >= 2) http_server_close_all(&w->http);   /* the IDs were logged (main) */
}

int worker_log_unfinished(struct worker *w) {
  uint64_t stack[64], *seqs = stack;
  size_t cap = 64, n = 0;
  uint64_t running = atomic_load_explicit(&w->running, memory_order_relaxed);
  pthread_spin_lock(&w->jobs_lock);   /* copy the IDs; log with the lock let go */
  list_each(&w->jobs, it, tmp) {
    struct req_job *j = list_entry(it, struct req_job, node);
    if (!j->seq) continue;   /* being set up, or the host's own request */
    if (n == cap) {          /* rare: more than 64 left on one worker */
      uint64_t *more = malloc(cap * 2 * sizeof *more);
      if (!more) break;
      memcpy(more, seqs, n * sizeof *seqs);
      if (seqs != stack) free(seqs);
      seqs = more;
      cap *= 2;
    }
    seqs[n++] = j->seq;
  }
  pthread_spin_unlock(&w->jobs_lock);
  for (size_t i = 0; i < n; i++) {
    char rid[INSTANCE_RID_LEN + 1];
    instance_format_request_id(seqs[i], rid);
    log_msg(LOG_WARNING, "request_id", rid, "request %s still %s on worker %d at the end "
            "of the shutdown grace", rid, seqs[i] == running ? "running" : "waiting", w->index);
  }
  if (seqs != stack) free(seqs);
  return (int)n;
}

static void run(void *arg) {
  struct worker *w = arg;
  atomic_store(&w->started, 1);
  if (listener_start(&w->lp, &w->loop, w->listen_fd, on_accepted, w) < 0)
    log_msg(LOG_ERROR, NULL, NULL, "worker %d cannot poll the listening socket", w->index);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  atomic_store(&w->done, 1);
}

int worker_init(struct worker *w, struct worker *group, int index,
                const struct config *cfg, const luaL_Reg *preload, char *err,
                size_t errlen) {
  memset(w, 0, sizeof *w);
  w->group = group;
  w->ngroup = cfg->workers;
  w->index = index;
  w->cfg = cfg;
  w->preload = preload;
  list_init(&w->jobs);
  list_init(&w->free_jobs);
  pthread_spin_init(&w->jobs_lock, PTHREAD_PROCESS_PRIVATE);
  if (!(w->metrics = metrics_worker_new(index))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  ah_route_id = metrics_route_id("/_ah/");
  if (!(w->st = state_new(w, cfg, err, errlen))) return -1;
  if (uv_loop_init(&w->loop) < 0) return -1;
  if (task_loop_init(&w->tl, &w->loop) < 0) return -1;
  uv_async_init(&w->loop, &w->wake, on_stop);
  w->wake.data = w;
  uv_async_init(&w->loop, &w->mail, on_handoff);
  w->mail.data = w;
  uv_mutex_init(&w->mail_lock);
  uv_timer_init(&w->loop, &w->check);
  w->check.data = w;
  /* header, body-idle and keep-alive timeouts are equal, so that arming
   * the next phase rarely moves the connection's timer */
  struct http_limits lim = {cfg->max_body, 20000, 20000, 20000, cfg->access_log};
  http_server_init(&w->http, &w->loop, &lim, on_request, w);
  w->http.refused = on_refused;
  return 0;
}

int worker_start(struct worker *w, int listen_fd) {
  w->listen_fd = listen_fd;
  return uv_thread_create(&w->thread, run, w);
}

void worker_stop(struct worker *w, int phase) {
  atomic_store(&w->stop_phase, phase);
  uv_async_send(&w->wake);
}

void worker_join(struct worker *w) { uv_thread_join(&w->thread); }

void worker_free(struct worker *w) {
  if (w->wake.loop && !uv_is_closing((uv_handle_t *)&w->wake)) {   /* never ran, or
                                                                     cut short */
    uv_close((uv_handle_t *)&w->check, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->mail, NULL);
    task_loop_close(&w->tl);
    uv_run(&w->loop, UV_RUN_NOWAIT);
  }
  if (w->st) {
    state_free(w->st);
    w->st = NULL;
  }
  for (int i = 0; i < w->ninbox; i++) close(w->inbox[i]);
  free(w->inbox);
  if (w->free_jobs.head.next)
    list_each(&w->free_jobs, it, tmp) free(list_entry(it, struct req_job, node));
  if (w->wake.loop) {
    uv_loop_close(&w->loop);
    uv_mutex_destroy(&w->mail_lock);
  }
  config_release(atomic_exchange(&w->next_cfg, NULL));
  config_release(w->cfg);   /* a reload's (the first is the caller's: no-op) */
  if (w->jobs.head.next) pthread_spin_destroy(&w->jobs_lock);
}
