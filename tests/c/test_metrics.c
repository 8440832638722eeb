/* metrics: per-worker counters summed at scrape, histogram buckets, route
 * labels, gauges, escaping, and the exposition checked by promtool. */
#include <pthread.h>
#include <unistd.h>

#include "metrics.h"
#include "runner.h"

#define MS 1000000ull

static char *render(void) {
  size_t n = 0;
  char *s = metrics_render(&n);
  ASSERT(s);
  ASSERT_INT_EQ(strlen(s), n);
  return s;
}

/* The value of the sample line that starts with `series ` (exact series,
 * labels included); -1 when there is none. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
  }
  return -1;
}

static int count_lines_starting(const char *text, const char *prefix) {
  int k = 0;
  size_t n = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (!strncmp(p, prefix, n)) k++;
  return k;
}

TEST(route_ids_are_interned) {
  int none = metrics_route_id(NULL);
  ASSERT_INT_EQ(none, METRICS_ROUTE_NONE);
  int a = metrics_route_id("^/a$"), b = metrics_route_id("^/b$");
  ASSERT(a != b && a != none && b != none);
  ASSERT_INT_EQ(metrics_route_id("^/a$"), a);
  ASSERT_INT_EQ(metrics_route_id("(none)"), none);
  /* past the table: every new label shares one "(other)" id */
  char label[32];
  int last = -1;
  for (int i = 0; i < METRICS_MAX_ROUTES + 20; i++) {
    snprintf(label, sizeof label, "^/r%d$", i);
    int id = metrics_route_id(label);
    ASSERT(id >= 0 && id < METRICS_MAX_ROUTES);
    last = id;
  }
  ASSERT_INT_EQ(last, METRICS_MAX_ROUTES - 1);
  ASSERT_INT_EQ(metrics_route_id("^/another-one$"), METRICS_MAX_ROUTES - 1);
  ASSERT_INT_EQ(metrics_route_id("^/a$"), a);   /* old ones keep theirs */
  struct metrics_worker *w = metrics_worker_new(0);
  metrics_request_begin(w);
  metrics_request_end(w, last, 200, MS);
  char *s = render();
  ASSERT(sample(s, "luahost_http_requests_total{route=\"(other)\",status=\"200\"}") == 1);
  free(s);
}

TEST(histogram_buckets) {
  struct metrics_worker *w = metrics_worker_new(0);
  int r = metrics_route_id("^/h$");
  /* durations: on a bound, just above it, far past the last bound */
  uint64_t d[] = {0, 5 * MS, 5 * MS + 1, 99 * MS, 100 * MS, 2000 * MS, 10000 * MS,
                  10000 * MS + 1, 3600000 * MS};
  for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
    metrics_request_begin(w);
    metrics_request_end(w, r, i % 2 ? 500 : 200, d[i]);
  }
  char *s = render();
#define B(le) sample(s, "luahost_http_request_duration_seconds_bucket{route=\"^/h$\",le=\"" le "\"}")
  ASSERT(B("0.005") == 2);     /* 0 and exactly 5 ms */
  ASSERT(B("0.01") == 3);
  ASSERT(B("0.025") == 3);
  ASSERT(B("0.1") == 5);       /* 99 ms, 100 ms */
  ASSERT(B("1") == 5);
  ASSERT(B("2.5") == 6);
  ASSERT(B("10") == 7);        /* exactly 10 s */
  ASSERT(B("+Inf") == 9);
#undef B
  ASSERT(sample(s, "luahost_http_request_duration_seconds_count{route=\"^/h$\"}") == 9);
  double sum = sample(s, "luahost_http_request_duration_seconds_sum{route=\"^/h$\"}");
  double want = 0;
  for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) want += (double)d[i] / 1e9;
  ASSERT(sum > want - 1e-6 && sum < want + 1e-6);
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/h$\",status=\"200\"}") == 5);
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/h$\",status=\"500\"}") == 4);
  /* 11 bounds and +Inf, one series per route seen */
  ASSERT_INT_EQ(count_lines_starting(s, "luahost_http_request_duration_seconds_bucket{"), 12);
  free(s);
}

TEST(in_flight_and_counters) {
  struct metrics_worker *w0 = metrics_worker_new(0), *w1 = metrics_worker_new(1);
  int r = metrics_route_id("^/x$");
  metrics_request_begin(w0);
  metrics_request_begin(w0);
  metrics_request_begin(w1);
  char *s = render();
  ASSERT(sample(s, "luahost_http_requests_in_flight") == 3);
  free(s);
  metrics_request_end(w0, r, 200, MS);
  metrics_request_end(w1, r, 404, MS);
  metrics_count(w0, METRIC_HANDLER_ERRORS);
  metrics_count(w1, METRIC_HANDLER_ERRORS);
  metrics_count_any(METRIC_HANDLER_ERRORS);
  metrics_count(NULL, METRIC_DEADLINES);           /* NULL: as _any */
  metrics_count_any(METRIC_THREADS_STARTED);
  metrics_set_heap(w0, 123456);
  metrics_set_heap(w1, 7);
  metrics_request_begin(NULL);                     /* metrics off: no effect */
  metrics_request_end(NULL, r, 200, MS);
  s = render();
  ASSERT(sample(s, "luahost_http_requests_in_flight") == 1);
  ASSERT(sample(s, "luahost_handler_errors_total") == 3);
  ASSERT(sample(s, "luahost_deadlines_exceeded_total") == 1);
  ASSERT(sample(s, "luahost_memory_limit_errors_total") == 0);
  ASSERT(sample(s, "luahost_background_threads_started_total") == 1);
  ASSERT(sample(s, "luahost_background_threads_failed_total") == 0);
  ASSERT(sample(s, "luahost_urlfetch_requests_total") == 0);
  ASSERT(sample(s, "luahost_redis_errors_total") == 0);
  ASSERT(sample(s, "luahost_lua_heap_bytes{worker=\"0\"}") == 123456);
  ASSERT(sample(s, "luahost_lua_heap_bytes{worker=\"1\"}") == 7);
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/x$\",status=\"200\"}") == 1);
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/x$\",status=\"404\"}") == 1);
  char build[64];
  snprintf(build, sizeof build, "luahost_build_info{version=\"%s\"}", LUAHOST_VERSION);
  ASSERT(sample(s, build) == 1);
  free(s);
}

/* Workers count on their own threads while another thread scrapes: the
 * totals come out exact and no scrape sees a count go backwards. */
#define NW 4
#define PER 200000
struct wargs { int index, route; pthread_barrier_t *go; };

static void *worker_main(void *p) {
  struct wargs *a = p;
  struct metrics_worker *w = metrics_worker_new(a->index);
  pthread_barrier_wait(a->go);
  for (int i = 0; i < PER; i++) {
    metrics_request_begin(w);
    metrics_request_end(w, a->route, i % 10 ? 200 : 503, (uint64_t)(i % 7) * MS);
    if (i % 1000 == 0) metrics_count(w, METRIC_MEMORY_ERRORS);
  }
  return NULL;
}

TEST(concurrent_workers_sum_exactly) {
  pthread_t t[NW];
  struct wargs a[NW];
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, NW + 1);
  int route = metrics_route_id("^/busy$");
  for (int i = 0; i < NW; i++) {
    a[i] = (struct wargs){i, route, &go};
    ASSERT_INT_EQ(pthread_create(&t[i], NULL, worker_main, &a[i]), 0);
  }
  pthread_barrier_wait(&go);
  double prev = 0;
  for (int k = 0; k < 50; k++) {
    char *s = render();
    double ok = sample(s, "luahost_http_requests_total{route=\"^/busy$\",status=\"200\"}");
    double inflight = sample(s, "luahost_http_requests_in_flight");
    ASSERT(inflight >= 0 && inflight <= NW);
    if (ok >= 0) {
      ASSERT(ok >= prev);
      prev = ok;
    }
    free(s);
  }
  for (int i = 0; i < NW; i++) pthread_join(t[i], NULL);
  char *s = render();
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/busy$\",status=\"200\"}") ==
         NW * PER * 9 / 10);
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/busy$\",status=\"503\"}") ==
         NW * PER / 10);
  ASSERT(sample(s, "luahost_http_request_duration_seconds_count{route=\"^/busy$\"}") == NW * PER);
  ASSERT(sample(s, "luahost_memory_limit_errors_total") == NW * PER / 1000);
  ASSERT(sample(s, "luahost_http_requests_in_flight") == 0);
  ASSERT_INT_EQ(count_lines_starting(s, "luahost_lua_heap_bytes{"), NW);
  free(s);
}

struct fake { const char *names[3]; double values[3]; int calls; };

static void fake_gauge(void *ud, struct metrics_sink *sink) {
  struct fake *f = ud;
  f->calls++;
  for (int i = 0; i < 3; i++) metrics_sample(sink, f->names[i], f->values[i]);
}

static void one_gauge(void *ud, struct metrics_sink *sink) {
  metrics_sample(sink, NULL, *(double *)ud);
}

TEST(gauges_and_escaping) {
  struct fake f = {{"plain", "quo\"te\\back", "new\nline"}, {1, 2.5, 1e20}, 0};
  double v = -3;
  ASSERT_INT_EQ(metrics_gauge_add("luahost_shared_dict_bytes", "Bytes of each dict.", "dict",
                                  fake_gauge, &f), 0);
  ASSERT_INT_EQ(metrics_gauge_add("luahost_test_level", "A help with \\ and\nnewline.", NULL,
                                  one_gauge, &v), 0);
  ASSERT_INT_EQ(metrics_gauge_add("9bad", "x", NULL, one_gauge, &v), -1);
  ASSERT_INT_EQ(metrics_gauge_add("bad-name", "x", NULL, one_gauge, &v), -1);
  ASSERT_INT_EQ(metrics_gauge_add("ok_name", "x", "bad label", one_gauge, &v), -1);
  ASSERT_INT_EQ(metrics_gauge_add("ok_name", "x", NULL, NULL, NULL), -1);
  metrics_route_id("^/we\"ird\\\n$");
  struct metrics_worker *w = metrics_worker_new(0);
  metrics_request_end(w, metrics_route_id("^/we\"ird\\\n$"), 200, MS);
  char *s = render();
  ASSERT_INT_EQ(f.calls, 1);
  ASSERT(sample(s, "luahost_shared_dict_bytes{dict=\"plain\"}") == 1);
  ASSERT(sample(s, "luahost_shared_dict_bytes{dict=\"quo\\\"te\\\\back\"}") == 2.5);
  ASSERT(sample(s, "luahost_shared_dict_bytes{dict=\"new\\nline\"}") == 1e20);
  ASSERT(sample(s, "luahost_test_level") == -3);
  ASSERT(strstr(s, "# HELP luahost_test_level A help with \\\\ and\\nnewline.\n"));
  ASSERT(strstr(s, "# TYPE luahost_test_level gauge\n"));
  ASSERT(sample(s, "luahost_http_requests_total{route=\"^/we\\\"ird\\\\\\n$\",status=\"200\"}")
         == 1);
  /* no raw newline inside any line: every line is a comment or a sample */
  for (const char *p = s; *p;) {
    const char *e = strchr(p, '\n');
    ASSERT(e);
    ASSERT(*p == '#' || !strncmp(p, "luahost_", 8));
    p = e + 1;
  }
  free(s);
}

/* Every family SPEC §13 names is in the exposition, with HELP and TYPE. */
TEST(spec_families_present) {
  static const char *const fam[][2] = {
    {"luahost_http_requests_total", "counter"},
    {"luahost_http_request_duration_seconds", "histogram"},
    {"luahost_http_requests_in_flight", "gauge"},
    {"luahost_handler_errors_total", "counter"},
    {"luahost_deadlines_exceeded_total", "counter"},
    {"luahost_memory_limit_errors_total", "counter"},
    {"luahost_lua_heap_bytes", "gauge"},
    {"luahost_background_threads_started_total", "counter"},
    {"luahost_background_threads_failed_total", "counter"},
    {"luahost_urlfetch_requests_total", "counter"},
    {"luahost_urlfetch_errors_total", "counter"},
    {"luahost_redis_commands_total", "counter"},
    {"luahost_redis_errors_total", "counter"},
    {"luahost_build_info", "gauge"},
  };
  char *s = render();
  for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
    char want[160];
    snprintf(want, sizeof want, "# TYPE %s %s\n", fam[i][0], fam[i][1]);
    if (!strstr(s, want)) FAIL_AT("no \"%s\" in:\n%s", want, s);
    snprintf(want, sizeof want, "# HELP %s ", fam[i][0]);
    if (!strstr(s, want)) FAIL_AT("no HELP for %s", fam[i][0]);
  }
  free(s);
}

/* The exposition, with labels that need escaping and every kind of
 * family, passes `promtool check metrics` (Debian package prometheus). */
TEST(promtool_check_metrics) {
  if (system("command -v promtool >/dev/null 2>&1") != 0)
    FAIL_AT("promtool not found: install the Debian package prometheus (tools/deps.sh)");
  struct fake f = {{"a", "b\"c", "d\\e\nf"}, {0, 1, 2}, 0};
  ASSERT_INT_EQ(metrics_gauge_add("luahost_shared_queue_length", "Items in each queue.",
                                  "queue", fake_gauge, &f), 0);
  struct metrics_worker *w0 = metrics_worker_new(0), *w1 = metrics_worker_new(1);
  int routes[] = {metrics_route_id("^/$"), metrics_route_id("^/api/(%d+)$"),
                  metrics_route_id("^/q\"uo\\te\n"), METRICS_ROUTE_NONE};
  for (int i = 0; i < 400; i++) {
    struct metrics_worker *w = i % 2 ? w0 : w1;
    metrics_request_begin(w);
    metrics_request_end(w, routes[i % 4], (int[]){200, 404, 500, 301, 431}[i % 5],
                        (uint64_t)(i * 37 % 12000) * MS);
  }
  metrics_request_begin(w0);
  metrics_set_heap(w0, 1 << 20);
  metrics_count(w1, METRIC_HANDLER_ERRORS);
  char *s = render();
  char path[] = "/tmp/luahost-metricsXXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  ASSERT_INT_EQ(write(fd, s, strlen(s)), strlen(s));
  close(fd);
  char cmd[256], outp[64];
  snprintf(outp, sizeof outp, "%s.out", path);
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s > %s 2>&1", path, outp);
  int rc = system(cmd);
  FILE *o = fopen(outp, "r");
  char msg[4096] = "";
  if (o) { msg[fread(msg, 1, sizeof msg - 1, o)] = '\0'; fclose(o); }
  unlink(path);
  unlink(outp);
  if (rc != 0) FAIL_AT("promtool check metrics: status %d: %s\n--- exposition:\n%s", rc, msg, s);
  ASSERT_STR_EQ(msg, "");
  free(s);
}

TEST_LIST(T(route_ids_are_interned), T(histogram_buckets), T(in_flight_and_counters),
          T(concurrent_workers_sum_exactly), T(gauges_and_escaping), T(spec_families_present),
          T(promtool_check_metrics));
