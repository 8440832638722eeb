/* server: workers, the listening socket, signals, graceful stop. */
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "base/clock.h"
#include "base/log.h"
#include "dispatch.h"
#include "lifecycle.h"
#include "http/listener.h"
#include "metrics.h"
#include "metrics_sources.h"
#include "threads.h"
#include "worker.h"

/* serve --reload: one watch per directory of the app (inotify is not
 * recursive). */
struct watch { uv_fs_event_t ev; struct watch *next; char path[]; };

#define WATCH_MAX_DIRS 256
#define WATCH_DEBOUNCE_MS 250
#define EXIT_AFTER_GRACE_MS 300   /* the exit comes within 0.5 s of the grace */

/* Owned by the main thread (its default loop). */
struct server {
  const struct config *cfg;    /* the running configuration (a reload replaces it) */
  const struct config *first;  /* the caller's (app.c frees it) */
  const luaL_Reg *preload;
  struct worker *workers;
  int nworkers;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t poll;
  uv_timer_t drain;            /* the drain period's end */
  uv_timer_t debounce;         /* --reload: quiet time after a change */
  struct watch *watches; int nwatches;
  uint64_t stop_started_ns, grace_end_ns;
  int phase;                   /* 0 serving, 1 grace, 2 closing after the grace */
  int draining;
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

/* At the end of the grace: the IDs of exactly the requests and threads
 * still running are logged, connections close, and the process exits
 * within EXIT_AFTER_GRACE_MS whatever still runs. */
static void on_poll(uv_timer_t *t) {
  struct server *s = t->data;
  int all_done = threads_active() == 0;
  for (int i = 0; i < s->nworkers; i++) all_done &= atomic_load(&s->workers[i].done);
  uint64_t now = clock_now_ns(), elapsed = now - s->stop_started_ns;
  if (all_done) {
    uv_stop(t->loop);
  } else if (s->phase == 1 && elapsed >= (uint64_t)(s->cfg->shutdown_grace * 1e9)) {
    s->phase = 2;
    s->grace_end_ns = now;
    int nreq = 0, nthr = threads_log_running();
    for (int i = 0; i < s->nworkers; i++) nreq += worker_log_unfinished(&s->workers[i]);
    if (nreq || nthr)
      log_msg(LOG_WARNING, NULL, NULL, "shutdown grace of %g s ended with %d request%s and "
              "%d background thread%s still running (IDs above); exiting",
              s->cfg->shutdown_grace, nreq, nreq == 1 ? "" : "s", nthr, nthr == 1 ? "" : "s");
    else
      log_msg(LOG_INFO, NULL, NULL, "shutdown grace of %g s ended; closing connections",
              s->cfg->shutdown_grace);
    for (int i = 0; i < s->nworkers; i++) worker_stop(&s->workers[i], 2);
  } else if (s->phase == 2 && now - s->grace_end_ns >= EXIT_AFTER_GRACE_MS * 1000000ull) {
    uv_stop(t->loop);
  }
}

static void close_watches(struct server *s);

/* Shutdown proper (after the drain, if any). */
static void begin_stop(struct server *s, const char *why) {
  s->phase = 1;
  s->stop_started_ns = clock_now_ns();
  log_msg(LOG_INFO, NULL, NULL, "%s: shutting down (grace %g s)", why, s->cfg->shutdown_grace);
  uv_timer_stop(&s->drain);
  close_watches(s);
  uv_timer_stop(&s->debounce);
  lifecycle_begin_shutdown();
  for (int i = 0; i < s->nworkers; i++) worker_stop(&s->workers[i], 1);
  uv_timer_start(&s->poll, on_poll, 10, 10);
}

static void on_drain_end(uv_timer_t *t) {
  begin_stop(t->data, "drain ended");
}

/* SIGTERM/SIGINT: drain first when app.lua asks for it (a second signal
 * cuts the drain short), then shut down. */
static void on_signal(uv_signal_t *sig, int signum) {
  struct server *s = sig->data;
  const char *name = signum == SIGINT ? "SIGINT received" : "SIGTERM received";
  if (s->phase > 0) return;
  if (!s->draining && s->cfg->drain > 0) {
    s->draining = 1;
    lifecycle_set_draining(1);
    log_msg(LOG_INFO, NULL, NULL, "%s: draining for %g s (/_ah/health answers 503, every "
            "response closes its connection), then shutting down", name, s->cfg->drain);
    uv_timer_start(&s->drain, on_drain_end, (uint64_t)(s->cfg->drain * 1000), 0);
    return;
  }
  begin_stop(s, s->draining ? "second signal during the drain" : name);
}

/* ---- reload ------------------------------------------------------------ */

static void reload(struct server *s, const char *why) {
  if (s->phase > 0 || s->draining) {
    log_msg(LOG_WARNING, NULL, NULL, "reload (%s) ignored: the instance is shutting down",
            why);
    return;
  }
  struct config *c = lifecycle_reload_config(s->cfg, s->preload, why);
  if (!c) return;
  for (int i = 0; i < s->nworkers; i++) worker_reload(&s->workers[i], c);
  config_release(s->cfg);   /* no-op for the first (the caller's) */
  s->cfg = c;
  log_msg(LOG_INFO, NULL, NULL, "reloaded: every worker takes new requests on fresh states "
          "(requests in flight finish on the old ones)");
}

static void on_sighup(uv_signal_t *sig, int signum) { reload(sig->data, "SIGHUP"); }

static void watch_tree(struct server *s, const char *dir, int depth);

static void on_watch_closed(uv_handle_t *h) { free(h); }

static void close_watches(struct server *s) {
  while (s->watches) {
    struct watch *w = s->watches;
    s->watches = w->next;
    uv_close((uv_handle_t *)&w->ev, on_watch_closed);
  }
  s->nwatches = 0;
}

/* Directories that came since are watched too, before the reload reads
 * the files (a worker may serve the new code before this callback ends: a
 * change made then is seen).  Existing watches stay as they are: closing
 * and remaking them lost changes made in between.  A directory that went
 * keeps a watch that no longer fires. */
static void on_quiet(uv_timer_t *t) {
  struct server *s = t->data;
  if (s->phase == 0) watch_tree(s, s->cfg->app_dir, 0);
  reload(s, "a file of the app changed");
}

/* A change: reload once things are quiet for WATCH_DEBOUNCE_MS (an editor
 * saves in several steps). */
static void on_change(uv_fs_event_t *ev, const char *name, int events, int status) {
  struct server *s = ev->data;
  if (status < 0 || (name && name[0] == '.')) return;   /* hidden files: editors' swap */
  uv_timer_start(&s->debounce, on_quiet, WATCH_DEBOUNCE_MS, 0);
}

static int watched(const struct server *s, const char *dir) {
  for (const struct watch *w = s->watches; w; w = w->next)
    if (!strcmp(w->path, dir)) return 1;
  return 0;
}

static void watch_tree(struct server *s, const char *dir, int depth) {
  if (depth > 16) return;
  if (!watched(s, dir)) {
    if (s->nwatches >= WATCH_MAX_DIRS) return;
    struct watch *w = calloc(1, sizeof *w + strlen(dir) + 1);
    if (!w) return;
    strcpy(w->path, dir);
    uv_fs_event_init(uv_default_loop(), &w->ev);
    w->ev.data = s;
    if (uv_fs_event_start(&w->ev, on_change, dir, 0) < 0) {
      uv_close((uv_handle_t *)&w->ev, on_watch_closed);
      return;
    }
    w->next = s->watches;
    s->watches = w;
    s->nwatches++;
  }
  /* the subdirectories, through libuv's synchronous scandir */
  uv_fs_t req;
  uv_dirent_t e;
  if (uv_fs_scandir(uv_default_loop(), &req, dir, 0, NULL) >= 0)
    while (uv_fs_scandir_next(&req, &e) != UV_EOF) {
      if (e.name[0] == '.' || e.type != UV_DIRENT_DIR) continue;
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/%s", dir, e.name);
      watch_tree(s, sub, depth + 1);
    }
  uv_fs_req_cleanup(&req);
}

int server_run(const struct config *cfg, const luaL_Reg *preload) {
  struct server s;
  char err[1024];
  int status = 1, started = 0;
  memset(&s, 0, sizeof s);
  s.cfg = s.first = cfg;
  s.preload = preload;
  lifecycle_label_routes((struct config *)cfg);   /* before any worker reads it */
  metrics_sources_init(cfg->store != NULL);
  signal(SIGHUP, SIG_IGN);   /* a reload before the loop runs must not end the process */
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
  uv_signal_init(loop, &s.sighup);
  s.sighup.data = &s;
  uv_signal_start(&s.sighup, on_sighup, SIGHUP);
  uv_timer_init(loop, &s.poll);
  s.poll.data = &s;
  uv_timer_init(loop, &s.drain);
  s.drain.data = &s;
  uv_timer_init(loop, &s.debounce);
  s.debounce.data = &s;
  if (cfg->reload) {
    watch_tree(&s, cfg->app_dir, 0);
    log_msg(LOG_INFO, NULL, NULL, "--reload: watching %d director%s of %s", s.nwatches,
            s.nwatches == 1 ? "y" : "ies", cfg->app_dir);
  }
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
  uv_close((uv_handle_t *)&s.sighup, NULL);
  uv_close((uv_handle_t *)&s.poll, NULL);
  uv_close((uv_handle_t *)&s.drain, NULL);
  uv_close((uv_handle_t *)&s.debounce, NULL);
  close_watches(&s);
  uv_run(loop, UV_RUN_NOWAIT);
  uv_loop_close(loop);
  close(fd);
  log_msg(LOG_INFO, NULL, NULL, "stopped");
done:
  for (int i = 0; i < s.nworkers; i++) worker_free(&s.workers[i]);
  free(s.workers);
  if (s.cfg != s.first) config_release(s.cfg);
  metrics_free_all();
  return status;
}
