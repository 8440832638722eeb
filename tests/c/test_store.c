/* store: dicts and queues without Lua, including from several threads. */
#include <pthread.h>
#include <unistd.h>

#include "base/clock.h"
#include "runner.h"
#include "store/dict.h"
#include "store/queue.h"

static struct dict_val ival(int64_t i) { struct dict_val v = {DV_INT, 0, i, 0, NULL, 0}; return v; }
static struct dict_val sval(const char *s) {
  struct dict_val v = {DV_STR, 0, 0, 0, s, strlen(s)};
  return v;
}

TEST(dict_basics) {
  struct dict *d = dict_open("basics", 6);
  struct dict_buf buf = {0};
  struct dict_val v = sval("value"), out;
  ASSERT_INT_EQ(dict_set(d, "k", 1, &v, 0), LH_OK);
  ASSERT_INT_EQ(dict_get(d, "k", 1, &out, &buf), LH_OK);
  ASSERT_INT_EQ(out.type, DV_STR);
  ASSERT_MEM_EQ(out.s, out.len, "value");
  ASSERT_INT_EQ(dict_add(d, "k", 1, &v, 0), LH_EEXISTS);
  ASSERT_INT_EQ(dict_delete(d, "k", 1), LH_OK);
  ASSERT_INT_EQ(dict_get(d, "k", 1, &out, &buf), LH_OK);
  ASSERT_INT_EQ(out.type, DV_NIL);
  struct dict_val one = ival(1), ten = ival(10);
  ASSERT_INT_EQ(dict_incr(d, "n", 1, &one, NULL, &out), LH_ENOTFOUND);
  ASSERT_INT_EQ(dict_incr(d, "n", 1, &one, &ten, &out), LH_OK);
  ASSERT_INT_EQ(out.i, 11);
  ASSERT_INT_EQ(dict_incr(d, "n", 1, &one, NULL, &out), LH_OK);
  ASSERT_INT_EQ(out.i, 12);
  free(buf.p);
  dict_free_all();
}

TEST(dict_capacity_never_evicts) {
  ASSERT_INT_EQ(dict_configure("cap", 4096), 0);
  struct dict *d = dict_open("cap", 3);
  char key[32];
  struct dict_val v = sval("0123456789012345678901234567890123456789");
  int stored = 0;
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "key%d", i);
    int rc = dict_set(d, key, strlen(key), &v, 0);
    if (rc != LH_OK) { ASSERT_INT_EQ(rc, LH_ENOMEM); break; }
    stored++;
  }
  ASSERT(stored > 10 && stored < 1000);
  ASSERT(dict_used(d) <= 4096);
  struct dict_buf buf = {0};
  for (int i = 0; i < stored; i++) {
    struct dict_val out;
    snprintf(key, sizeof key, "key%d", i);
    ASSERT_INT_EQ(dict_get(d, key, strlen(key), &out, &buf), LH_OK);
    ASSERT_INT_EQ(out.type, DV_STR);
  }
  free(buf.p);
  dict_free_all();
}

/* A full dict whose entries have expired takes new entries (dict.h:
 * "expired entries are reclaimed first"), as many as it held, without a
 * read in between to reclaim them, and the new values read back. */
TEST(dict_expired_entries_make_room) {
  ASSERT_INT_EQ(dict_configure("ttl", 4096), 0);
  struct dict *d = dict_open("ttl", 3);
  char key[32];
  struct dict_val v = sval("0123456789012345678901234567890123456789"), out;
  uint64_t t0 = clock_now_ns();
  int stored = 0;
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "old%d", i);
    int rc = dict_set(d, key, strlen(key), &v, 500);   /* 500 ms */
    if (rc != LH_OK) { ASSERT_INT_EQ(rc, LH_ENOMEM); break; }
    stored++;
  }
  ASSERT(stored > 10 && stored < 1000);
  size_t full = dict_used(d);
  uint64_t t1 = clock_now_ns();   /* the last one was set before this */
  /* none expired while filling (else `stored` overcounts what fits) */
  ASSERT(t1 - t0 < 400000000u);
  /* still full while they live: a permanent entry does not fit */
  ASSERT_INT_EQ(dict_set(d, "new0", 4, &v, 0), LH_ENOMEM);
  while (clock_now_ns() - t1 < 520000000u) usleep(1000);   /* every TTL passes */
  struct dict_buf buf = {0};
  for (int i = 0; i < stored; i++) {
    snprintf(key, sizeof key, "new%d", i);
    ASSERT_INT_EQ(dict_set(d, key, strlen(key), &v, 0), LH_OK);
  }
  ASSERT(dict_used(d) <= full);
  for (int i = 0; i < stored; i++) {
    snprintf(key, sizeof key, "new%d", i);
    ASSERT_INT_EQ(dict_get(d, key, strlen(key), &out, &buf), LH_OK);
    ASSERT_INT_EQ(out.type, DV_STR);
    ASSERT_MEM_EQ(out.s, out.len, "0123456789012345678901234567890123456789");
    snprintf(key, sizeof key, "old%d", i);
    ASSERT_INT_EQ(dict_get(d, key, strlen(key), &out, &buf), LH_OK);
    ASSERT_INT_EQ(out.type, DV_NIL);
  }
  free(buf.p);
  dict_free_all();
}

/* SPEC §7: an integer incr that would leave int64 is refused and leaves
 * the value (and a missing key) as it was; it never wraps. */
TEST(dict_incr_overflow_refused) {
  struct dict *d = dict_open("overflow", 8);
  struct dict_buf buf = {0};
  struct dict_val max = ival(INT64_MAX), min = ival(INT64_MIN), one = ival(1), mone = ival(-1);
  struct dict_val out;
  ASSERT_INT_EQ(dict_set(d, "hi", 2, &max, 0), LH_OK);
  ASSERT_INT_EQ(dict_incr(d, "hi", 2, &one, NULL, &out), LH_EOVERFLOW);
  ASSERT_INT_EQ(dict_get(d, "hi", 2, &out, &buf), LH_OK);
  ASSERT_INT_EQ(out.type, DV_INT);
  ASSERT(out.i == INT64_MAX);
  ASSERT_INT_EQ(dict_incr(d, "hi", 2, &mone, NULL, &out), LH_OK);   /* still usable */
  ASSERT(out.i == INT64_MAX - 1);
  ASSERT_INT_EQ(dict_set(d, "lo", 2, &min, 0), LH_OK);
  ASSERT_INT_EQ(dict_incr(d, "lo", 2, &mone, NULL, &out), LH_EOVERFLOW);
  ASSERT_INT_EQ(dict_get(d, "lo", 2, &out, &buf), LH_OK);
  ASSERT(out.i == INT64_MIN);
  /* a missing key whose init + n overflows is not created */
  ASSERT_INT_EQ(dict_incr(d, "new", 3, &one, &max, &out), LH_EOVERFLOW);
  ASSERT_INT_EQ(dict_get(d, "new", 3, &out, &buf), LH_OK);
  ASSERT_INT_EQ(out.type, DV_NIL);
  /* floats do not overflow into an error: they go to inf as floats do */
  struct dict_val big = {DV_FLOAT, 0, 0, 1e308, NULL, 0};
  ASSERT_INT_EQ(dict_set(d, "f", 1, &big, 0), LH_OK);
  ASSERT_INT_EQ(dict_incr(d, "f", 1, &big, NULL, &out), LH_OK);
  ASSERT_INT_EQ(out.type, DV_FLOAT);
  free(buf.p);
  dict_free_all();
}

struct incr_arg { struct dict *d; int n; };
static void *incr_thread(void *p) {
  struct incr_arg *a = p;
  struct dict_val one = ival(1), zero = ival(0), out;
  for (int i = 0; i < a->n; i++) dict_incr(a->d, "hits", 4, &one, &zero, &out);
  return NULL;
}

TEST(dict_incr_exact_under_threads) {
  struct dict *d = dict_open("threads", 7);
  pthread_t th[4];
  struct incr_arg a = {d, 25000};
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, incr_thread, &a);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  struct dict_val out;
  struct dict_buf buf = {0};
  dict_get(d, "hits", 4, &out, &buf);
  ASSERT_INT_EQ(out.i, 100000);
  dict_free_all();
}

static struct value bytes(const char *s) {
  struct value v = {0};
  v.len = v.cap = strlen(s);
  v.data = malloc(v.cap + 1);
  memcpy(v.data, s, v.len + 1);
  return v;
}

TEST(queue_fifo_capacity) {
  ASSERT_INT_EQ(queue_configure("two", 2), 0);
  struct queue *q = queue_open("two", 3);
  struct value a = bytes("a"), b = bytes("b"), c = bytes("c"), out;
  ASSERT_INT_EQ(queue_push(q, &a), LH_OK);
  ASSERT_INT_EQ(queue_push(q, &b), LH_OK);
  ASSERT_INT_EQ(queue_push(q, &c), LH_EFULL);
  ASSERT_INT_EQ(queue_len(q), 2);
  ASSERT_INT_EQ(queue_pop(q, &out), LH_OK);
  ASSERT_MEM_EQ(out.data, out.len, "a");
  value_free(&out);
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_push_wait(q, &c, 50000000u), LH_OK);
  ASSERT(clock_now_ns() - t0 < 50000000u);   /* there was room: no wait */
  struct value d = bytes("d");
  t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_push_wait(q, &d, 50000000u), LH_ETIMEDOUT);
  ASSERT(clock_now_ns() - t0 >= 45000000u);
  value_free(&d);
  ASSERT_INT_EQ(queue_pop(q, &out), LH_OK);
  ASSERT_MEM_EQ(out.data, out.len, "b");
  value_free(&out);
  ASSERT_INT_EQ(queue_pop(q, &out), LH_OK);
  ASSERT_MEM_EQ(out.data, out.len, "c");
  value_free(&out);
  t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 30000000u), LH_ETIMEDOUT);
  ASSERT(clock_now_ns() - t0 >= 25000000u);
  queue_free_all();
}

struct pc { struct queue *q; int n; long sum; };
static void *consumer(void *p) {
  struct pc *a = p;
  for (int i = 0; i < a->n; i++) {
    struct value v;
    if (queue_pop_wait(a->q, &v, UINT64_MAX) != LH_OK) return NULL;
    a->sum += atol(v.data);
    value_free(&v);
  }
  return NULL;
}

TEST(queue_handoff_between_threads) {
  ASSERT_INT_EQ(queue_configure("pc", 8), 0);
  struct queue *q = queue_open("pc", 2);
  struct pc a = {q, 5000, 0}, b = {q, 5000, 0};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, consumer, &a);
  pthread_create(&t2, NULL, consumer, &b);
  long want = 0;
  for (int i = 1; i <= 10000; i++) {
    char s[16];
    snprintf(s, sizeof s, "%d", i);
    struct value v = bytes(s);
    ASSERT_INT_EQ(queue_push_wait(q, &v, UINT64_MAX), LH_OK);
    want += i;
  }
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  ASSERT_INT_EQ(a.sum + b.sum, want);
  ASSERT_INT_EQ(queue_len(q), 0);
  queue_free_all();
}

static void *shutdown_later(void *p) {
  usleep(50000);
  queue_shutdown_all();
  return NULL;
}

TEST(queue_shutdown_wakes_waiters) {
  struct queue *q = queue_open("sd", 2);
  pthread_t t;
  pthread_create(&t, NULL, shutdown_later, NULL);
  struct value out;
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 5000000000u), LH_ESHUTDOWN);
  ASSERT(clock_now_ns() - t0 < 2000000000u);
  pthread_join(t, NULL);
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 5000000000u), LH_ESHUTDOWN);   /* at once */
  ASSERT_INT_EQ(queue_pop(q, &out), LH_ESHUTDOWN);   /* and without waiting */
  /* a push with room, waiting allowed or not, still goes in: every path
   * gives the same answer (a request's push said "shutting down") */
  struct value late = bytes("late");
  ASSERT_INT_EQ(queue_push_wait(q, &late, 1000000000u), LH_OK);
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 0), LH_OK);
  ASSERT_MEM_EQ(out.data, out.len, "late");
  value_free(&out);
  queue_free_all();
}

static void *close_later(void *p) {
  usleep(50000);
  queue_close(p, LH_ECLOSED);
  return NULL;
}

TEST(queue_close_ends_waits_and_keeps_items) {
  struct queue *q = queue_new_private(1);
  pthread_t t;
  pthread_create(&t, NULL, close_later, q);
  struct value out, v = bytes("kept");
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 5000000000u), LH_ECLOSED);
  ASSERT(clock_now_ns() - t0 < 2000000000u);
  pthread_join(t, NULL);
  ASSERT_INT_EQ(queue_push(q, &v), LH_OK);   /* the owner may still put one in */
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 5000000000u), LH_OK);
  ASSERT_MEM_EQ(out.data, out.len, "kept");
  value_free(&out);
  t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 5000000000u), LH_ECLOSED);   /* at once */
  ASSERT(clock_now_ns() - t0 < 2000000000u);
  ASSERT_INT_EQ(queue_pop(q, &out), LH_ECLOSED);
  v = bytes("more");
  ASSERT_INT_EQ(queue_push(q, &v), LH_OK);
  struct value over = bytes("over");   /* full: a waiting push ends as closed */
  ASSERT_INT_EQ(queue_push_wait(q, &over, 5000000000u), LH_ECLOSED);
  value_free(&over);
  queue_release(q);
}

TEST_LIST(T(dict_basics), T(dict_incr_overflow_refused), T(dict_capacity_never_evicts), T(dict_expired_entries_make_room),
          T(dict_incr_exact_under_threads),
          T(queue_fifo_capacity), T(queue_handoff_between_threads),
          T(queue_shutdown_wakes_waiters), T(queue_close_ends_waits_and_keeps_items));
