/* redis_url: redis:// and unix:// URLs (grammar in the header). */
#include "net/redis_url.h"

#include <stdio.h>
#include <string.h>

#include "http/url.h"

#define FAIL(...) do { snprintf(err, errlen, "redis URL: " __VA_ARGS__); return -1; } while (0)

/* Decodes src[0..n) into dst (cap bytes with the NUL); -1 if too long. */
static int decode_into(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap) return -1;
  size_t len = url_decode(dst, src, n, 0);
  dst[len] = '\0';
  return memchr(dst, '\0', len) ? -1 : 0;    /* an encoded NUL would cut it short */
}

/* A decimal in [lo, hi] spelled by s[0..n); -1 if not. */
static long long parse_num(const char *s, size_t n, long long lo, long long hi) {
  if (n == 0 || n > 10) return -1;
  long long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v < lo || v > hi ? -1 : v;
}

/* user:password before '@' */
static int parse_userinfo(const char *s, size_t n, struct redis_url *out, char *err,
                          size_t errlen) {
  const char *colon = memchr(s, ':', n);
  if (!colon)
    FAIL("the part before '@' has no ':' (write :PASSWORD@ or USER:PASSWORD@)");
  size_t ul = (size_t)(colon - s);
  if (decode_into(out->user, sizeof out->user, s, ul) < 0) FAIL("user name too long");
  if (decode_into(out->password, sizeof out->password, colon + 1, n - ul - 1) < 0)
    FAIL("password too long (max %zu bytes)", sizeof out->password - 1);
  out->has_password = 1;
  return 0;
}

static int parse_query(const char *q, size_t n, struct redis_url *out, int db_seen, char *err,
                       size_t errlen) {
  while (n > 0) {
    const char *amp = memchr(q, '&', n);
    size_t len = amp ? (size_t)(amp - q) : n;
    const char *eq = memchr(q, '=', len);
    size_t kl = eq ? (size_t)(eq - q) : len;
    if (kl == 2 && !memcmp(q, "db", 2)) {
      long long db = eq ? parse_num(eq + 1, len - kl - 1, 0, 2147483647) : -1;
      if (db < 0) FAIL("db '%.*s' is not a number in 0..2147483647",
                       (int)(eq ? len - kl - 1 : 0), eq ? eq + 1 : "");
      if (db_seen) FAIL("db given twice (path and ?db=)");
      out->db = (int)db;
      db_seen = 1;
    } else if (len > 0) {
      FAIL("unknown parameter '%.*s' (only db= is accepted)", (int)(kl > 64 ? 64 : kl), q);
    }
    if (!amp) break;
    n -= len + 1;
    q = amp + 1;
  }
  return 0;
}

static int parse_tcp(const char *s, struct redis_url *out, char *err, size_t errlen) {
  size_t n = strcspn(s, "/?");          /* authority */
  const char *at = memchr(s, '@', n);
  if (at) {
    /* the last '@' ends the userinfo (a password may hold a raw '@') */
    const char *p;
    while ((p = memchr(at + 1, '@', n - (size_t)(at + 1 - s)))) at = p;
    if (parse_userinfo(s, (size_t)(at - s), out, err, errlen) < 0) return -1;
    n -= (size_t)(at + 1 - s);
    s = at + 1;
  }
  const char *hp = s, *portp = NULL;
  size_t hl;
  if (n > 0 && *s == '[') {
    const char *close = memchr(s, ']', n);
    if (!close) FAIL("'[' without ']' in host");
    hp = s + 1;
    hl = (size_t)(close - hp);
    if (close + 1 < s + n) {
      if (close[1] != ':') FAIL("unexpected '%c' after ']'", close[1]);
      portp = close + 2;
    }
  } else {
    const char *colon = memchr(s, ':', n);
    hl = colon ? (size_t)(colon - s) : n;
    if (colon) portp = colon + 1;
  }
  if (hl == 0) FAIL("no host (write redis://HOST[:PORT][/DB])");
  if (hl >= sizeof out->host) FAIL("host name too long");
  memcpy(out->host, hp, hl);
  out->host[hl] = '\0';
  if (portp) {
    long long port = parse_num(portp, (size_t)(s + n - portp), 1, 65535);
    if (port < 0) FAIL("port '%.*s' is not a number in 1..65535", (int)(s + n - portp), portp);
    out->port = (int)port;
  }
  s += n;
  int db_seen = 0;
  if (*s == '/') {
    size_t dl = strcspn(s + 1, "?");
    if (dl > 0) {
      long long db = parse_num(s + 1, dl, 0, 2147483647);
      if (db < 0) FAIL("db '%.*s' is not a number in 0..2147483647", (int)dl, s + 1);
      out->db = (int)db;
      db_seen = 1;
    }
    s += 1 + dl;
  }
  if (*s == '?') return parse_query(s + 1, strlen(s + 1), out, db_seen, err, errlen);
  return 0;
}

static int parse_unix(const char *s, struct redis_url *out, char *err, size_t errlen) {
  if (*s != '/') {
    const char *at = strchr(s, '@');
    const char *slash = strchr(s, '/');
    if (!at || (slash && slash < at))
      FAIL("unix socket path must be absolute (unix:///path/to/socket)");
    if (parse_userinfo(s, (size_t)(at - s), out, err, errlen) < 0) return -1;
    s = at + 1;
    if (*s != '/') FAIL("unix socket path must be absolute (unix:///path/to/socket)");
  }
  size_t pl = strcspn(s, "?");
  if (decode_into(out->path, sizeof out->path, s, pl) < 0)
    FAIL("unix socket path too long (max %zu bytes)", sizeof out->path - 1);
  if (strlen(out->path) < 2) FAIL("unix socket path is empty");
  out->is_unix = 1;
  s += pl;
  if (*s == '?') return parse_query(s + 1, strlen(s + 1), out, 0, err, errlen);
  return 0;
}

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->port = 6379;
  if (!url || !*url) FAIL("empty");
  if (!strncmp(url, "redis://", 8)) return parse_tcp(url + 8, out, err, errlen);
  if (!strncmp(url, "unix://", 7)) return parse_unix(url + 7, out, err, errlen);
  if (!strncmp(url, "rediss://", 9)) FAIL("TLS (rediss://) is not supported");
  size_t sl = strcspn(url, ":");
  if (!strncmp(url + sl, "://", 3))
    FAIL("unknown scheme '%.*s' (want redis:// or unix://)", (int)(sl > 32 ? 32 : sl), url);
  FAIL("no scheme (want redis://HOST[:PORT][/DB] or unix:///PATH)");
}

void redis_url_describe(const struct redis_url *u, char *buf, size_t len) {
  if (u->is_unix)
    snprintf(buf, len, "unix:%s/%d", u->path, u->db);
  else if (strchr(u->host, ':'))
    snprintf(buf, len, "[%s]:%d/%d", u->host, u->port, u->db);
  else
    snprintf(buf, len, "%s:%d/%d", u->host, u->port, u->db);
}
