/* metrics: per-worker counters summed at scrape time; text exposition. */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSTATUS 500               /* status codes 100..599 */
#define MAX_GAUGES 32

/* Upper bounds of the duration buckets, in nanoseconds (le="0.005" ...). */
static const uint64_t bucket_ns[METRICS_NBUCKETS] = {
  5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000,
  1000000000, 2500000000u, 5000000000u, 10000000000u};
static const char *const bucket_le[METRICS_NBUCKETS] = {
  "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"};

/* One route's numbers in one worker.  Written by the owner only. */
struct route_block {
  _Atomic uint64_t status[NSTATUS];
  _Atomic uint64_t bucket[METRICS_NBUCKETS + 1];   /* not cumulative; last: > 10 s */
  _Atomic uint64_t sum_ns;
};

struct metrics_worker {
  int index;                                   /* set at creation */
  struct metrics_worker *next;                 /* registry list (lock) */
  /* below: written by the owner thread only (load + store, relaxed) */
  _Atomic uint64_t counters[METRIC_NCOUNTERS];
  _Atomic uint64_t in_flight;                  /* requests begun and not ended: one
                                                  value, so a scrape reads it whole */
  _Atomic uint64_t heap_bytes;
  /* made by the owner on a route's first request; published with release */
  _Atomic(struct route_block *) routes[METRICS_MAX_ROUTES];
};

struct gauge {
  const char *name, *help, *label;             /* borrowed: static strings */
  metrics_gauge_fn fn;
  void *ud;
};

struct metrics_sink {
  FILE *f;
  const struct gauge *g;
};

/* The registry.  lock guards workers, the label table's appends and the
 * gauges; nlabels is also read without it (acquire) by nobody but render,
 * which holds it anyway. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_worker *workers;
static char *labels[METRICS_MAX_ROUTES];
static int nlabels;
static struct gauge gauges[MAX_GAUGES];
static int ngauges;
/* Counts from outside the workers: any thread, fetch_add. */
static _Atomic uint64_t any_counters[METRIC_NCOUNTERS];

static const struct { const char *name, *help; } counter_info[METRIC_NCOUNTERS] = {
  {"luahost_handler_errors_total", "Handlers that raised an error (answered 500)."},
  {"luahost_deadlines_exceeded_total", "Requests and threads stopped by their deadline."},
  {"luahost_memory_limit_errors_total", "Lua states that went over memory_limit."},
  {"luahost_background_threads_started_total", "Background threads started."},
  {"luahost_background_threads_failed_total", "Background threads that ended with an error."},
  {"luahost_urlfetch_requests_total", "Outbound urlfetch requests made."},
  {"luahost_urlfetch_errors_total", "Outbound urlfetch requests that failed."},
  {"luahost_redis_commands_total", "Redis commands sent."},
  {"luahost_redis_errors_total", "Redis commands that failed."},
};

/* ---- the owner's writes ------------------------------------------------ */

/* x += n by its only writer: no lock prefix, no torn value for readers. */
static inline void bump(_Atomic uint64_t *x, uint64_t n) {
  atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static inline uint64_t get(_Atomic uint64_t *x) {
  return atomic_load_explicit(x, memory_order_relaxed);
}

struct metrics_worker *metrics_worker_new(int index) {
  struct metrics_worker *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->index = index;
  pthread_mutex_lock(&lock);
  /* keep the list in index order: the exposition lists workers that way */
  struct metrics_worker **p = &workers;
  while (*p && (*p)->index <= index) p = &(*p)->next;
  w->next = *p;
  *p = w;
  pthread_mutex_unlock(&lock);
  return w;
}

void metrics_request_begin(struct metrics_worker *w) {
  if (w) bump(&w->in_flight, 1);
}

void metrics_request_end(struct metrics_worker *w, int route_id, int status,
                         uint64_t duration_ns) {
  if (!w) return;
  if (route_id < 0 || route_id >= METRICS_MAX_ROUTES) route_id = METRICS_ROUTE_NONE;
  struct route_block *b = atomic_load_explicit(&w->routes[route_id], memory_order_relaxed);
  if (!b) {
    if (!(b = calloc(1, sizeof *b))) { bump(&w->in_flight, (uint64_t)-1); return; }
    atomic_store_explicit(&w->routes[route_id], b, memory_order_release);
  }
  if (status >= 100 && status < 100 + NSTATUS) bump(&b->status[status - 100], 1);
  int i = 0;
  while (i < METRICS_NBUCKETS && duration_ns > bucket_ns[i]) i++;
  bump(&b->bucket[i], 1);
  bump(&b->sum_ns, duration_ns);
  bump(&w->in_flight, (uint64_t)-1);
}

void metrics_count(struct metrics_worker *w, enum metrics_counter c) {
  if (w) bump(&w->counters[c], 1);
  else metrics_count_any(c);
}

void metrics_set_heap(struct metrics_worker *w, uint64_t bytes) {
  if (w) atomic_store_explicit(&w->heap_bytes, bytes, memory_order_relaxed);
}

void metrics_count_any(enum metrics_counter c) {
  atomic_fetch_add_explicit(&any_counters[c], 1, memory_order_relaxed);
}

/* ---- labels and gauges ------------------------------------------------- */

static int intern(const char *label) {
  for (int i = 0; i < nlabels; i++)
    if (!strcmp(labels[i], label)) return i;
  if (nlabels == METRICS_MAX_ROUTES - 1) {   /* the last slot: "(other)" */
    if (!(labels[nlabels] = strdup("(other)"))) return METRICS_ROUTE_NONE;
    return nlabels++;
  }
  if (nlabels == METRICS_MAX_ROUTES) return METRICS_MAX_ROUTES - 1;
  if (!(labels[nlabels] = strdup(label))) return METRICS_ROUTE_NONE;
  return nlabels++;
}

int metrics_route_id(const char *label) {
  pthread_mutex_lock(&lock);
  if (nlabels == 0) intern("(none)");          /* METRICS_ROUTE_NONE */
  int id = intern(label ? label : "(none)");
  pthread_mutex_unlock(&lock);
  return id;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static int valid_name(const char *s) {
  if (!s || !*s || (*s >= '0' && *s <= '9')) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == ':'))
      return 0;
  return 1;
}

int metrics_gauge_add(const char *name, const char *help, const char *label,
                      metrics_gauge_fn fn, void *ud) {
  if (!valid_name(name) || (label && (!valid_name(label) || strchr(label, ':'))) || !fn)
    return -1;
  pthread_mutex_lock(&lock);
  int rc = -1;
  if (ngauges < MAX_GAUGES) {
    gauges[ngauges++] = (struct gauge){name, help, label, fn, ud};
    rc = 0;
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

/* ---- exposition -------------------------------------------------------- */

/* A label value: \ " and newline escaped (text format 0.0.4). */
static void put_label_value(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '\\') fputs("\\\\", f);
    else if (*s == '"') fputs("\\\"", f);
    else if (*s == '\n') fputs("\\n", f);
    else fputc(*s, f);
  }
  fputc('"', f);
}

/* HELP text: \ and newline escaped. */
static void put_header(FILE *f, const char *name, const char *help, const char *type) {
  fprintf(f, "# HELP %s ", name);
  for (const char *s = help ? help : ""; *s; s++) {
    if (*s == '\\') fputs("\\\\", f);
    else if (*s == '\n') fputs("\\n", f);
    else fputc(*s, f);
  }
  fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* A float as the format wants it: NaN, +Inf, -Inf, or the shortest
 * round-tripping decimal. */
static void put_value(FILE *f, double v) {
  if (v != v) fputs("NaN", f);
  else if (v > 1.7976931348623157e308) fputs("+Inf", f);
  else if (v < -1.7976931348623157e308) fputs("-Inf", f);
  else if (v == (double)(int64_t)v && v > -9e15 && v < 9e15) fprintf(f, "%lld", (long long)v);
  else fprintf(f, "%.17g", v);
}

void metrics_sample(struct metrics_sink *sink, const char *label_value, double value) {
  const struct gauge *g = sink->g;
  fputs(g->name, sink->f);
  if (g->label && label_value) {
    fprintf(sink->f, "{%s=", g->label);
    put_label_value(sink->f, label_value);
    fputc('}', sink->f);
  }
  fputc(' ', sink->f);
  put_value(sink->f, value);
  fputc('\n', sink->f);
}

/* One route's numbers, summed over the workers. */
struct route_sum {
  uint64_t status[NSTATUS];
  uint64_t bucket[METRICS_NBUCKETS + 1];
  uint64_t sum_ns;
  int seen;
};

static void sum_route(int id, struct route_sum *r) {
  memset(r, 0, sizeof *r);
  for (struct metrics_worker *w = workers; w; w = w->next) {
    struct route_block *b = atomic_load_explicit(&w->routes[id], memory_order_acquire);
    if (!b) continue;
    r->seen = 1;
    for (int s = 0; s < NSTATUS; s++) r->status[s] += get(&b->status[s]);
    for (int i = 0; i <= METRICS_NBUCKETS; i++) r->bucket[i] += get(&b->bucket[i]);
    r->sum_ns += get(&b->sum_ns);
  }
}

static void render_requests(FILE *f) {
  struct route_sum *sums = calloc((size_t)(nlabels ? nlabels : 1), sizeof *sums);
  if (!sums) return;
  for (int id = 0; id < nlabels; id++) sum_route(id, &sums[id]);
  put_header(f, "luahost_http_requests_total",
             "HTTP requests answered, by route (url pattern) and status.", "counter");
  for (int id = 0; id < nlabels; id++)
    for (int s = 0; s < NSTATUS; s++) {
      if (!sums[id].status[s]) continue;
      fputs("luahost_http_requests_total{route=", f);
      put_label_value(f, labels[id]);
      fprintf(f, ",status=\"%d\"} %llu\n", s + 100, (unsigned long long)sums[id].status[s]);
    }
  put_header(f, "luahost_http_request_duration_seconds",
             "Time from the first byte of a request to its response, by route.", "histogram");
  for (int id = 0; id < nlabels; id++) {
    const struct route_sum *r = &sums[id];
    if (!r->seen) continue;
    uint64_t cum = 0;
    for (int i = 0; i <= METRICS_NBUCKETS; i++) {
      cum += r->bucket[i];
      fputs("luahost_http_request_duration_seconds_bucket{route=", f);
      put_label_value(f, labels[id]);
      fprintf(f, ",le=\"%s\"} %llu\n", i < METRICS_NBUCKETS ? bucket_le[i] : "+Inf",
              (unsigned long long)cum);
    }
    fputs("luahost_http_request_duration_seconds_sum{route=", f);
    put_label_value(f, labels[id]);
    fprintf(f, "} %.9f\n", (double)r->sum_ns / 1e9);
    fputs("luahost_http_request_duration_seconds_count{route=", f);
    put_label_value(f, labels[id]);
    fprintf(f, "} %llu\n", (unsigned long long)cum);
  }
  free(sums);
}

static void render_workers(FILE *f) {
  /* each worker's count is read whole (begun and ended read apart could
   * straddle the owner's progress and come out above the truth) */
  uint64_t in_flight = 0;
  for (struct metrics_worker *w = workers; w; w = w->next) in_flight += get(&w->in_flight);
  put_header(f, "luahost_http_requests_in_flight",
             "Requests being handled (parsed, not yet answered).", "gauge");
  fprintf(f, "luahost_http_requests_in_flight %llu\n",
          (unsigned long long)in_flight);
  for (int c = 0; c < METRIC_NCOUNTERS; c++) {
    uint64_t n = get(&any_counters[c]);
    for (struct metrics_worker *w = workers; w; w = w->next) n += get(&w->counters[c]);
    put_header(f, counter_info[c].name, counter_info[c].help, "counter");
    fprintf(f, "%s %llu\n", counter_info[c].name, (unsigned long long)n);
  }
  put_header(f, "luahost_lua_heap_bytes", "Lua heap bytes of each worker's states.", "gauge");
  for (struct metrics_worker *w = workers; w; w = w->next)
    fprintf(f, "luahost_lua_heap_bytes{worker=\"%d\"} %llu\n", w->index,
            (unsigned long long)get(&w->heap_bytes));
}

char *metrics_render(size_t *len) {
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  if (!f) return NULL;
  pthread_mutex_lock(&lock);
  if (nlabels == 0) intern("(none)");
  render_requests(f);
  render_workers(f);
  for (int i = 0; i < ngauges; i++) {
    struct metrics_sink sink = {f, &gauges[i]};
    put_header(f, gauges[i].name, gauges[i].help, "gauge");
    gauges[i].fn(gauges[i].ud, &sink);
  }
  put_header(f, "luahost_build_info", "The luahost version; always 1.", "gauge");
  fputs("luahost_build_info{version=", f);
  put_label_value(f, LUAHOST_VERSION);
  fputs("} 1\n", f);
  pthread_mutex_unlock(&lock);
  if (fclose(f) != 0) { free(out); return NULL; }
  *len = n;
  return out;
}

void metrics_free_all(void) {
  pthread_mutex_lock(&lock);
  while (workers) {
    struct metrics_worker *w = workers;
    workers = w->next;
    for (int i = 0; i < METRICS_MAX_ROUTES; i++) free(atomic_load(&w->routes[i]));
    free(w);
  }
  for (int i = 0; i < nlabels; i++) free(labels[i]);
  nlabels = 0;
  ngauges = 0;
  for (int c = 0; c < METRIC_NCOUNTERS; c++) atomic_store(&any_counters[c], 0);
  pthread_mutex_unlock(&lock);
}
