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

#endif
