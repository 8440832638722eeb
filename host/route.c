/* route: pattern, script and methods checks; Allow lists. */
#include "route.h"

#include <stdio.h>
#include <string.h>

#include "base/lherror.h"
#include "config.h"

/* ---- patterns: Lua 5.4 lstrlib's rules, walked once statically ---------- */

static int perr(char *err, size_t n, const char *msg) {
  snprintf(err, n, "%s", msg);
  return LH_EINVAL;
}

/* The end of the single-character class at p (a char, %x or [set]), as
 * lstrlib's classEnd; NULL with err set when the set never closes. */
static const char *class_end(const char *p, const char *end, char *err, size_t n) {
  char c = *p++;
  if (c == '%') {
    if (p >= end) { perr(err, n, "malformed pattern (ends with '%')"); return NULL; }
    return p + 1;
  }
  if (c == '[') {
    if (p < end && *p == '^') p++;
    do {   /* the first character is a member even if it is ']' */
      if (p >= end) { perr(err, n, "malformed pattern (missing ']')"); return NULL; }
      c = *p++;
      if (c == '%' && p < end) p++;
    } while (p >= end || *p != ']');
    return p + 1;
  }
  return p;
}

int route_check_pattern(const char *pat, size_t len, int *ncaptures, char *err, size_t n) {
  enum { OPEN, CLOSED };
  unsigned char cap[ROUTE_MAX_CAPTURES];
  int level = 0;
  const char *p = pat, *end = pat + len;
  if (p < end && *p == '^') p++;
  while (p < end) {
    switch (*p) {
      case '(':
        if (level >= ROUTE_MAX_CAPTURES) return perr(err, n, "too many captures");
        if (p + 1 < end && p[1] == ')') {   /* a position capture */
          cap[level++] = CLOSED;
          p += 2;
        } else {
          cap[level++] = OPEN;
          p++;
        }
        continue;
      case ')': {
        int l = level - 1;
        while (l >= 0 && cap[l] != OPEN) l--;
        if (l < 0) return perr(err, n, "invalid pattern capture");
        cap[l] = CLOSED;
        p++;
        continue;
      }
      case '$':
        if (p + 1 == end) { p++; continue; }   /* the end anchor */
        break;
      case '%':
        if (p + 1 >= end) return perr(err, n, "malformed pattern (ends with '%')");
        if (p[1] == 'b') {
          if (p + 3 >= end) return perr(err, n, "malformed pattern (missing arguments to '%b')");
          p += 4;
          continue;
        }
        if (p[1] == 'f') {
          p += 2;
          if (p >= end || *p != '[') return perr(err, n, "missing '[' after '%f' in pattern");
          if (!(p = class_end(p, end, err, n))) return LH_EINVAL;
          continue;
        }
        if (p[1] >= '0' && p[1] <= '9') {
          int l = p[1] - '1';
          if (l < 0 || l >= level || cap[l] == OPEN) {
            snprintf(err, n, "invalid capture index %%%d", l + 1);
            return LH_EINVAL;
          }
          p += 2;
          continue;
        }
        break;
      default:
        break;
    }
    /* a single-character class, maybe with a quantifier */
    if (!(p = class_end(p, end, err, n))) return LH_EINVAL;
    if (p < end && strchr("?+*-", *p)) p++;
  }
  for (int l = 0; l < level; l++)
    if (cap[l] == OPEN) return perr(err, n, "malformed pattern (unfinished capture)");
  if (ncaptures) *ncaptures = level;
  return 0;
}

/* ---- script names -------------------------------------------------------- */

static const char *const lua_libs[] = {"_G", "coroutine", "debug", "io", "math", "os",
                                       "package", "string", "table", "utf8", NULL};
static const char *const host_modules[] = {"runtime", "shared", "background_thread",
                                           "apptest", "json", "urlfetch", "redis",
                                           "luaunit", NULL};

const char *route_shadowed(const char *script) {
  static _Thread_local char what[64];
  for (int i = 0; lua_libs[i]; i++)
    if (!strcmp(script, lua_libs[i])) {
      snprintf(what, sizeof what, "Lua's %s library", script);
      return what;
    }
  for (int i = 0; host_modules[i]; i++)
    if (!strcmp(script, host_modules[i])) {
      snprintf(what, sizeof what, "the host's %s module", script);
      return what;
    }
  return NULL;
}

/* ---- methods ---------------------------------------------------------- */

int route_is_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          (c && strchr("!#$%&'*+-.^_`|~", c))))
      return 0;
  }
  return 1;
}

static int listed(const struct route *r, const char *m) {
  for (int i = 0; i < r->nmethods; i++)
    if (!strcmp(r->methods[i], m)) return 1;
  return 0;
}

int route_allows(const struct route *r, const char *m) {
  /* a static_dir route serves files: GET and HEAD only, so another method
   * goes on to a later route (or gets 405 with this route's Allow) */
  if (r->static_dir && strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) return 0;
  if (!r->methods) return 1;
  return listed(r, m) || (!strcmp(m, "HEAD") && listed(r, "GET"));
}

/* 1 when m is an item of the ", "-separated list. */
static int in_list(const char *list, const char *m) {
  size_t ml = strlen(m);
  for (const char *p = list; *p;) {
    const char *comma = strstr(p, ", ");
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    if (l == ml && !memcmp(p, m, ml)) return 1;
    if (!comma) break;
    p = comma + 2;
  }
  return 0;
}

static int add_one(char *buf, size_t cap, size_t *len, const char *m) {
  if (in_list(buf, m)) return 0;
  size_t ml = strlen(m), sep = *len ? 2 : 0;
  if (*len + sep + ml + 1 > cap) return LH_ELIMIT;
  if (sep) memcpy(buf + *len, ", ", 2);
  memcpy(buf + *len + sep, m, ml + 1);
  *len += sep + ml;
  return 0;
}

int route_allow_add(const struct route *r, char *buf, size_t cap) {
  size_t len = strlen(buf), was = len;
  if (r->static_dir && !r->methods) {
    if (add_one(buf, cap, &len, "GET") < 0 || add_one(buf, cap, &len, "HEAD") < 0) {
      buf[was] = '\0';
      return LH_ELIMIT;
    }
    return 0;
  }
  for (int i = 0; r->methods && i < r->nmethods; i++) {
    if (add_one(buf, cap, &len, r->methods[i]) < 0 ||
        (!strcmp(r->methods[i], "GET") && add_one(buf, cap, &len, "HEAD") < 0)) {
      buf[was] = '\0';
      return LH_ELIMIT;
    }
  }
  return 0;
}
