/* faults: injected failures (a -DLUAHOST_FAULTS=ON build) on the paths
 * that make states and threads.  Each must end in a clean error, release
 * what it reserved and leak nothing (the ASan build runs this with LSan). */
#include <unistd.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "base/fault.h"
#include "runner.h"
#include "store/queue.h"
#include "threads.h"
#include "vm/call.h"
#include "vm/state.h"

static lua_State *try_state(char *err, size_t errlen) {
  struct vm_opts o = {VM_BACKEND, VM_EXIT_REFUSE, 0, {NULL, NULL, NULL}, NULL};
  return vm_new(&o, err, errlen);
}

/* The encoded target `function() return 42 end`. */
static struct value target(void) {
  char err[256];
  struct value v = {0};
  lua_State *L = luaL_newstate();
  if (luaL_loadstring(L, "return 42") != LUA_OK) FAIL_AT("load");
  if (value_encode(L, -1, "target", &v, err, sizeof err) < 0) FAIL_AT("encode: %s", err);
  lua_close(L);
  return v;
}

static int64_t start(char *err, size_t errlen) {
  struct value t = target(), none1 = {0}, none2 = {0};
  return threads_start(&t, &none1, &none2, err, errlen);
}

/* The thread's outcome is {ok = true, n = 1, 42}. */
static void expect_42(int64_t id) {
  struct queue *q = threads_outcome(id);
  ASSERT(q != NULL);
  struct value out = {0};
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 10000000000u), 0);
  queue_release(q);
  threads_forget(id);
  lua_State *L = luaL_newstate();
  ASSERT_INT_EQ(value_decode(L, &out, 0), 0);
  lua_getfield(L, -1, "ok");
  ASSERT(lua_toboolean(L, -1));
  lua_rawgeti(L, -2, 1);
  ASSERT_INT_EQ(lua_tointeger(L, -1), 42);
  lua_close(L);
  value_free(&out);
}

static void init_threads(int max, int spares) {
  struct threads_config c = {max, 0, NULL, NULL, spares};
  threads_init(&c);
}

TEST(state_build_fails_cleanly_at_every_allocation) {
  char err[512];
  int failures = 0;
  for (long n = 0; n < 20000; n++) {
    fault_arm(FAULT_STATE_ALLOC, n, 1);
    lua_State *L = try_state(err, sizeof err);
    fault_arm(FAULT_STATE_ALLOC, 0, 0);
    if (L) {   /* every allocation of the build has now failed once */
      ASSERT(failures > 20);
      printf("  a state build failed cleanly at each of its %d allocations\n", failures);
      ASSERT_INT_EQ(luaL_dostring(L, "return ('ok'):upper()"), LUA_OK);
      ASSERT_STR_EQ(lua_tostring(L, -1), "OK");
      vm_close(L);
      return;
    }
    failures++;
    if (strncmp(err, "cannot build a Lua state: ", 26) != 0) FAIL_AT("n=%ld: %s", n, err);
  }
  FAIL_AT("a state was never built");
}

TEST(thread_create_failure_is_a_clean_error_and_frees_the_slot) {
  char err[512];
  init_threads(1, 0);
  fault_arm(FAULT_THREAD_CREATE, 0, 1);
  ASSERT_INT_EQ(start(err, sizeof err), LH_ESYSTEM);
  if (!strstr(err, "cannot create a thread: Resource temporarily unavailable"))
    FAIL_AT("got: %s", err);
  ASSERT_INT_EQ(threads_active(), 0);
  int64_t id = start(err, sizeof err);   /* the one slot is free again */
  if (id <= 0) FAIL_AT("start after the fault: %s", err);
  expect_42(id);
  ASSERT_INT_EQ(threads_wait_idle(10000000000u), 0);
  threads_free_all();
}

TEST(state_failure_in_a_new_thread_is_a_clean_error_and_frees_the_slot) {
  char err[512];
  int failures = 0;
  init_threads(1, 0);
  for (long n = 0; n < 20000; n++) {
    fault_arm(FAULT_STATE_ALLOC, n, 1);
    int64_t id = start(err, sizeof err);
    fault_arm(FAULT_STATE_ALLOC, 0, 0);
    if (id > 0) {
      ASSERT(failures > 3);
      printf("  %d thread starts failed cleanly building their state\n", failures);
      expect_42(id);
      ASSERT_INT_EQ(threads_wait_idle(10000000000u), 0);
      threads_free_all();
      return;
    }
    failures++;
    ASSERT_INT_EQ(id, LH_ESYSTEM);
    if (strncmp(err, "cannot build a Lua state: ", 26) != 0) FAIL_AT("n=%ld: %s", n, err);
    ASSERT_INT_EQ(threads_active(), 0);
  }
  FAIL_AT("a thread never started");
}

TEST(spares_that_cannot_be_made_leave_starts_working) {
  char err[512];
  fault_arm(FAULT_STATE_ALLOC, 0, -1);   /* no spare can build its state */
  init_threads(2, 4);
  usleep(50000);
  ASSERT_INT_EQ(start(err, sizeof err), LH_ESYSTEM);
  fault_arm(FAULT_STATE_ALLOC, 0, 0);
  for (int i = 0; i < 8; i++) {   /* spares or new threads, each runs */
    int64_t id = start(err, sizeof err);
    if (id <= 0) FAIL_AT("start %d: %s", i, err);
    expect_42(id);
  }
  ASSERT_INT_EQ(threads_wait_idle(10000000000u), 0);
  threads_free_all();
}

TEST(an_outcome_that_cannot_be_copied_does_not_leave_joiners_waiting) {
  char err[512];
  init_threads(2, 0);
  fault_arm(FAULT_OUTCOME, 0, 1);
  int64_t id = start(err, sizeof err);
  if (id <= 0) FAIL_AT("start: %s", err);
  struct queue *q = threads_outcome(id);
  ASSERT(q != NULL);
  struct value out = {0};
  uint64_t t0 = clock_now_ns();
  ASSERT_INT_EQ(queue_pop_wait(q, &out, 10000000000u), LH_ECLOSED);   /* not the timeout */
  ASSERT(clock_now_ns() - t0 < 5000000000u);
  queue_release(q);
  fault_arm(FAULT_OUTCOME, 0, 0);
  expect_42(start(err, sizeof err));   /* the next thread's outcome arrives */
  ASSERT_INT_EQ(threads_wait_idle(10000000000u), 0);
  threads_free_all();
}

TEST(fault_spec_is_checked) {
  char err[256];
  ASSERT_INT_EQ(fault_arm_spec("accept=2:3,thread_create=0:-1", err, sizeof err), 0);
  ASSERT_INT_EQ(fault_hit(FAULT_ACCEPT), 0);
  ASSERT_INT_EQ(fault_hit(FAULT_ACCEPT), 0);
  for (int i = 0; i < 3; i++) ASSERT_INT_EQ(fault_hit(FAULT_ACCEPT), 1);
  ASSERT_INT_EQ(fault_hit(FAULT_ACCEPT), 0);
  for (int i = 0; i < 100; i++) ASSERT_INT_EQ(fault_hit(FAULT_THREAD_CREATE), 1);
  ASSERT_INT_EQ(fault_arm_spec("disk=1:1", err, sizeof err), -1);
  ASSERT(strstr(err, "unknown fault point in 'disk=1:1'"));
  ASSERT_INT_EQ(fault_arm_spec("accept=x", err, sizeof err), -1);
  ASSERT(strstr(err, "expected name=after:count"));
  fault_arm(FAULT_THREAD_CREATE, 0, 0);
}

TEST_LIST(T(state_build_fails_cleanly_at_every_allocation),
          T(thread_create_failure_is_a_clean_error_and_frees_the_slot),
          T(state_failure_in_a_new_thread_is_a_clean_error_and_frees_the_slot),
          T(spares_that_cannot_be_made_leave_starts_working),
          T(an_outcome_that_cannot_be_copied_does_not_leave_joiners_waiting),
          T(fault_spec_is_checked));
