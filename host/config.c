/* config: defaults < app.lua < command line, validated. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "base/size.h"
#include "http/http.h"
#include "net/redis_url.h"
#include "route.h"
#include "vm/call.h"
#include "vm/state.h"

/* Where a value came from, for messages: "app.lua key 'workers'" or
 * "option --workers". */
struct origin { char text[96]; };

static void origin_key(struct origin *o, const char *key) {
  snprintf(o->text, sizeof o->text, "app.lua key '%s'", key);
}

static int fail(char *err, size_t n, const struct origin *o, const char *expected,
                lua_State *L, int idx) {
  if (L) {
    const char *got = luaL_typename(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
      snprintf(err, n, "%s: expected %s, got %s '%s'", o->text, expected, got,
               lua_tostring(L, idx));
    else
      snprintf(err, n, "%s: expected %s, got %s", o->text, expected, got);
  } else {
    snprintf(err, n, "%s: expected %s", o->text, expected);
  }
  return LH_EINVAL;
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- value checks (value at the top of L) ----------------------------- */

static int get_int(lua_State *L, const struct origin *o, long lo, long hi, int *out,
                   char *err, size_t n) {
  char what[80];
  snprintf(what, sizeof what, "an integer from %ld to %ld", lo, hi);
  if (!lua_isinteger(L, -1)) {
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number d = lua_tonumber(L, -1);
      /* range first: converting an out-of-range float is undefined */
      if (d != floor(d) || d < (lua_Number)lo || d > (lua_Number)hi)
        return fail(err, n, o, what, L, -1);
      lua_pushinteger(L, (lua_Integer)d);
      lua_replace(L, -2);
    } else {
      return fail(err, n, o, what, L, -1);
    }
  }
  lua_Integer v = lua_tointeger(L, -1);
  if (v < lo || v > hi) return fail(err, n, o, what, L, -1);
  *out = (int)v;
  return 0;
}

static int get_seconds(lua_State *L, const struct origin *o, double lo, double *out,
                       char *err, size_t n) {
  const char *what = lo > 0 ? "a positive number of seconds" : "a number of seconds >= 0";
  if (lua_type(L, -1) != LUA_TNUMBER) return fail(err, n, o, what, L, -1);
  double v = lua_tonumber(L, -1);
  if (!(v >= lo) || (lo > 0 && v <= 0) || v > 1e9) return fail(err, n, o, what, L, -1);
  *out = v;
  return 0;
}

static int get_size(lua_State *L, const struct origin *o, size_t min, size_t *out,
                    char *err, size_t n) {
  static const char what[] = "a size such as 1048576, \"64k\", \"128m\" or \"1g\"";
  size_t v;
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0) {
    v = (size_t)lua_tointeger(L, -1);
  } else if (lua_type(L, -1) != LUA_TSTRING || size_parse(lua_tostring(L, -1), &v) < 0) {
    return fail(err, n, o, what, L, -1);
  }
  if (v < min) {
    char m[128];
    snprintf(m, sizeof m, "a size of at least %zu bytes (%zuk)", min, (min + 1023) >> 10);
    return fail(err, n, o, m, L, -1);
  }
  *out = v;
  return 0;
}

static int get_role(lua_State *L, const struct origin *o, int *out, char *err, size_t n) {
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (!strcmp(s, "frontend")) *out = VM_FRONTEND;
  else if (!strcmp(s, "backend")) *out = VM_BACKEND;
  else return fail(err, n, o, "\"frontend\" or \"backend\"", L, -1);
  return 0;
}

static int get_listen(lua_State *L, const struct origin *o, struct config *c, char *err,
                      size_t n) {
  static const char what[] = "\"HOST:PORT\" with a port from 0 to 65535";
  if (lua_type(L, -1) != LUA_TSTRING) return fail(err, n, o, what, L, -1);
  const char *s = lua_tostring(L, -1);
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s) return fail(err, n, o, what, L, -1);
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535)
    return fail(err, n, o, what, L, -1);
  size_t hl = (size_t)(colon - s);
  if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') { s++; hl -= 2; }
  free(c->listen_host);
  c->listen_host = malloc(hl + 1);
  if (!c->listen_host) return fail(err, n, o, "memory", NULL, 0);
  memcpy(c->listen_host, s, hl);
  c->listen_host[hl] = '\0';
  c->listen_port = (int)port;
  return 0;
}

/* "^/static/" and "^/$" style patterns are matched in C, without Lua. */
static void route_literal(struct route *r) {
  const char *u = r->url;
  if (u[0] != '^') return;
  size_t n = strlen(u + 1);
  int exact = n > 0 && u[n] == '$';
  if (exact) n--;
  for (size_t i = 0; i < n; i++)
    if (strchr("^$*+?.([%-", u[1 + i])) return;
  r->literal = malloc(n + 1);
  if (!r->literal) return;
  memcpy(r->literal, u + 1, n);
  r->literal[n] = '\0';
  r->literal_len = n;
  r->exact = exact;
}

/* The route's methods (value at the top): an array of HTTP tokens,
 * upper-cased. */
static int get_methods(lua_State *L, struct route *r, int i, char *err, size_t n) {
  struct origin o;
  snprintf(o.text, sizeof o.text, "app.lua key 'handlers[%d].methods'", i);
  static const char what[] = "an array of HTTP methods such as {\"GET\", \"POST\"}";
  if (!lua_istable(L, -1)) return fail(err, n, &o, what, L, -1);
  int count = (int)lua_rawlen(L, -1);
  if (count < 1 || count > 64) return fail(err, n, &o, what, NULL, 0);
  lua_pushnil(L);
  while (lua_next(L, -2)) {   /* only the array part */
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > count) {
      lua_pop(L, 1);
      return fail(err, n, &o, what, NULL, 0);
    }
  }
  if (!(r->methods = calloc((size_t)count, sizeof *r->methods)))
    return fail(err, n, &o, "memory", NULL, 0);
  for (int m = 1; m <= count; m++) {
    size_t len;
    lua_rawgeti(L, -1, m);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!s || !route_is_token(s, len) || len > 32) {
      snprintf(o.text, sizeof o.text, "app.lua: handlers[%d].methods[%d]", i, m);
      return fail(err, n, &o, "an HTTP method: a token such as \"GET\" (letters, digits, "
                              "!#$%&'*+-.^_`|~)", L, -1);
    }
    if (!(r->methods[m - 1] = dupstr(s))) return fail(err, n, &o, "memory", NULL, 0);
    r->nmethods = m;
    for (char *p = r->methods[m - 1]; *p; p++)
      if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    if (!http_method_known(r->methods[m - 1])) {   /* a token the parser answers 400 */
      snprintf(o.text, sizeof o.text, "app.lua: handlers[%d].methods[%d]", i, m);
      return fail(err, n, &o, "a method the HTTP parser accepts (GET, HEAD, POST, PUT, "
                              "DELETE, PATCH, OPTIONS, PURGE, ...; see README)", L, -1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int get_routes(lua_State *L, struct config *c, char *err, size_t n) {
  struct origin o;
  origin_key(&o, "handlers");
  if (!lua_istable(L, -1))
    return fail(err, n, &o, "an array of {url = PATTERN, script = MODULE} or "
                            "{url = PATTERN, static_dir = DIR} tables", L, -1);
  int count = (int)lua_rawlen(L, -1);   /* raw: app.lua metamethods never run here */
  if (count < 1) return fail(err, n, &o, "at least one route", NULL, 0);
  c->routes = calloc((size_t)count, sizeof *c->routes);
  if (!c->routes) return fail(err, n, &o, "memory", NULL, 0);
  c->nroutes = count;
  for (int i = 1; i <= count; i++) {
    struct route *r = &c->routes[i - 1];
    snprintf(o.text, sizeof o.text, "app.lua key 'handlers[%d]'", i);
    if (lua_rawgeti(L, -1, i) != LUA_TTABLE)
      return fail(err, n, &o, "a table {url = PATTERN, script = MODULE}", L, -1);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (!k || (strcmp(k, "url") && strcmp(k, "script") && strcmp(k, "static_dir") &&
                 strcmp(k, "methods"))) {
        lua_pop(L, 1);
        return fail(err, n, &o, "only the keys url, script, static_dir and methods", L, -1);
      }
      lua_pop(L, 1);
    }
    const char *fields[3] = {"url", "script", "static_dir"};
    char **vals[3] = {&r->url, &r->script, &r->static_dir};
    for (int f = 0; f < 3; f++) {
      lua_pushstring(L, fields[f]);
      int t = lua_rawget(L, -2);
      if (t != LUA_TNIL) {
        snprintf(o.text, sizeof o.text, "app.lua key 'handlers[%d].%s'", i, fields[f]);
        if (t != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
            strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
          return fail(err, n, &o, "a non-empty string without NUL bytes", L, -1);
        if (!(*vals[f] = dupstr(lua_tostring(L, -1)))) return fail(err, n, &o, "memory", NULL, 0);
      }
      lua_pop(L, 1);
    }
    snprintf(o.text, sizeof o.text, "app.lua key 'handlers[%d]'", i);
    if (!r->url) return fail(err, n, &o, "a 'url' pattern", NULL, 0);
    if (!!r->script == !!r->static_dir)
      return fail(err, n, &o, "exactly one of 'script' and 'static_dir'", NULL, 0);
    /* the pattern must be one Lua accepts on every path, not only on "" */
    char why[160];
    if (route_check_pattern(r->url, strlen(r->url), &r->ncaptures, why, sizeof why) < 0) {
      snprintf(err, n, "app.lua: handlers[%d].url: %s", i, why);
      return LH_EINVAL;
    }
    const char *shadowed = r->script ? route_shadowed(r->script) : NULL;
    if (shadowed) {
      snprintf(err, n, "app.lua: handlers[%d].script: '%s' shadows %s; rename the module", i,
               r->script, shadowed);
      return LH_EINVAL;
    }
    lua_pushliteral(L, "methods");
    if (lua_rawget(L, -2) != LUA_TNIL && get_methods(L, r, i, err, n) < 0) return LH_EINVAL;
    lua_pop(L, 1);
    route_literal(r);
    if (r->static_dir) {
      char path[PATH_MAX], real[PATH_MAX];
      struct stat st;
      if (r->static_dir[0] == '/') snprintf(path, sizeof path, "%s", r->static_dir);
      else snprintf(path, sizeof path, "%s/%s", c->app_dir, r->static_dir);
      if (!realpath(path, real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(o.text, sizeof o.text, "app.lua key 'handlers[%d].static_dir'", i);
        char what[PATH_MAX + 40];
        snprintf(what, sizeof what, "an existing directory ('%s' is not one)", path);
        return fail(err, n, &o, what, NULL, 0);
      }
      free(r->static_dir);
      if (!(r->static_dir = dupstr(real))) return fail(err, n, &o, "memory", NULL, 0);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int get_caps(lua_State *L, const char *kind, struct config_cap **out, int *nout,
                    char *err, size_t n) {
  struct origin o;
  snprintf(o.text, sizeof o.text, "app.lua key 'shared.%s'", kind);
  if (lua_isnil(L, -1)) return 0;
  if (!lua_istable(L, -1)) return fail(err, n, &o, "a table of name = capacity", L, -1);
  int count = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) { count++; lua_pop(L, 1); }
  *out = calloc((size_t)count + 1, sizeof **out);
  if (!*out) return fail(err, n, &o, "memory", NULL, 0);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 1);
      return fail(err, n, &o, "string names", L, -1);
    }
    if (strlen(lua_tostring(L, -2)) != lua_rawlen(L, -2)) {
      lua_pop(L, 1);
      return fail(err, n, &o, "names without NUL bytes", NULL, 0);
    }
    struct config_cap *cap = &(*out)[(*nout)++];
    if (!(cap->name = dupstr(lua_tostring(L, -2)))) return fail(err, n, &o, "memory", NULL, 0);
    snprintf(o.text, sizeof o.text, "app.lua key 'shared.%s.%s'", kind, cap->name);
    if (!strcmp(kind, "dicts")) {
      if (get_size(L, &o, 4096, &cap->size, err, n) < 0) return LH_EINVAL;
    } else {
      int items;
      if (get_int(L, &o, 1, 100000000, &items, err, n) < 0) return LH_EINVAL;
      cap->size = (size_t)items;
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int get_shared(lua_State *L, struct config *c, char *err, size_t n) {
  struct origin o;
  origin_key(&o, "shared");
  if (!lua_istable(L, -1)) return fail(err, n, &o, "a table {dicts = ..., queues = ...}", L, -1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    if (!strcmp(k, "store")) {
      origin_key(&o, "shared.store");
      if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
        return fail(err, n, &o, "the name of a server in 'redis'", L, -1);
      free(c->store);
      if (!(c->store = dupstr(lua_tostring(L, -1)))) return fail(err, n, &o, "memory", NULL, 0);
    } else if (!strcmp(k, "timeout")) {
      origin_key(&o, "shared.timeout");
      if (get_seconds(L, &o, 1e-3, &c->store_timeout, err, n) < 0) return -1;
    }
    lua_pop(L, 1);
    if (strcmp(k, "dicts") && strcmp(k, "queues") && strcmp(k, "store") && strcmp(k, "timeout")) {
      origin_key(&o, "shared");
      return fail(err, n, &o, "only the keys dicts, queues, store and timeout", L, -1);
    }
  }
  lua_pushliteral(L, "dicts");
  lua_rawget(L, -2);
  if (get_caps(L, "dicts", &c->dicts, &c->ndicts, err, n) < 0) return LH_EINVAL;
  lua_pop(L, 1);
  lua_pushliteral(L, "queues");
  lua_rawget(L, -2);
  if (get_caps(L, "queues", &c->queues, &c->nqueues, err, n) < 0) return LH_EINVAL;
  lua_pop(L, 1);
  return 0;
}

/* redis = { name = "redis://..." }: each URL must parse. */
static int get_redis(lua_State *L, struct config *c, char *err, size_t n) {
  struct origin o;
  origin_key(&o, "redis");
  if (!lua_istable(L, -1)) return fail(err, n, &o, "a table of name = \"redis://...\"", L, -1);
  int count = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) { count++; lua_pop(L, 1); }
  if (!(c->redis = calloc((size_t)count + 1, sizeof *c->redis)))
    return fail(err, n, &o, "memory", NULL, 0);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_rawlen(L, -2) == 0 ||
        strlen(lua_tostring(L, -2)) != lua_rawlen(L, -2)) {
      lua_pop(L, 1);
      return fail(err, n, &o, "non-empty string names", L, -1);
    }
    snprintf(o.text, sizeof o.text, "app.lua key 'redis.%.60s'", lua_tostring(L, -2));
    struct redis_url u;
    char why[256];
    if (lua_type(L, -1) != LUA_TSTRING) return fail(err, n, &o, "a URL string", L, -1);
    if (redis_url_parse(lua_tostring(L, -1), &u, why, sizeof why) < 0) {
      char what[300];
      snprintf(what, sizeof what, "a redis:// or unix:// URL (%s)", why);
      return fail(err, n, &o, what, NULL, 0);
    }
    struct config_redis *r = &c->redis[c->nredis++];
    if (!(r->name = dupstr(lua_tostring(L, -2))) || !(r->url = dupstr(lua_tostring(L, -1))))
      return fail(err, n, &o, "memory", NULL, 0);
    lua_pop(L, 1);
  }
  return 0;
}

/* metrics_allow: an array of CIDR strings ("10.0.0.0/8", "2001:db8::/32"). */
static int get_cidrs(lua_State *L, const struct origin *o, struct config *c, char *err,
                     size_t n) {
  static const char what[] = "an array of CIDR strings such as \"10.0.0.0/8\"";
  if (!lua_istable(L, -1)) return fail(err, n, o, what, L, -1);
  int count = (int)lua_rawlen(L, -1), seen = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {   /* only the array part: no other keys */
    int ok = lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
             lua_tointeger(L, -2) <= count;
    lua_pop(L, 1);
    if (!ok) return fail(err, n, o, what, NULL, 0);
    seen++;
  }
  if (seen != count) return fail(err, n, o, what, NULL, 0);
  free(c->metrics_allow);
  c->metrics_allow = calloc((size_t)count + 1, sizeof *c->metrics_allow);
  c->nmetrics_allow = 0;
  if (!c->metrics_allow) return fail(err, n, o, "memory", NULL, 0);
  for (int i = 1; i <= count; i++) {
    struct origin oi;
    snprintf(oi.text, sizeof oi.text, "app.lua key 'metrics_allow[%d]'", i);
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1) ||
        cidr_parse(&c->metrics_allow[i - 1], lua_tostring(L, -1)) < 0)
      return fail(err, n, &oi, "a CIDR such as \"10.0.0.0/8\", \"192.0.2.7\" or "
                  "\"2001:db8::/32\"", L, -1);
    c->nmetrics_allow = i;
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- keys ------------------------------------------------------------- */

enum { K_ROLE, K_LISTEN, K_WORKERS, K_MAXBG, K_MEM, K_DEADLINE, K_GRACE, K_BODY,
       K_ACCESS, K_HANDLERS, K_SHARED, K_DRAIN, K_METRICS_ALLOW, K_REDIS, K_PREFIX,
       K_COUNT };
static const char *const keys[K_COUNT] = {
  "role", "listen", "workers", "max_background_threads", "memory_limit",
  "request_deadline", "shutdown_grace", "max_body", "access_log", "handlers", "shared",
  "drain", "metrics_allow", "redis", "store_prefix"};

/* Validates the value at the top of L as key k. */
static int set_key(lua_State *L, struct config *c, int k, const struct origin *o,
                   char *err, size_t n) {
  switch (k) {
    case K_ROLE: return get_role(L, o, &c->role, err, n);
    case K_LISTEN: return get_listen(L, o, c, err, n);
    case K_WORKERS: return get_int(L, o, 1, 256, &c->workers, err, n);
    case K_MAXBG: return get_int(L, o, 0, 100000, &c->max_background_threads, err, n);
    case K_MEM: return get_size(L, o, 256 * 1024, &c->memory_limit, err, n);
    case K_DEADLINE: return get_seconds(L, o, 1e-9, &c->request_deadline, err, n);
    case K_GRACE: return get_seconds(L, o, 0, &c->shutdown_grace, err, n);
    case K_BODY: return get_size(L, o, 0, &c->max_body, err, n);
    case K_ACCESS:
      if (lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "json")) {
        c->access_log = 2;
        return 0;
      }
      if (!lua_isboolean(L, -1)) return fail(err, n, o, "true or false, or \"json\"", L, -1);
      c->access_log = lua_toboolean(L, -1);
      return 0;
    case K_HANDLERS: return get_routes(L, c, err, n);
    case K_SHARED: return get_shared(L, c, err, n);
    case K_DRAIN: return get_seconds(L, o, 0, &c->drain, err, n);
    case K_METRICS_ALLOW: return get_cidrs(L, o, c, err, n);
    case K_REDIS: return get_redis(L, c, err, n);
    case K_PREFIX:
      if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
          strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
        return fail(err, n, o, "a non-empty string without NUL bytes", L, -1);
      free(c->store_prefix);
      if (!(c->store_prefix = dupstr(lua_tostring(L, -1)))) return fail(err, n, o, "memory", NULL, 0);
      return 0;
  }
  return 0;
}

static void defaults(struct config *c) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  c->role = VM_FRONTEND;
  c->listen_host = dupstr("127.0.0.1");
  c->listen_port = 8080;
  c->workers = cpus > 0 ? (int)(cpus > 64 ? 64 : cpus) : 1;
  c->max_background_threads = CONFIG_DEFAULT_MAX_THREADS;
  c->memory_limit = CONFIG_DEFAULT_MEMORY_LIMIT;
  c->request_deadline = -1;   /* by role, once the role is known */
  c->shutdown_grace = 30;
  c->max_body = 32u << 20;
  c->access_log = 1;
  c->store_timeout = CONFIG_DEFAULT_STORE_TIMEOUT;
}

/* Runs app.lua in a fresh state and checks its keys into c. */
static int load_app_lua(lua_State *L, struct config *c, char *err, size_t n) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/app.lua", c->app_dir);
  if (access(path, F_OK) != 0) return 0;
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    snprintf(err, n, "app.lua: %s", lua_tostring(L, -1));
    return LH_EINVAL;
  }
  if (vm_pcall(L, 0, 1) != LUA_OK) {
    snprintf(err, n, "app.lua failed: %s", vm_error_text(L));
    return LH_EINVAL;
  }
  if (lua_isnil(L, -1)) return 0;
  if (!lua_istable(L, -1)) {
    snprintf(err, n, "app.lua: expected it to return a table, got %s", luaL_typename(L, -1));
    return LH_EINVAL;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    int k = K_COUNT;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (k = 0; k < K_COUNT && strcmp(keys[k], lua_tostring(L, -2)); k++) {}
    if (k == K_COUNT) {
      char kbuf[64];   /* a number or boolean key as Lua writes it ([1]); no metamethod runs */
      int kt = lua_type(L, -2);
      if (kt == LUA_TNUMBER) {
        lua_pushvalue(L, -2);   /* a copy: lua_next's key must stay a number */
        snprintf(kbuf, sizeof kbuf, "[%s]", lua_tostring(L, -1));
        lua_pop(L, 1);
      } else if (kt == LUA_TBOOLEAN) {
        snprintf(kbuf, sizeof kbuf, "[%s]", lua_toboolean(L, -2) ? "true" : "false");
      } else {
        snprintf(kbuf, sizeof kbuf, "%s", luaL_typename(L, -2));
      }
      const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : kbuf;
      char known[512];
      size_t at = 0;
      for (int i = 0; i < K_COUNT && at < sizeof known; i++)   /* the keys[] table, listed */
        at += (size_t)snprintf(known + at, sizeof known - at, "%s%s", i ? ", " : "", keys[i]);
      snprintf(err, n, "app.lua: unknown key '%s' (expected one of %s)", key, known);
      return LH_EINVAL;
    }
    struct origin o;
    origin_key(&o, keys[k]);
    if (set_key(L, c, k, &o, err, n) < 0) return LH_EINVAL;
    lua_pop(L, 1);
  }
  return 0;
}

/* Command-line options: strings converted as app.lua values would be. */
static int apply_cli(lua_State *L, struct config *c, const struct config_cli *cli,
                     char *err, size_t n) {
  const struct { const char *val, *opt; int key, numeric; } opts[] = {
    {cli->role, "--role", K_ROLE, 0},
    {cli->listen, "--listen", K_LISTEN, 0},
    {cli->workers, "--workers", K_WORKERS, 1},
    {cli->max_background_threads, "--max-background-threads", K_MAXBG, 1},
    {cli->memory_limit, "--memory-limit", K_MEM, 0},
    {cli->request_deadline, "--request-deadline", K_DEADLINE, 1},
    {cli->shutdown_grace, "--shutdown-grace", K_GRACE, 1},
  };
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    if (!opts[i].val) continue;
    struct origin o;
    snprintf(o.text, sizeof o.text, "option %s", opts[i].opt);
    if (!opts[i].numeric || !lua_stringtonumber(L, opts[i].val))
      lua_pushstring(L, opts[i].val);
    if (set_key(L, c, opts[i].key, &o, err, n) < 0) return LH_EINVAL;
    lua_pop(L, 1);
  }
  if (cli->log_format) {
    if (!strcmp(cli->log_format, "json")) c->log_json = 1;
    else if (strcmp(cli->log_format, "text")) {
      snprintf(err, n, "option --log-format: expected \"text\" or \"json\", got '%s'",
               cli->log_format);
      return LH_EINVAL;
    }
  }
  return 0;
}

struct load_args {
  struct config *c;
  const struct config_cli *cli;
  char *err; size_t n;
  int rc;
};

/* app.lua, then the command line, then the default route. */
static int load_protected(lua_State *L) {
  struct load_args *a = lua_touserdata(L, 1);
  struct config *c = a->c;
  lua_settop(L, 0);
  a->rc = load_app_lua(L, c, a->err, a->n);
  lua_settop(L, 0);
  if (a->rc == 0) a->rc = apply_cli(L, c, a->cli, a->err, a->n);
  if (a->rc == 0) c->reload = a->cli->reload;
  if (a->rc == 0) c->cli = *a->cli;
  if (a->rc == 0 && c->store) {
    int i = 0;
    while (i < c->nredis && strcmp(c->redis[i].name, c->store)) i++;
    if (i == c->nredis) {
      snprintf(a->err, a->n, "app.lua key 'shared.store': expected the name of a server in "
               "'redis', got '%s'", c->store);
      a->rc = LH_EINVAL;
    }
  }
  if (a->rc == 0 && !c->store_prefix) {
    const char *base = strrchr(c->app_dir, '/');
    base = base && base[1] ? base + 1 : c->app_dir;
    if (!(c->store_prefix = dupstr(base))) a->rc = LH_ESYSTEM;
  }
  if (a->rc == 0 && !c->routes) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "^/");
    lua_setfield(L, -2, "url");
    lua_pushliteral(L, "main");
    lua_setfield(L, -2, "script");
    lua_rawseti(L, -2, 1);
    a->rc = get_routes(L, c, a->err, a->n);
  }
  return 0;
}

int config_load(struct config *c, const char *app_dir, const struct config_cli *cli,
                char *err, size_t n) {
  char real[PATH_MAX];
  struct stat st;
  memset(c, 0, sizeof *c);
  defaults(c);
  if (!realpath(app_dir, real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, n, "APP_DIR '%s': expected an existing directory", app_dir);
    return LH_EINVAL;
  }
  if (!(c->app_dir = dupstr(real))) {
    snprintf(err, n, "out of memory");
    return LH_ESYSTEM;
  }
  struct vm_opts vo = {VM_BACKEND, VM_EXIT_REFUSE, 0, {c->app_dir, NULL, NULL}, NULL, NULL};
  lua_State *L = vm_new(&vo, err, n);
  if (!L) return LH_ESYSTEM;
  /* Everything runs in one protected call: whatever app.lua's values do
   * (a raising __tostring, say), the outcome is a message, never a panic. */
  struct load_args a = {c, cli, err, n, LH_EINVAL};
  lua_pushcfunction(L, load_protected);
  lua_pushlightuserdata(L, &a);
  if (vm_pcall(L, 1, 0) != LUA_OK) {
    snprintf(err, n, "app.lua: %s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                    : "error while checking it");
    a.rc = LH_EINVAL;
  }
  int rc = a.rc;
  vm_close(L);
  if (c->request_deadline < 0) c->request_deadline = c->role == VM_BACKEND ? 86400 : 60;
  return rc;
}

void config_free(struct config *c) {
  for (int i = 0; i < c->nroutes; i++) {
    free(c->routes[i].url);
    free(c->routes[i].script);
    free(c->routes[i].static_dir);
    free(c->routes[i].literal);
    for (int m = 0; m < c->routes[i].nmethods; m++) free(c->routes[i].methods[m]);
    free(c->routes[i].methods);
  }
  for (int i = 0; i < c->ndicts; i++) free(c->dicts[i].name);
  for (int i = 0; i < c->nqueues; i++) free(c->queues[i].name);
  for (int i = 0; i < c->nredis; i++) {
    free(c->redis[i].name);
    free(c->redis[i].url);
  }
  free(c->redis);
  free(c->store_prefix);
  free(c->store);
  free(c->routes);
  free(c->dicts);
  free(c->queues);
  free(c->metrics_allow);
  free(c->app_dir);
  free(c->listen_host);
  memset(c, 0, sizeof *c);
}

struct config *config_load_new(const char *app_dir, const struct config_cli *cli,
                               int *rc, char *err, size_t n) {
  struct config *c = malloc(sizeof *c);
  if (!c) {
    snprintf(err, n, "out of memory");
    *rc = LH_ESYSTEM;
    return NULL;
  }
  if ((*rc = config_load(c, app_dir, cli, err, n)) != 0) {
    config_free(c);
    free(c);
    return NULL;
  }
  c->on_heap = 1;
  atomic_init(&c->refs, 1);
  return c;
}

void config_retain(const struct config *c) {
  if (c && c->on_heap) atomic_fetch_add(&((struct config *)c)->refs, 1);
}

void config_release(const struct config *c) {
  struct config *m = (struct config *)c;
  if (m && m->on_heap && atomic_fetch_sub(&m->refs, 1) == 1) {
    config_free(m);
    free(m);
  }
}
