/* fault: injected failures for tests (see fault.h). */
#include "base/fault.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per point: calls still to let through, then calls still to fail (a
 * negative count fails for ever).  Atomic: any thread may hit or arm. */
static struct {
  const char *name;
  atomic_long pass, fail;
} points[FAULT_NPOINTS] = {
  [FAULT_THREAD_CREATE] = {"thread_create", 0, 0},
  [FAULT_STATE_ALLOC] = {"state_alloc", 0, 0},
  [FAULT_ACCEPT] = {"accept", 0, 0},
  [FAULT_OUTCOME] = {"outcome", 0, 0},
};

int fault_hit(enum fault_point p) {
  if (atomic_load(&points[p].fail) == 0) return 0;
  if (atomic_fetch_sub(&points[p].pass, 1) > 0) return 0;
  atomic_store(&points[p].pass, 0);
  long f = atomic_load(&points[p].fail);
  while (f != 0) {
    if (f < 0 || atomic_compare_exchange_weak(&points[p].fail, &f, f - 1)) return 1;
  }
  return 0;
}

void fault_arm(enum fault_point p, long after, long count) {
  atomic_store(&points[p].fail, 0);
  atomic_store(&points[p].pass, after);
  atomic_store(&points[p].fail, count);
}

int fault_arm_spec(const char *spec, char *err, size_t errlen) {
  while (spec && *spec) {
    const char *eq = strchr(spec, '=');
    int p = -1;
    for (int i = 0; eq && i < FAULT_NPOINTS; i++)
      if (strlen(points[i].name) == (size_t)(eq - spec) &&
          strncmp(spec, points[i].name, (size_t)(eq - spec)) == 0) p = i;
    if (p < 0) {
      snprintf(err, errlen, "LUAHOST_FAULTS: unknown fault point in '%s' "
               "(expected thread_create, state_alloc, accept or outcome)", spec);
      return -1;
    }
    char *end;
    long after = strtol(eq + 1, &end, 10), count;
    if (*end != ':' || after < 0) goto bad;
    count = strtol(end + 1, &end, 10);
    if (*end != ',' && *end != '\0') goto bad;
    fault_arm((enum fault_point)p, after, count);
    spec = *end ? end + 1 : end;
    continue;
  bad:
    snprintf(err, errlen, "LUAHOST_FAULTS: expected name=after:count in '%s'", spec);
    return -1;
  }
  return 0;
}
