/* lifecycle: /_ah/ paths, lifecycle requests, shutdown's first steps. */
#include "lifecycle.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/log.h"
#include "dispatch.h"
#include "http/cidr.h"
#include "metrics.h"
#include "store/queue.h"
#include "task.h"
#include "threads.h"

int lifecycle_reserved(const struct http_request *r, int internal, int *status,
                       const char **body) {
  if (r->path_len < 5 || memcmp(r->path, "/_ah/", 5) != 0) return 0;
  const char *p = r->path + 5;
  size_t n = r->path_len - 5;
  if (n == 6 && !memcmp(p, "health", 6)) { *status = 200; *body = "ok\n"; return 1; }
  int lifecycle = (n == 5 && !memcmp(p, "start", 5)) || (n == 4 && !memcmp(p, "stop", 4)) ||
                  (n == 6 && !memcmp(p, "warmup", 6));
  if (lifecycle && internal) return 0;
  *status = lifecycle ? 403 : 404;
  *body = lifecycle ? "forbidden: /_ah/ lifecycle paths come only from the host\n"
                    : "not found\n";
  return 1;
}

struct internal_job {
  struct run_job rj;
  int answered, released;
  int status;
};

static void on_released(struct task *t) { ((struct internal_job *)t)->released = 1; }

static void on_done(struct run_job *j) {
  struct internal_job *ij = (struct internal_job *)j;
  ij->status = j->status;
  ij->answered = 1;
  run_finish(j);
  task_release(&j->task, on_released);
}

int lifecycle_request(struct app_state *s, struct task_loop *tl, const char *path) {
  struct http_request r;
  struct internal_job ij;
  memset(&ij, 0, sizeof ij);
  ij.rj.done = on_done;
  dispatch_internal_request(&r, path);
  run_start(s, &ij.rj, &r, 1, tl);
  while (!ij.released) uv_run(tl->uv, UV_RUN_ONCE);
  log_msg(ij.status >= 500 ? LOG_WARNING : LOG_INFO, "request_id", r.request_id,
          "%s answered %d", path, ij.status);
  return ij.status;
}

int lifecycle_start_ok(int status) {
  return (status >= 200 && status < 300) || status == 404;
}

void lifecycle_begin_shutdown(void) {
  task_shutdown();        /* is_shutting_down; sleepers and waits end */
  queue_shutdown_all();   /* waiting pops and pushes return "shutting down" */
  threads_shutdown();     /* no new threads */
  threads_run_hook();
}

/* ---- drain, /_ah/metrics ------------------------------------------------ */

static atomic_int draining;   /* main thread writes, workers read */

void lifecycle_set_draining(int on) { atomic_store(&draining, on); }
int lifecycle_draining(void) { return atomic_load_explicit(&draining, memory_order_relaxed); }

static int path_is(const struct http_request *r, const char *p) {
  size_t n = strlen(p);
  return r->path_len == n && memcmp(r->path, p, n) == 0;
}

int lifecycle_instance_path(const struct config *cfg, const struct http_request *r,
                            struct lifecycle_answer *a) {
  if (r->path_len < 5 || memcmp(r->path, "/_ah/", 5) != 0) return 0;
  memset(a, 0, sizeof *a);
  a->content_type = HTTP_TEXT_PLAIN;
  if (path_is(r, "/_ah/health") && lifecycle_draining()) {
    a->status = 503;
    a->body = "draining\n";
  } else if (path_is(r, "/_ah/metrics")) {
    if (!cidr_is_loopback(r->remote) &&
        !cidr_match_any(cfg->metrics_allow, cfg->nmetrics_allow, r->remote)) {
      a->status = 403;
      a->body = "forbidden: /_ah/metrics answers loopback and metrics_allow only\n";
    } else if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD")) {
      a->status = 405;
      a->body = "method not allowed: GET /_ah/metrics\n";
    } else if ((a->body = metrics_render(&a->len))) {
      a->status = 200;
      a->owned = 1;
      a->content_type = "text/plain; version=0.0.4; charset=utf-8";
      return 1;
    } else {
      a->status = 503;
      a->body = "out of memory\n";
    }
  } else {
    return 0;
  }
  a->len = strlen(a->body);
  return 1;
}

void lifecycle_label_routes(struct config *cfg) {
  for (int i = 0; i < cfg->nroutes; i++)
    cfg->routes[i].metrics_id = metrics_route_id(cfg->routes[i].url);
}

/* ---- reload --------------------------------------------------------------- */

static int caps_differ(const struct config_cap *a, int na, const struct config_cap *b, int nb) {
  if (na != nb) return 1;
  for (int i = 0; i < na; i++)
    if (strcmp(a[i].name, b[i].name) || a[i].size != b[i].size) return 1;
  return 0;
}

static int str_differ(const char *a, const char *b) {
  return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

static int redis_differ(const struct config *a, const struct config *b) {
  if (a->nredis != b->nredis) return 1;
  for (int i = 0; i < a->nredis; i++)
    if (strcmp(a->redis[i].name, b->redis[i].name) || strcmp(a->redis[i].url, b->redis[i].url))
      return 1;
  return 0;
}

/* c takes copies of cur's Redis servers and store settings (the clients
 * and stores already made keep using those). */
static void keep_redis_settings(const struct config *cur, struct config *c) {
  struct config_redis *r = calloc((size_t)cur->nredis + 1, sizeof *r);
  char *store = cur->store ? strdup(cur->store) : NULL;
  char *prefix = cur->store_prefix ? strdup(cur->store_prefix) : NULL;
  int ok = r && (!cur->store || store) && (!cur->store_prefix || prefix);
  for (int i = 0; ok && i < cur->nredis; i++) {
    r[i].name = strdup(cur->redis[i].name);
    r[i].url = strdup(cur->redis[i].url);
    ok = r[i].name && r[i].url;
  }
  if (!ok) {   /* out of memory: c keeps its own, which the running clients ignore */
    for (int i = 0; r && i < cur->nredis; i++) { free(r[i].name); free(r[i].url); }
    free(r); free(store); free(prefix);
    return;
  }
  for (int i = 0; i < c->nredis; i++) { free(c->redis[i].name); free(c->redis[i].url); }
  free(c->redis); free(c->store); free(c->store_prefix);
  c->redis = r;
  c->nredis = cur->nredis;
  c->store = store;
  c->store_prefix = prefix;
  c->store_timeout = cur->store_timeout;
}

/* Settings a running instance cannot change: logged, and kept. */
static void keep_restart_settings(const struct config *cur, struct config *c) {
  if (strcmp(cur->listen_host, c->listen_host) || cur->listen_port != c->listen_port)
    log_msg(LOG_WARNING, NULL, NULL, "reload: listen changed to %s:%d; it needs a restart "
            "(still %s:%d)", c->listen_host, c->listen_port, cur->listen_host,
            cur->listen_port);
  if (cur->workers != c->workers)
    log_msg(LOG_WARNING, NULL, NULL, "reload: workers changed to %d; it needs a restart "
            "(still %d)", c->workers, cur->workers);
  if (cur->role != c->role)
    log_msg(LOG_WARNING, NULL, NULL, "reload: role changed to %s; it needs a restart "
            "(still %s)", c->role == VM_BACKEND ? "backend" : "frontend",
            cur->role == VM_BACKEND ? "backend" : "frontend");
  if (cur->max_background_threads != c->max_background_threads)
    log_msg(LOG_WARNING, NULL, NULL, "reload: max_background_threads changed to %d; it "
            "needs a restart (still %d)", c->max_background_threads,
            cur->max_background_threads);
  if (caps_differ(cur->dicts, cur->ndicts, c->dicts, c->ndicts) ||
      caps_differ(cur->queues, cur->nqueues, c->queues, c->nqueues))
    log_msg(LOG_WARNING, NULL, NULL, "reload: shared capacities changed; they need a "
            "restart (the dicts and queues keep theirs and their contents)");
  if (redis_differ(cur, c) || str_differ(cur->store, c->store) ||
      str_differ(cur->store_prefix, c->store_prefix) || cur->store_timeout != c->store_timeout) {
    log_msg(LOG_WARNING, NULL, NULL, "reload: redis, shared.store, shared.timeout or "
            "store_prefix changed; they need a restart (the running ones stay)");
    keep_redis_settings(cur, c);
  }
  char *host = strdup(cur->listen_host);
  if (host) { free(c->listen_host); c->listen_host = host; }
  c->listen_port = cur->listen_port;
  c->workers = cur->workers;
  if (c->role != cur->role && !c->cli.request_deadline &&
      c->request_deadline == (c->role == VM_BACKEND ? 86400 : 60))
    c->request_deadline = cur->role == VM_BACKEND ? 86400 : 60;   /* the kept role's default */
  c->role = cur->role;
  c->max_background_threads = cur->max_background_threads;
}

struct config *lifecycle_reload_config(const struct config *cur, const luaL_Reg *preload,
                                       const char *why) {
  char err[2048];
  int rc;
  log_msg(LOG_INFO, NULL, NULL, "reloading %s (%s)", cur->app_dir, why);
  struct config *c = config_load_new(cur->app_dir, &cur->cli, &rc, err, sizeof err);
  if (!c) {
    log_msg(LOG_ERROR, NULL, NULL, "reload refused, the running configuration and code "
            "stay: %s", err);
    return NULL;
  }
  keep_restart_settings(cur, c);
  /* every handler module must load, in a state like a worker's */
  struct vm_opts vo = {c->role, VM_EXIT_REFUSE, c->memory_limit, {c->app_dir, NULL, NULL},
                       preload, NULL};
  lua_State *L = vm_new(&vo, err, sizeof err);
  if (L) {
    vm_set_host_data(L, c);
    rc = app_state_check(L, c, err, sizeof err);
    vm_close(L);
  }
  if (!L || rc < 0) {
    log_msg(LOG_ERROR, NULL, NULL, "reload refused, the running configuration and code "
            "stay: %s", err);
    config_release(c);
    return NULL;
  }
  lifecycle_label_routes(c);
  return c;
}
