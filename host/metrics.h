/*
 * metrics: the registry of what GET /_ah/metrics reports, and its
 * Prometheus text exposition (format 0.0.4).  Knows no Lua and no libuv;
 * metrics_sources.c connects it to the host's parts.
 *
 * Ownership and threads:
 * - Each worker owns one struct metrics_worker (metrics_worker_new).  Only
 *   its owner thread writes it, and without locks or read-modify-write
 *   instructions: a relaxed atomic load, then a relaxed atomic store (a
 *   plain mov on x86-64 and arm64).  The scraper reads it with relaxed
 *   loads and sums the workers; a sample read mid-update is at worst one
 *   request behind, never torn.  The worker structs live until
 *   metrics_free_all (process exit), so a scrape never sees one freed.
 * - Counts made on other threads (background threads, scripts) go through
 *   metrics_count_any: process-wide atomics (fetch_add), off the request
 *   path.
 * - Gauges that other modules own are read at scrape time by callbacks
 *   (metrics_gauge_add); a callback runs on the scraping thread, under the
 *   registry lock, and must only take locks of its own module (lock order:
 *   metrics, then the module's).
 * - Routes are labelled by an interned label (the route's url pattern from
 *   app.lua, or a host path such as "/_ah/health"), never by the raw path:
 *   metrics_route_id() gives a small integer, the same for the same label,
 *   for the process's lifetime (a reload adds labels, never renumbers).
 *   At most METRICS_MAX_ROUTES labels; later ones share "(other)".
 *
 * Returned strings (metrics_render) are malloc'd and owned by the caller.
 */
#ifndef LUAHOST_METRICS_H
#define LUAHOST_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_ROUTES 256
#define METRICS_ROUTE_NONE 0      /* no route took the request: "(none)" */
#define METRICS_NBUCKETS 11       /* 5 ms ... 10 s, plus +Inf */

/* Counters kept per worker (metrics_count) or process-wide (_any). */
enum metrics_counter {
  METRIC_HANDLER_ERRORS,          /* a handler raised: 500 */
  METRIC_DEADLINES,               /* DeadlineExceededError (requests and threads) */
  METRIC_MEMORY_ERRORS,           /* a state went over memory_limit */
  METRIC_THREADS_STARTED,         /* background threads started */
  METRIC_THREADS_FAILED,          /* background threads that ended with an error */
  METRIC_URLFETCH_REQUESTS,
  METRIC_URLFETCH_ERRORS,
  METRIC_REDIS_COMMANDS,
  METRIC_REDIS_ERRORS,
  METRIC_NCOUNTERS
};

struct metrics_worker;
struct metrics_sink;

/* Any thread.  The struct that worker `index` owns (NULL: no memory). */
struct metrics_worker *metrics_worker_new(int index);

/* Owner thread only; w may be NULL (metrics off): then nothing happens. */
void metrics_request_begin(struct metrics_worker *w);
void metrics_request_end(struct metrics_worker *w, int route_id, int status,
                         uint64_t duration_ns);
void metrics_count(struct metrics_worker *w, enum metrics_counter c);
void metrics_set_heap(struct metrics_worker *w, uint64_t bytes);

/* Any thread: a count made outside a worker's request path. */
void metrics_count_any(enum metrics_counter c);

/* Any thread (takes the registry lock): the id of a route label. */
int metrics_route_id(const char *label);

/* A gauge family read at scrape time.  label: the label's name, or NULL
 * for a family of one unlabelled sample.  fn calls metrics_sample once per
 * sample.  Main thread, before workers start; 0, or -1 when the table is
 * full or name is not a valid metric name. */
typedef void (*metrics_gauge_fn)(void *ud, struct metrics_sink *sink);
int metrics_gauge_add(const char *name, const char *help, const char *label,
                      metrics_gauge_fn fn, void *ud);
/* From a gauge callback: one sample (label_value NULL when unlabelled). */
void metrics_sample(struct metrics_sink *sink, const char *label_value, double value);

/* The exposition, as text/plain; version=0.0.4; *len its length.  NULL
 * when out of memory.  Any thread. */
char *metrics_render(size_t *len);

/* Process exit, no thread left that writes or scrapes. */
void metrics_free_all(void);

#endif
