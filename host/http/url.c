/* url: %XX decoding and query splitting. */
#include "http/url.h"

#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

size_t url_decode(char *dst, const char *src, size_t n, int plus_is_space) {
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (src[i] == '%' && i + 2 < n && (hi = hexval(src[i + 1])) >= 0 &&
        (lo = hexval(src[i + 2])) >= 0) {
      dst[j++] = (char)(hi << 4 | lo);
      i += 2;
    } else if (plus_is_space && src[i] == '+') {
      dst[j++] = ' ';
    } else {
      dst[j++] = src[i];
    }
  }
  return j;
}

void url_query_each(const char *q, size_t n,
                    void (*fn)(void *, const char *, size_t, const char *, size_t),
                    void *ud) {
  size_t i = 0;
  while (i < n) {
    const char *part = q + i;
    const char *amp = memchr(part, '&', n - i);
    size_t len = amp ? (size_t)(amp - part) : n - i;
    if (len > 0) {
      const char *eq = memchr(part, '=', len);
      if (eq)
        fn(ud, part, (size_t)(eq - part), eq + 1, len - (size_t)(eq - part) - 1);
      else
        fn(ud, part, len, "", 0);
    }
    i += len + 1;
  }
}
