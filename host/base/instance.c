/* instance: IDs and the shutting-down flag. */
#include "base/instance.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Written once by instance_init (main thread) before other threads exist. */
static char id[33];
static uint32_t rid_prefix;
/* Shared by all threads: atomics, no lock. */
static atomic_uint_fast64_t rid_counter;
static atomic_int shutting_down;

void instance_init(void) {
  unsigned char r[20];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005u + 1)
      r[i] = (unsigned char)(x >> 56);
  }
  for (int i = 0; i < 16; i++) snprintf(id + 2 * i, 3, "%02x", r[i]);
  memcpy(&rid_prefix, r + 16, 4);
}

const char *instance_id(void) { return id; }

void instance_format_request_id(uint64_t n, char out[INSTANCE_RID_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  uint32_t p = rid_prefix;
  for (int i = 7; i >= 0; i--, p >>= 4) out[i] = hex[p & 15];
  out[8] = '-';
  for (int i = INSTANCE_RID_LEN - 1; i >= 9; i--, n >>= 4) out[i] = hex[n & 15];
  out[INSTANCE_RID_LEN] = '\0';
}

uint64_t instance_request_id(char out[INSTANCE_RID_LEN + 1]) {
  uint64_t n = atomic_fetch_add_explicit(&rid_counter, 1, memory_order_relaxed) + 1;
  instance_format_request_id(n, out);
  return n;
}

int instance_shutting_down(void) {
  return atomic_load_explicit(&shutting_down, memory_order_acquire);
}

void instance_set_shutting_down(void) {
  atomic_store_explicit(&shutting_down, 1, memory_order_release);
}
