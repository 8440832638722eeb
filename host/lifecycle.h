/*
 * lifecycle: the instance's life as the host lives it (SPEC §4, §6, §13):
 * the reserved /_ah/ paths, the backend's /_ah/start and /_ah/stop
 * requests, and the first steps of shutdown (what every sleeper, queue
 * and thread is told).  The server (serve) and apptest call these, so the
 * rules are written once.  Reload and drain belong here too.
 *
 * Threads: lifecycle_reserved anywhere; lifecycle_request on the thread
 * that owns the app state and may run its loop; lifecycle_begin_shutdown
 * on the main thread.
 */
#ifndef LUAHOST_LIFECYCLE_H
#define LUAHOST_LIFECYCLE_H

#include <lauxlib.h>

#include "config.h"
#include "http/http.h"

struct app_state;
struct task_loop;

/* Paths under /_ah/ that the host answers itself: 1 with *status and
 * *body set, 0 when the request goes to the routes.  internal: the host
 * itself sends it (lifecycle requests reach the app's handlers). */
int lifecycle_reserved(const struct http_request *r, int internal, int *status,
                       const char **body);

/* Runs the host's own GET `path` (/_ah/start, /_ah/stop) through s's
 * routes on loop tl, driving tl until it is answered; logs and returns
 * the status.  tl must not be running (the caller's thread drives it). */
int lifecycle_request(struct app_state *s, struct task_loop *tl, const char *path);

/* /_ah/start's verdict: 2xx or 404 is success. */
int lifecycle_start_ok(int status);

/* Shutdown's first steps: is_shutting_down set, every waiting pop and
 * push answers "shutting down", sleepers wake, no new threads, the
 * shutdown hook starts. */
void lifecycle_begin_shutdown(void);

/* ---- serve only: drain, /_ah/metrics, reload (SPEC §13) --------------- */

/* Draining (the `drain` seconds before shutdown): /_ah/health answers 503
 * and every response carries Connection: close.  Set by the main thread,
 * read by workers (atomic). */
void lifecycle_set_draining(int on);
int lifecycle_draining(void);

/* The answer to a path only a serving instance gives (it needs the
 * instance, not the app): GET /_ah/metrics (to loopback peers and those
 * in cfg->metrics_allow, else 403), and /_ah/health while draining (503).
 * body is malloc'd when `owned` (the caller frees it). */
struct lifecycle_answer {
  int status;
  const char *content_type;
  char *body; size_t len;
  int owned;
};
/* 1 with *a filled, or 0: the request goes on to the runner.  Worker
 * threads. */
int lifecycle_instance_path(const struct config *cfg, const struct http_request *r,
                            struct lifecycle_answer *a);

/* Route labels of cfg for /_ah/metrics (route.metrics_id).  Main thread,
 * before any worker uses cfg. */
void lifecycle_label_routes(struct config *cfg);

/* A reload's new configuration: app.lua read again with cur's command-line
 * options, every handler module loaded once in a scratch state (so that a
 * syntax error or a failing module refuses the reload), settings that need
 * a restart (listen, workers, role, max_background_threads, shared
 * capacities) logged and kept as they are.  The new config (one
 * reference, the caller's), or NULL after logging why the running
 * configuration stays.  Main thread. */
struct config *lifecycle_reload_config(const struct config *cur, const luaL_Reg *preload,
                                       const char *why);

#endif
