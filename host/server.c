/* server: workers, the listening socket, signals, graceful stop. */
#include "server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "base/clock.h"
#include "base/instance.h"
#include "base/log.h"
#include "dispatch.h"
#include "lifecycle.h"
#include "http/listener.h"
#include "threads.h"
#include "worker.h"

/* Owned by the main thread (its default loop). */
struct server {
  const struct config *cfg;
  struct worker *workers;
  int nworkers;
  uv_signal_t sigint, sigterm;
  uv_timer_t poll;
  uint64_t stop_started_ns;
  int phase;
};

/* Raises the descriptor limit to the hard limit and sizes the connection
 * cap from it (a few descriptors stay for files and logs). */
static void size_connection_cap(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    long cap = (long)rl.rlim_cur - 64;
    if (cap > 1000000) cap = 1000000;
    http_set_max_conns(cap > 16 ? (int)cap : 16);
  }
}

static void on_poll(uv_timer_t *t) {
  struct server *s = t->data;
  int all_done = threads_active() == 0;
  for (int i = 0; i < s->nworkers; i++) all_done &= atomic_load(&s->workers[i].done);
  uint64_t elapsed = clock_now_ns() - s->stop_started_ns;
  if (all_done) {
    uv_stop(t->loop);
  } else if (s->phase == 1 && elapsed > (uint64_t)(s->cfg->shutdown_grace * 1e9)) {
    log_msg(LOG_WARNING, NULL, NULL, "shutdown grace of %g s expired; closing connections",
            s->cfg->shutdown_grace);
    s->phase = 2;
    threads_log_running();
    for (int i = 0; i < s->nworkers; i++) {
      worker_log_unfinished(&s->workers[i]);
      worker_stop(&s->workers[i], 2);
    }
  } else if (s->phase == 2 && elapsed > (uint64_t)(s->cfg->shutdown_grace * 1e9) + 2000000000u) {
    for (int i = 0; i < s->nworkers; i++) worker_log_unfinished(&s->workers[i]);
    log_msg(LOG_WARNING, NULL, NULL, "requests still running after the grace; exiting");
    uv_stop(t->loop);
  }
}

static void on_signal(uv_signal_t *sig, int signum) {
  struct server *s = sig->data;
  if (s->phase > 0) return;
  s->phase = 1;
  s->stop_started_ns = clock_now_ns();
  log_msg(LOG_INFO, NULL, NULL, "%s received: shutting down (grace %g s)",
          signum == SIGINT ? "SIGINT" : "SIGTERM", s->cfg->shutdown_grace);
  lifecycle_begin_shutdown();
  for (int i = 0; i < s->nworkers; i++) worker_stop(&s->workers[i], 1);
  uv_timer_start(&s->poll, on_poll, 10, 10);
}

int server_run(const struct config *cfg, const luaL_Reg *preload) {
  struct server s;
  char err[1024];
  int status = 1, started = 0;
  memset(&s, 0, sizeof s);
  s.cfg = cfg;
  signal(SIGPIPE, SIG_IGN);
  size_connection_cap();
  s.workers = calloc((size_t)cfg->workers, sizeof *s.workers);
  if (!s.workers) return 1;
  for (; s.nworkers < cfg->workers; s.nworkers++) {
    if (worker_init(&s.workers[s.nworkers], s.workers, s.nworkers, cfg, preload, err,
                    sizeof err) < 0) {
      log_msg(LOG_ERROR, NULL, NULL, "%s", err);
      s.nworkers++;
      goto done;
    }
  }
  /* A backend runs GET /_ah/start through its handlers before it accepts
   * traffic (on worker 0's loop, before its thread runs it). */
  if (cfg->role == VM_BACKEND) {
    struct worker *w0 = &s.workers[0];
    int st = lifecycle_request(w0->st, &w0->tl, "/_ah/start");
    if (!lifecycle_start_ok(st)) {
      log_msg(LOG_ERROR, NULL, NULL, "/_ah/start answered %d (expected 2xx or 404): not "
              "starting", st);
      goto done;
    }
  }
  int port;
  int fd = listener_open(cfg->listen_host, cfg->listen_port, &port, err, sizeof err);
  if (fd < 0) {
    log_msg(LOG_ERROR, NULL, NULL, "%s", err);
    goto done;
  }
  uv_loop_t *loop = uv_default_loop();
  uv_signal_init(loop, &s.sigint);
  uv_signal_init(loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_timer_init(loop, &s.poll);
  s.poll.data = &s;
  for (; started < s.nworkers; started++)
    if (worker_start(&s.workers[started], fd) < 0) abort();
  const char *h = cfg->listen_host;
  log_msg(LOG_INFO, NULL, NULL, "listening on http://%s%s%s:%d (%s, %d worker%s, app %s)",
          strchr(h, ':') ? "[" : "", h, strchr(h, ':') ? "]" : "", port,
          cfg->role == VM_BACKEND ? "backend" : "frontend", cfg->workers,
          cfg->workers == 1 ? "" : "s", cfg->app_dir);
  uv_run(loop, UV_RUN_DEFAULT);
  status = 0;
  int all_done = threads_active() == 0;
  for (int i = 0; i < s.nworkers; i++) all_done &= atomic_load(&s.workers[i].done);
  if (!all_done) {
    for (int i = 0; i < started; i++)
      if (atomic_load(&s.workers[i].done)) worker_join(&s.workers[i]);
    log_msg(LOG_INFO, NULL, NULL, "stopped");
    _exit(0);   /* a handler still runs on a worker: do not wait for it */
  }
  for (int i = 0; i < started; i++) worker_join(&s.workers[i]);
  uv_close((uv_handle_t *)&s.sigint, NULL);
  uv_close((uv_handle_t *)&s.sigterm, NULL);
  uv_close((uv_handle_t *)&s.poll, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  uv_loop_close(loop);
  close(fd);
  log_msg(LOG_INFO, NULL, NULL, "stopped");
done:
  for (int i = 0; i < s.nworkers; i++) worker_free(&s.workers[i]);
  free(s.workers);
  return status;
}
