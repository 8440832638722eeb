/* spawn_raw.c — the baseline for bench/spawn: what starting a Lua "background
 * thread" costs when done the plain way, with no pooling: pthread_create a
 * thread that builds a fresh lua_State (luaL_newstate + luaL_openlibs),
 * loads a tiny chunk and calls it, then closes the state.
 *
 *   spawn_raw [--lat N] [--warmup N] [--jobs N] [--idle N] [--inflight K,K...]
 *
 * Prints `key value` lines (bench/spawn parses them):
 *   raw_lat_n, raw_lat_p50_us, raw_lat_p90_us, raw_lat_p99_us, raw_lat_max_us
 *       latency, one spawn at a time (create, then join): the creator reads
 *       CLOCK_MONOTONIC just before pthread_create; the chunk's first
 *       instruction calls now() (a C function, CLOCK_MONOTONIC in seconds as
 *       a double); latency = now() - creator's time.
 *   raw_pre_lat_p50_us, raw_pre_lat_p99_us
 *       the floor of a pre-built design, for reference: a thread that
 *       already holds its fresh state sleeps on a semaphore; the creator
 *       reads the clock and posts; latency as above.  (Not a pool: each
 *       thread still runs one chunk.)
 *   raw_wake_same_p50_us, raw_wake_cross_p50_us (and _p99_us)
 *       what waking a sleeping thread costs on this machine, for reference:
 *       a thread sleeps on a semaphore; the creator reads the clock, posts
 *       and waits; the woken thread reads the clock.  "same": both pinned
 *       to CPU 0 (the post hands the CPU over when the creator waits);
 *       "cross": the sleeper pinned to CPU 1 (an IPI, and on a virtual
 *       machine the waking of an idle vCPU).  Absent on one CPU.
 *   raw_tpK_jobs, raw_tpK_s, raw_tpK_jobs_s, raw_tpK_us_per_job
 *       throughput with K spawns in flight (a counting semaphore: the creator
 *       takes a slot before pthread_create, the detached thread gives it back
 *       after lua_close), trivial chunk `return 1`.
 *   raw_idle_n, raw_idle_rss_before_kib, raw_idle_rss_after_kib,
 *   raw_idle_kib_per_thread
 *       RSS cost of N threads each holding a fresh state, parked in park()
 *       (a C function waiting on a condition variable) called by the chunk.
 *
 * Build: cc -O2 -o spawn_raw spawn_raw.c $(pkg-config --cflags --libs lua5.4) -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int err) {
  fprintf(stderr, "spawn_raw: %s failed: %s\n", what, strerror(err));
  exit(1);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, mono());
  return 1;
}

/* ---- idle threads: park() blocks until released ---- */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t parked_cv = PTHREAD_COND_INITIALIZER;
static int parked, released;

static int l_park(lua_State *L) {
  (void)L;
  pthread_mutex_lock(&park_mu);
  parked++;
  pthread_cond_signal(&parked_cv);
  while (!released) pthread_cond_wait(&park_cv, &park_mu);
  pthread_mutex_unlock(&park_mu);
  return 0;
}

/* One job: fresh state, load the chunk, call it, close. */
struct job {
  double t0;       /* creator's time just before pthread_create */
  double lat;      /* out: first-instruction time - t0 (latency mode) */
  const char *chunk;
  int failed;
};

static sem_t slots; /* throughput mode */

static void run_chunk(struct job *j) {
  lua_State *L = luaL_newstate();
  if (!L) { j->failed = 1; return; }
  luaL_openlibs(L);
  lua_register(L, "now", l_now);
  lua_register(L, "park", l_park);
  if (luaL_loadstring(L, j->chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "spawn_raw: chunk failed: %s\n", lua_tostring(L, -1));
    j->failed = 1;
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    j->lat = lua_tonumber(L, -1) - j->t0;
  }
  lua_close(L);
}

static void *lat_main(void *arg) {
  run_chunk(arg);
  return NULL;
}

static void *tp_main(void *arg) {
  struct job j = {0};
  j.chunk = arg;
  run_chunk(&j);
  if (j.failed) exit(1);
  sem_post(&slots);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* nearest rank: the smallest value with at least q of the sample at or below it */
static double pct(const double *v, int n, double q) {
  int k = (int)(q * n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return v[k - 1];
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Prints the sample's n, p50, p90, p99 and max as `<key>_...` lines; frees v. */
/* Room for n latency samples, freed by report_latency. */
static double *new_samples(int n) {
  double *v = malloc(sizeof *v * (size_t)n);
  if (!v) die("malloc", ENOMEM);
  return v;
}

static void report_latency(const char *key, double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  printf("%s_n %d\n", key, n);
  printf("%s_p50_us %.2f\n", key, pct(v, n, 0.50));
  printf("%s_p90_us %.2f\n", key, pct(v, n, 0.90));
  printf("%s_p99_us %.2f\n", key, pct(v, n, 0.99));
  printf("%s_max_us %.2f\n", key, v[n - 1]);
  free(v);
}

static const char LAT_CHUNK[] = "local t1 = now() return t1";
static const char TP_CHUNK[] = "return 1";
static const char IDLE_CHUNK[] = "park() return 0";

static void bench_latency(int n, int warmup) {
  double *v = new_samples(n);
  for (int i = -warmup; i < n; i++) {
    struct job j = {0};
    pthread_t th;
    j.chunk = LAT_CHUNK;
    j.t0 = mono();
    int rc = pthread_create(&th, NULL, lat_main, &j);
    if (rc) die("pthread_create", rc);
    pthread_join(th, NULL);
    if (j.failed) exit(1);
    if (i >= 0) v[i] = j.lat * 1e6;
  }
  report_latency("raw_lat", v, n);
}

/* A pre-built thread: its state is made before the creator's clock
 * starts; it sleeps on go until posted. */
struct pre { sem_t ready, go; struct job j; };

static void *pre_main(void *arg) {
  struct pre *p = arg;
  lua_State *L = luaL_newstate();
  if (!L) { p->j.failed = 1; sem_post(&p->ready); return NULL; }
  luaL_openlibs(L);
  lua_register(L, "now", l_now);
  sem_post(&p->ready);
  while (sem_wait(&p->go) != 0) {}
  if (luaL_loadstring(L, LAT_CHUNK) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) p->j.failed = 1;
  else p->j.lat = lua_tonumber(L, -1) - p->j.t0;
  lua_close(L);
  return NULL;
}

static void bench_prebuilt(int n, int warmup) {
  double *v = new_samples(n);
  for (int i = -warmup; i < n; i++) {
    struct pre p = {0};
    pthread_t th;
    sem_init(&p.ready, 0, 0);
    sem_init(&p.go, 0, 0);
    int rc = pthread_create(&th, NULL, pre_main, &p);
    if (rc) die("pthread_create", rc);
    while (sem_wait(&p.ready) != 0) {}
    usleep(200);   /* let it fall asleep, as a spare waiting for work does */
    p.j.t0 = mono();
    sem_post(&p.go);
    pthread_join(th, NULL);
    if (p.j.failed) exit(1);
    if (i >= 0) v[i] = p.j.lat * 1e6;
    sem_destroy(&p.ready);
    sem_destroy(&p.go);
  }
  report_latency("raw_pre_lat", v, n);
}

/* ---- the cost of a wake-up ---- */
struct waker { sem_t go, done; double t1; int cpu; };

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  if (rc) die("pthread_setaffinity_np", rc);
}

static void *sleeper_main(void *arg) {
  struct waker *w = arg;
  pin(w->cpu);
  for (;;) {
    while (sem_wait(&w->go) != 0) {}
    if (w->cpu < 0) return NULL;
    w->t1 = mono();
    sem_post(&w->done);
  }
}

static void bench_wake(const char *key, int sleeper_cpu, int n, int warmup) {
  double *v = new_samples(n);
  struct waker w = {.cpu = sleeper_cpu};
  sem_init(&w.go, 0, 0);
  sem_init(&w.done, 0, 0);
  pthread_t th;
  int rc = pthread_create(&th, NULL, sleeper_main, &w);
  if (rc) die("pthread_create", rc);
  for (int i = -warmup; i < n; i++) {
    usleep(200);   /* the sleeper sleeps, its CPU idles */
    double t0 = mono();
    sem_post(&w.go);
    while (sem_wait(&w.done) != 0) {}
    if (i >= 0) v[i] = (w.t1 - t0) * 1e6;
  }
  w.cpu = -1;
  sem_post(&w.go);
  pthread_join(th, NULL);
  sem_destroy(&w.go);
  sem_destroy(&w.done);
  char name[64];
  snprintf(name, sizeof name, "raw_wake_%s", key);
  report_latency(name, v, n);
}

static void bench_wakes(int n, int warmup) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return;
  pin(0);
  bench_wake("same", 0, n, warmup);
  bench_wake("cross", 1, n, warmup);
  cpu_set_t all;
  CPU_ZERO(&all);
  for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++) CPU_SET(c, &all);
  pthread_setaffinity_np(pthread_self(), sizeof all, &all);
}

static void bench_throughput(int jobs, int k) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (sem_init(&slots, 0, (unsigned)k)) die("sem_init", errno);
  double t0 = mono();
  for (int i = 0; i < jobs; i++) {
    pthread_t th;
    while (sem_wait(&slots) && errno == EINTR) {}
    int rc = pthread_create(&th, &attr, tp_main, (void *)TP_CHUNK);
    if (rc) die("pthread_create", rc);
  }
  for (int i = 0; i < k; i++) while (sem_wait(&slots) && errno == EINTR) {}
  double s = mono() - t0;
  sem_destroy(&slots);
  pthread_attr_destroy(&attr);
  printf("raw_tp%d_jobs %d\n", k, jobs);
  printf("raw_tp%d_s %.6f\n", k, s);
  printf("raw_tp%d_jobs_s %.1f\n", k, jobs / s);
  printf("raw_tp%d_us_per_job %.2f\n", k, s * 1e6 / jobs);
}

static void bench_idle(int n) {
  pthread_t *th = malloc(sizeof *th * (size_t)n);
  struct job *jobs = calloc((size_t)n, sizeof *jobs);
  if (!th || !jobs) die("malloc", ENOMEM);
  long before = rss_kib();
  for (int i = 0; i < n; i++) {
    jobs[i].chunk = IDLE_CHUNK;
    int rc = pthread_create(&th[i], NULL, lat_main, &jobs[i]);
    if (rc) die("pthread_create (idle)", rc);
  }
  pthread_mutex_lock(&park_mu);
  while (parked < n) pthread_cond_wait(&parked_cv, &park_mu);
  pthread_mutex_unlock(&park_mu);
  long after = rss_kib();
  pthread_mutex_lock(&park_mu);
  released = 1;
  pthread_cond_broadcast(&park_cv);
  pthread_mutex_unlock(&park_mu);
  for (int i = 0; i < n; i++) {
    pthread_join(th[i], NULL);
    if (jobs[i].failed) exit(1);
  }
  printf("raw_idle_n %d\n", n);
  printf("raw_idle_rss_before_kib %ld\n", before);
  printf("raw_idle_rss_after_kib %ld\n", after);
  printf("raw_idle_kib_per_thread %.2f\n", (double)(after - before) / n);
  free(th);
  free(jobs);
}

static int posint(const char *opt, const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1 || v > 10000000) {
    fprintf(stderr, "spawn_raw: %s expects a positive integer, got '%s'\n", opt, s);
    exit(2);
  }
  return (int)v;
}

int main(int argc, char **argv) {
  int lat = 2000, warmup = 50, jobs = 5000, idle = 1000;
  char inflight[256] = "2,64";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) { fprintf(stderr, "spawn_raw: %s needs a value\n", a); return 2; }
    if (!strcmp(a, "--lat")) lat = posint(a, argv[++i]);
    else if (!strcmp(a, "--warmup")) warmup = posint(a, argv[++i]);
    else if (!strcmp(a, "--jobs")) jobs = posint(a, argv[++i]);
    else if (!strcmp(a, "--idle")) idle = posint(a, argv[++i]);
    else if (!strcmp(a, "--inflight")) snprintf(inflight, sizeof inflight, "%s", argv[++i]);
    else { fprintf(stderr, "spawn_raw: unknown option '%s'\n", a); return 2; }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  bench_latency(lat, warmup);
  bench_prebuilt(lat, warmup);
  bench_wakes(lat < 1000 ? lat : 1000, warmup);
  for (char *save = NULL, *tok = strtok_r(inflight, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    bench_throughput(jobs, posint("--inflight", tok));
  bench_idle(idle);
  return 0;
}
