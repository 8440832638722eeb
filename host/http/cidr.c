/* cidr: parsing and matching address ranges. */
#include "http/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Keeps the first bits of a (len bytes), clears the rest. */
static void mask(unsigned char *a, int len, int bits) {
  for (int i = 0; i < len; i++) {
    int keep = bits - i * 8;
    if (keep >= 8) continue;
    a[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
  }
}

/* The address in text as (family, 4 or 16 bytes); an IPv4-mapped IPv6
 * address becomes IPv4.  0, or CIDR_EINVAL. */
static int parse_addr(const char *text, int *family, unsigned char out[16]) {
  if (inet_pton(AF_INET, text, out) == 1) { *family = AF_INET; return 0; }
  if (inet_pton(AF_INET6, text, out) == 1) {
    if (memcmp(out, v4_mapped, 12) == 0) {
      memmove(out, out + 12, 4);
      *family = AF_INET;
    } else {
      *family = AF_INET6;
    }
    return 0;
  }
  return CIDR_EINVAL;
}

int cidr_parse(struct cidr *c, const char *text) {
  char addr[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(text, '/');
  size_t alen = slash ? (size_t)(slash - text) : strlen(text);
  if (alen == 0 || alen >= sizeof addr) return CIDR_EINVAL;
  memcpy(addr, text, alen);
  addr[alen] = '\0';
  memset(c, 0, sizeof *c);
  /* a range is written in its own family: ::ffff:10.0.0.0/104 stays IPv6 */
  if (inet_pton(AF_INET, addr, c->addr) == 1) c->family = AF_INET;
  else if (inet_pton(AF_INET6, addr, c->addr) == 1) c->family = AF_INET6;
  else return CIDR_EINVAL;
  int max = c->family == AF_INET ? 32 : 128;
  c->bits = max;
  if (slash) {
    const char *p = slash + 1;
    int bits = 0;
    if (*p == '\0' || (p[0] == '0' && p[1] != '\0')) return CIDR_EINVAL;
    for (; *p; p++) {
      if (*p < '0' || *p > '9') return CIDR_EINVAL;
      bits = bits * 10 + (*p - '0');
      if (bits > max) return CIDR_EINVAL;
    }
    c->bits = bits;
  }
  mask(c->addr, max / 8, c->bits);
  return 0;
}

static int match_bytes(const struct cidr *c, int family, const unsigned char *a) {
  unsigned char tmp[16];
  int len;
  if (c->family == family) {
    len = family == AF_INET ? 4 : 16;
    memcpy(tmp, a, (size_t)len);
  } else if (c->family == AF_INET6 && family == AF_INET) {
    /* an IPv4 peer against an IPv6 range: as its mapped form */
    memcpy(tmp, v4_mapped, 12);
    memcpy(tmp + 12, a, 4);
    len = 16;
  } else {
    return 0;
  }
  mask(tmp, len, c->bits);
  return memcmp(tmp, c->addr, (size_t)len) == 0;
}

int cidr_match(const struct cidr *c, const char *addr) {
  unsigned char a[16];
  int family;
  if (!addr || parse_addr(addr, &family, a) < 0) return 0;
  return match_bytes(c, family, a);
}

int cidr_match_any(const struct cidr *c, int n, const char *addr) {
  unsigned char a[16];
  int family;
  if (!addr || parse_addr(addr, &family, a) < 0) return 0;
  for (int i = 0; i < n; i++)
    if (match_bytes(&c[i], family, a)) return 1;
  return 0;
}

int cidr_is_loopback(const char *addr) {
  unsigned char a[16];
  int family;
  static const unsigned char one[16] = {[15] = 1};
  if (!addr || parse_addr(addr, &family, a) < 0) return 0;
  if (family == AF_INET) return a[0] == 127;
  return memcmp(a, one, 16) == 0;
}

void cidr_format(const struct cidr *c, char *out, unsigned long len) {
  char a[INET6_ADDRSTRLEN];
  if (!inet_ntop(c->family, c->addr, a, sizeof a)) snprintf(a, sizeof a, "?");
  snprintf(out, len, "%s/%d", a, c->bits);
}
