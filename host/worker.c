/* worker: a loop, a state, requests as coroutines. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "http/static.h"
#include "vm/state.h"

/* A request in flight.  Owner: the worker thread, except mail_next
 * (written under w->mail_lock by whichever thread posts the job). */
struct req_job {
  struct dispatch_job dj;
  struct worker *w;
  struct http_conn *conn;
  uv_timer_t timer;             /* wakes a parked request */
  int timer_init;
  struct req_job *prev, *next;  /* w->waiting while parked */
  struct req_job *mail_next;    /* (w->mail_lock) w->mailbox once posted */
  int (*on_timeout)(void *);    /* parked on a waiter (queue) rather than a sleep */
  void *timeout_arg;
  struct http_request own;      /* the request of a host lifecycle job */
};

static int job_sleep(struct vm_task *t, uint64_t ns);
static int job_park(struct vm_task *t, uint64_t ns, int (*on_timeout)(void *), void *arg);
static void job_post(struct vm_task *t);
static const struct vm_waiter waiter = {1, job_sleep, job_park, job_post, NULL};

/* Marks Lua code running on this worker (for shutdown logs and for the
 * other workers, which then stop handing it connections). */
static void lua_begin(struct worker *w, uint64_t seq) {
  atomic_store_explicit(&w->running, seq, memory_order_relaxed);
  atomic_store_explicit(&w->busy_since, clock_coarse_ns(), memory_order_relaxed);
}

static void lua_end(struct worker *w) {
  atomic_store_explicit(&w->busy_since, 0, memory_order_relaxed);
  atomic_store_explicit(&w->running, 0, memory_order_relaxed);
}

static struct req_job *job_new(struct worker *w) {
  struct req_job *j = w->free_jobs;
  if (j) w->free_jobs = j->next;
  else if (!(j = malloc(sizeof *j))) return NULL;
  memset(j, 0, sizeof *j);
  j->w = w;
  j->dj.task.waiter = &waiter;
  j->dj.task.owner = j;
  return j;
}

static void job_release(struct req_job *j) {
  j->next = j->w->free_jobs;
  j->w->free_jobs = j;
}

static void on_job_timer_closed(uv_handle_t *h) { job_release(h->data); }

static void unpark(struct req_job *j) {
  struct worker *w = j->w;
  if (j->prev) j->prev->next = j->next; else if (w->waiting == j) w->waiting = j->next;
  if (j->next) j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

/* A worker state: the VM with the app's handlers loaded.  NULL on error. */
static struct dispatch *state_new(struct worker *w, char *err, size_t errlen) {
  const struct config *cfg = w->cfg;
  struct vm_opts vo = {cfg->role, VM_EXIT_REFUSE, cfg->memory_limit,
                       {cfg->app_dir, NULL, NULL}, w->preload, NULL};
  struct dispatch *d = calloc(1, sizeof *d);
  if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
  lua_State *L = vm_new(&vo, err, errlen);
  if (!L) { free(d); return NULL; }
  vm_of(L)->host_data = (void *)cfg;
  if (dispatch_init(d, L, cfg, err, errlen) < 0) {
    dispatch_free(d);
    vm_close(L);
    free(d);
    return NULL;
  }
  return d;
}

static void state_free(struct dispatch *d) {
  lua_State *L = d->L;
  dispatch_free(d);
  vm_close(L);
  free(d);
}

/* The state stays full after a memory error (module-level data filled
 * it): later requests get a fresh state, as after an instance restart;
 * requests still running in the old one finish there. */
static void replace_state(struct worker *w) {
  char err[1024];
  struct dispatch *old = w->d;
  struct dispatch *d = state_new(w, err, sizeof err);
  if (!d) {
    log_msg(LOG_ERROR, NULL, NULL, "worker %d: cannot replace its full Lua state: %s",
            w->index, err);
    return;
  }
  log_msg(LOG_WARNING, NULL, NULL, "worker %d: its Lua state still holds %zu KiB of its "
          "%zu KiB memory_limit after a memory error; replaced by a fresh state (module "
          "state starts over)", w->index, vm_of(old->L)->used >> 10,
          vm_of(old->L)->limit >> 10);
  w->d = d;
  if (old->inflight == 0) state_free(old);
}

/* Sends what the handler produced and recycles the job. */
static void complete(struct req_job *j) {
  struct dispatch_job *dj = &j->dj;
  struct worker *w = j->w;
  struct dispatch *d = dj->d;
  const struct http_request *r = dj->req;
  if (!j->conn)   /* the host's own lifecycle request */
    log_msg(LOG_INFO, "request_id", r->request_id, "%.*s answered %d", (int)r->path_len,
            r->path, dj->static_route ? 404 : dj->status);
  else if (dj->static_route)
    http_static_serve(j->conn, r, dj->static_route->static_dir, r->path + dj->static_rest,
                      r->path_len - dj->static_rest);
  else
    http_respond(j->conn, dj->status, dj->headers, dj->nheaders, dj->body, dj->body_len);
  if (dispatch_finish(dj) && d == w->d) replace_state(w);
  else if (d != w->d && d->inflight == 0) state_free(d);
  if (j->timer_init) uv_close((uv_handle_t *)&j->timer, on_job_timer_closed);
  else job_release(j);
}

/* Runs request r's handler in job j until it answers or waits. */
static void start_job(struct worker *w, struct req_job *j, const struct http_request *r) {
  lua_begin(w, r->seq);
  int st = dispatch_start(w->d, &j->dj, r);
  lua_end(w);
  if (st == DISPATCH_DONE) complete(j);
}

static void resume_job(struct req_job *j) {
  struct worker *w = j->w;
  unpark(j);
  j->on_timeout = NULL;
  lua_begin(w, j->dj.req->seq);
  int st = dispatch_resume(&j->dj, 0);
  lua_end(w);
  if (st == DISPATCH_DONE) complete(j);
}

static void on_wake(uv_timer_t *t) {
  struct req_job *j = t->data;
  /* parked on a waiter: it decides whether the timeout won the race */
  if (j->on_timeout && !j->on_timeout(j->timeout_arg)) return;
  resume_job(j);
}

/* Drains the mailbox: parked jobs that another thread (or this one)
 * completed. */
static void on_mail(uv_async_t *a) {
  struct worker *w = a->data;
  int fds[64], nfd = 0;
  uv_mutex_lock(&w->mail_lock);
  struct req_job *list = w->mailbox;
  w->mailbox = NULL;
  while (w->ninbox > 0 && nfd < 64) fds[nfd++] = w->inbox[--w->ninbox];
  int more = w->ninbox > 0;
  uv_mutex_unlock(&w->mail_lock);
  if (more) uv_async_send(&w->mail);
  for (int i = 0; i < nfd; i++) {
    atomic_fetch_sub_explicit(&w->http.nconns, 1, memory_order_relaxed);   /* arrived */
    if (atomic_load(&w->stop_phase) > 0) close(fds[i]);
    else http_conn_open(&w->http, fds[i]);
  }
  struct req_job *rev = NULL;   /* oldest first */
  while (list) {
    struct req_job *n = list->mail_next;
    list->mail_next = rev;
    rev = list;
    list = n;
  }
  while (rev) {
    struct req_job *j = rev;
    rev = j->mail_next;
    uv_timer_stop(&j->timer);
    resume_job(j);
  }
}

static void job_post(struct vm_task *t) {
  struct req_job *j = t->owner;
  struct worker *w = j->w;
  uv_mutex_lock(&w->mail_lock);
  j->mail_next = w->mailbox;
  w->mailbox = j;
  uv_mutex_unlock(&w->mail_lock);
  uv_async_send(&w->mail);
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

/* vm_waiter.sleep: park the request; a timer resumes it (at the latest at
 * its deadline, at once when shutting down). */
static int job_sleep(struct vm_task *t, uint64_t ns) {
  struct req_job *j = t->owner;
  struct worker *w = j->w;
  if (!j->timer_init) {
    if (uv_timer_init(&w->loop, &j->timer) < 0) return -1;
    j->timer.data = j;
    j->timer_init = 1;
  }
  uint64_t now = clock_coarse_ns();
  if (t->deadline_ns && now + ns > t->deadline_ns)
    ns = t->deadline_ns > now ? t->deadline_ns - now + 1000000 : 0;
  if (atomic_load(&w->stop_phase) > 0) { ns = 0; t->woken_early = 1; }
  uv_timer_start(&j->timer, on_wake, (ns + 999999) / 1000000, 0);
  t->parked = 1;
  j->next = w->waiting;
  j->prev = NULL;
  if (w->waiting) w->waiting->prev = j;
  w->waiting = j;
  return 0;
}

/* vm_waiter.park: like sleep, but ended by job_post; the timeout (capped
 * by the deadline) asks on_timeout first. */
static int job_park(struct vm_task *t, uint64_t ns, int (*on_timeout)(void *), void *arg) {
  struct req_job *j = t->owner;
  uint64_t now = clock_coarse_ns();
  if (t->deadline_ns && (ns == UINT64_MAX || now + ns > t->deadline_ns))
    ns = t->deadline_ns > now ? t->deadline_ns - now + 1000000 : 0;
  if (ns == UINT64_MAX) ns = (uint64_t)365 * 86400 * 1000000000u;
  if (job_sleep(t, ns) < 0) return -1;
  j->on_timeout = on_timeout;
  j->timeout_arg = arg;
  return 0;
}

/* http_dispatch_fn: one complete request from a connection. */
static void on_request(void *ud, struct http_conn *c, const struct http_request *r) {
  struct worker *w = ud;
  int status;
  const char *body;
  if (dispatch_reserved(r, 0, &status, &body)) {
    struct http_header ct = {"Content-Type", 12, "text/plain; charset=utf-8", 25};
    http_respond(c, status, &ct, 1, body, strlen(body));
    return;
  }
  struct req_job *j = job_new(w);
  if (!j) {
    http_respond(c, 503, NULL, 0, "out of memory\n", 14);
    return;
  }
  j->conn = c;
  start_job(w, j, r);
}

/* ---- stopping --------------------------------------------------------- */

/* A backend sends GET /_ah/stop through its handlers when shutdown starts
 * (on worker 0); its answer is logged. */
static void send_stop_request(struct worker *w) {
  struct req_job *j = job_new(w);
  if (!j) return;
  struct http_request *r = &j->own;
  dispatch_internal_request(r, "/_ah/stop");
  start_job(w, j, r);
}

static void on_check(uv_timer_t *t) {
  struct worker *w = t->data;
  uv_mutex_lock(&w->mail_lock);   /* no hand-off in flight (see on_accepted) */
  int idle = w->http.nconns == 0 && !w->waiting;
  if (idle) {
    uv_close((uv_handle_t *)&w->check, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->mail, NULL);
  }
  uv_mutex_unlock(&w->mail_lock);
}

static void on_stop(uv_async_t *a) {
  struct worker *w = a->data;
  int phase = atomic_load(&w->stop_phase);
  if (!uv_is_active((uv_handle_t *)&w->check) && !uv_is_closing((uv_handle_t *)&w->check)) {
    listener_stop(&w->lp);
    http_server_drain(&w->http);
    uv_timer_start(&w->check, on_check, 0, 20);
    if (w->index == 0 && w->cfg->role == VM_BACKEND) send_stop_request(w);
  }
  /* wake parked requests: their sleeps return false */
  for (struct req_job *j = w->waiting; j; j = j->next) {
    if (j->on_timeout) continue;   /* queue waits: queue_shutdown_all posts them */
    j->dj.task.woken_early = 1;
    uv_timer_start(&j->timer, on_wake, 0, 0);
  }
  if (phase >= 2) {
    for (struct req_job *j = w->waiting; j; j = j->next)
      log_msg(LOG_WARNING, "request_id", j->dj.req->request_id,
              "request %.*s still waiting at the end of the shutdown grace",
              (int)j->dj.req->path_len, j->dj.req->path);
    http_server_close_all(&w->http);
  }
}

void worker_log_unfinished(struct worker *w) {
  uint64_t seq = atomic_load_explicit(&w->running, memory_order_relaxed);
  if (seq) {
    char rid[INSTANCE_RID_LEN + 1];
    instance_format_request_id(seq, rid);
    log_msg(LOG_WARNING, "request_id", rid,
            "request still running on worker %d after the shutdown grace", w->index);
  }
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
  if (!(w->d = state_new(w, err, errlen))) return -1;
  if (uv_loop_init(&w->loop) < 0) return -1;
  uv_async_init(&w->loop, &w->wake, on_stop);
  w->wake.data = w;
  uv_async_init(&w->loop, &w->mail, on_mail);
  w->mail.data = w;
  uv_mutex_init(&w->mail_lock);
  uv_timer_init(&w->loop, &w->check);
  w->check.data = w;
  /* header, body-idle and keep-alive timeouts are equal, so that arming
   * the next phase rarely moves the connection's timer */
  struct http_limits lim = {cfg->max_body, 20000, 20000, 20000, cfg->access_log};
  http_server_init(&w->http, &w->loop, &lim, on_request, w);
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
  if (w->d) {
    state_free(w->d);
    w->d = NULL;
  }
  for (int i = 0; i < w->ninbox; i++) close(w->inbox[i]);
  free(w->inbox);
  while (w->free_jobs) {
    struct req_job *j = w->free_jobs;
    w->free_jobs = j->next;
    free(j);
  }
  if (w->wake.loop) {
    uv_loop_close(&w->loop);
    uv_mutex_destroy(&w->mail_lock);
  }
}
