/* sync: pthread helpers. */
#include "base/sync.h"

#include <errno.h>

#include "base/fault.h"

void sync_cond_init(pthread_cond_t *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
}

struct timespec sync_deadline(uint64_t ns) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t n = (uint64_t)ts.tv_nsec + ns % 1000000000u;
  ts.tv_sec += (time_t)(ns / 1000000000u + n / 1000000000u);
  ts.tv_nsec = (long)(n % 1000000000u);
  return ts;
}

int sync_spawn_detached(void *(*fn)(void *), void *arg) {
  if (fault_hit(FAULT_THREAD_CREATE)) return EAGAIN;
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&th, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  return rc;
}
