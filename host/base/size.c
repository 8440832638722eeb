/* size: "128m" -> 134217728. */
#include "base/size.h"

#include <ctype.h>
#include <stdint.h>

int size_parse(const char *s, size_t *out) {
  uint64_t v = 0, mult = 1;
  const char *p = s;
  if (!isdigit((unsigned char)*p)) return -1;
  while (isdigit((unsigned char)*p)) {
    if (v > (UINT64_MAX - 9) / 10) return -1;
    v = v * 10 + (uint64_t)(*p++ - '0');
  }
  switch (tolower((unsigned char)*p)) {
    case 'k': mult = 1ull << 10; p++; break;
    case 'm': mult = 1ull << 20; p++; break;
    case 'g': mult = 1ull << 30; p++; break;
    default: break;
  }
  if (tolower((unsigned char)*p) == 'b') p++;
  if (*p != '\0') return -1;
  if (v > SIZE_MAX / mult) return -1;
  *out = (size_t)(v * mult);
  return 0;
}
