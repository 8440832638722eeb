/* dispatch: the request runner: reserved paths, routes, `req`, handler
 * coroutines, static files, results. */
#include "dispatch.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "http/response.h"
#include "http/static.h"
#include "http/url.h"
#include "lifecycle.h"
#include "req.h"
#include "route.h"
#include "vm/call.h"
#include "vm/errors.h"

#define POOL_MAX 64

/* The strings every request uses, interned once per state and kept in
 * the handlers table after the routes (a rawgeti is far cheaper than
 * pushing a C string, which hashes it and compares it in the API cache). */
enum { K_METHOD, K_PATH, K_QUERY, K_ARGS, K_HEADERS, K_BODY, K_REMOTE, K_VERSION,
       K_RID, K_V11, K_GET, K_POST, K_CAPTURES, K_COUNT };
/* The handlers table: [1..nroutes] handlers, then the K_* strings, then
 * string.find at find_slot and route i's pattern at find_slot + 1 + i,
 * then req's metatable (req.h) at meta_slot. */
static int find_slot(const struct config *cfg) { return cfg->nroutes + K_COUNT + 1; }
static int meta_slot_of(int nroutes) { return nroutes + K_COUNT + 2 + nroutes; }
static int meta_slot(const struct config *cfg) { return meta_slot_of(cfg->nroutes); }
static const char *const key_names[K_COUNT] = {
  "method", "path", "query", "args", "headers", "body", "remote_addr", "http_version",
  "request_id", "1.1", "GET", "POST", "captures"};

static void store_keys(lua_State *L, int tbl, int base) {
  for (int k = 0; k < K_COUNT; k++) {
    lua_pushstring(L, key_names[k]);
    lua_rawseti(L, tbl, base + k + 1);
  }
}

void dispatch_internal_request(struct http_request *r, const char *path) {
  memset(r, 0, sizeof *r);
  r->method = "GET";
  r->target = r->path = path;
  r->target_len = r->path_len = strlen(path);
  r->query = r->body = "";
  r->http_major = r->http_minor = 1;
  r->remote = "0.0.0.0";
  r->start_ns = clock_now_ns();
  r->seq = instance_request_id(r->request_id);
}

/* A load error's text without what adds nothing: traceback lines of C
 * functions ("[C]: in ?", require) and, when every Lua frame left is
 * already named in the message, the whole traceback (a syntax error, an
 * error() at a module's top level).  Writes into out[n]. */
static void tidy_error(const char *text, char *out, size_t n) {
  static const char tb[] = "\nstack traceback:\n";
  const char *cut = strstr(text, tb);
  size_t ml = cut ? (size_t)(cut - text) : strlen(text), len;
  snprintf(out, n, "%.*s", (int)ml, text);
  len = strlen(out);
  size_t at_tb = len;
  int kept = 0, news = 0;
  for (const char *p = cut ? cut + 1 : NULL; p && *p;) {
    const char *eol = strchr(p, '\n');
    size_t ll = eol ? (size_t)(eol - p) : strlen(p);
    const char *l = p;
    p = eol ? eol + 1 : NULL;
    while (ll && (*l == '\t' || *l == ' ')) { l++; ll--; }
    if (!ll || !strncmp(l, "[C]:", 4) || !strncmp(l, "stack traceback:", 16) ||
        !strncmp(l, "(...tail calls...)", 18))
      continue;
    /* "file.lua:12: in ..." adds a place when "file.lua:12:" is not in the message */
    const char *in = strstr(l, ": in ");
    size_t where = in && (size_t)(in - l) < ll ? (size_t)(in - l) + 1 : ll;
    char place[512];
    snprintf(place, sizeof place, "%.*s", (int)where, l);
    if (!strstr(out, place) || where == ll) news = 1;
    if (!kept && len < n) len += (size_t)snprintf(out + len, n - len, "\nstack traceback:");
    if (len < n) len += (size_t)snprintf(out + len, n - len, "\n\t%.*s", (int)ll, l);
    kept++;
  }
  if (!news && at_tb < n) out[at_tb] = '\0';
}

/* Logs a load error once per instance however many states hit it: every
 * worker loads the same modules.  Remembers (by hash) up to 256 texts. */
static void log_load_error_once(const char *text) {
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* any worker thread */
  static uint64_t seen[256];   /* (lock) */
  static int nseen;            /* (lock) */
  uint64_t h = 1469598103934665603ull;
  for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  pthread_mutex_lock(&lock);
  int fresh = 1;
  for (int i = 0; i < nseen && fresh; i++) fresh = seen[i] != h;
  if (fresh && nseen < 256) seen[nseen++] = h;
  pthread_mutex_unlock(&lock);
  if (fresh) log_msg(LOG_ERROR, NULL, NULL, "%s", text);
}

/* require(script), checked to give a function.  Stack: name -> handler. */
static int load_handler(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (vm_require(L, name) != LUA_OK) {
    char msg[2048];
    tidy_error(lua_tostring(L, -1), msg, sizeof msg);
    return luaL_error(L, "handler script '%s' failed to load: %s", name, msg);
  }
  if (!lua_isfunction(L, -1))
    return luaL_error(L, "handler script '%s' returned %s; expected it to return the "
                         "handler function(req)", name, luaL_typename(L, -1));
  return 1;
}

/* The body of a 500 a handler's failure answers: no detail, the ID to
 * find it in the log. */
static void push_500_body(lua_State *L, const char *request_id) {
  lua_pushfstring(L, "500 Internal Server Error\nrequest id: %s\n", request_id);
}

/* Loads a handler module: 1 with the handler pushed, or 0 (nothing
 * pushed) with its error logged unless that text was logged before. */
static int load_logged(lua_State *L, const char *script) {
  lua_pushcfunction(L, load_handler);
  lua_pushstring(L, script);
  if (vm_pcall(L, 1, 1) == LUA_OK) return 1;
  char msg[4096];
  tidy_error(vm_error_text(L), msg, sizeof msg);
  log_load_error_once(msg);
  lua_pop(L, 1);
  return 0;
}

int app_state_check(lua_State *L, const struct config *cfg, char *err, size_t errlen) {
  for (int i = 0; i < cfg->nroutes; i++) {
    if (!cfg->routes[i].script) continue;
    lua_pushcfunction(L, load_handler);
    lua_pushstring(L, cfg->routes[i].script);
    if (vm_pcall(L, 1, 1) != LUA_OK) {
      tidy_error(vm_error_text(L), err, errlen);
      lua_pop(L, 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

int app_state_init(struct app_state *d, lua_State *L, const struct config *cfg,
                   char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  d->L = L;
  d->cfg = cfg;
  d->pool = calloc(POOL_MAX, sizeof *d->pool);
  d->pool_refs = calloc(POOL_MAX, sizeof *d->pool_refs);
  if (!d->pool || !d->pool_refs) { snprintf(err, errlen, "out of memory"); return -1; }
  lua_createtable(L, meta_slot(cfg), 0);
  /* string.find as the fresh state has it (before any app code runs) and
   * the route patterns, for match_route */
  int tbl = lua_absindex(L, -1), find_at = find_slot(cfg);
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "find");
  lua_rawseti(L, tbl, find_at);
  lua_pop(L, 1);
  for (int i = 0; i < cfg->nroutes; i++) {
    lua_pushstring(L, cfg->routes[i].url);
    lua_rawseti(L, tbl, find_at + 1 + i);
  }
  req_push_meta(L);
  lua_rawseti(L, tbl, meta_slot(cfg));
  for (int i = 0; i < cfg->nroutes; i++) {
    const struct route *r = &cfg->routes[i];
    if (!r->script) continue;
    /* A module that fails to load is logged now and answers 500 (retrying
     * the load) until it loads: the host keeps serving the other routes. */
    if (load_logged(L, r->script)) lua_rawseti(L, -2, i + 1);
  }
  store_keys(L, lua_absindex(L, -1), cfg->nroutes);
  d->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}

void app_state_free(struct app_state *d) {
  free(d->pool);
  free(d->pool_refs);
  d->pool = NULL;
  d->pool_refs = NULL;
}

/* ---- inside the coroutine --------------------------------------------- */

/* Index of the first route that matches the path and takes the method,
 * or -1; *rest = end of the match, and the route's captures (*ncap of
 * them) are left on the stack.  Routes that match the path but not the
 * method add their methods to allow (*refused = 1).  handlers: index of
 * the handlers table (string.find and the patterns are kept there: no
 * global lookups, and an app that replaces string.find does not change
 * routing). */
static int match_route(lua_State *L, int handlers, const struct config *cfg,
                       const struct http_request *req, size_t *rest, int *ncap,
                       char *allow, size_t allow_cap, int *refused) {
  int find_at = find_slot(cfg), path_pushed = 0;
  const char *path = req->path;
  size_t plen = req->path_len;
  *ncap = 0;
  for (int i = 0; i < cfg->nroutes; i++) {
    const struct route *r = &cfg->routes[i];
    if (r->literal) {   /* no captures: a literal has no '(' */
      if (plen >= r->literal_len && memcmp(path, r->literal, r->literal_len) == 0 &&
          (!r->exact || plen == r->literal_len)) {
        if (!route_allows(r, req->method)) {
          *refused = 1;
          route_allow_add(r, allow, allow_cap);
          continue;
        }
        *rest = r->literal_len;
        if (path_pushed) lua_pop(L, 1);
        return i;
      }
      continue;
    }
    int nc = r->ncaptures;
    if (!path_pushed) { lua_pushlstring(L, path, plen); path_pushed = 1; }
    luaL_checkstack(L, nc + 3, "route captures");
    lua_rawgeti(L, handlers, find_at);
    lua_pushvalue(L, -2);
    lua_rawgeti(L, handlers, find_at + 1 + i);
    lua_call(L, 2, 2 + nc);             /* stack: path start end captures... */
    int hit = !lua_isnil(L, -2 - nc);
    if (hit && !route_allows(r, req->method)) {
      *refused = 1;
      route_allow_add(r, allow, allow_cap);
      hit = 0;
    }
    if (!hit) { lua_pop(L, 2 + nc); continue; }
    *rest = (size_t)lua_tointeger(L, -1 - nc);
    lua_rotate(L, -3 - nc, nc);         /* stack: captures... path start end */
    lua_pop(L, 3);
    *ncap = nc;
    return i;
  }
  if (path_pushed) lua_pop(L, 1);
  return -1;
}

static void add_arg(void *ud, const char *k, size_t kl, const char *v, size_t vl) {
  lua_State *L = ud;
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, kl + 1);
  luaL_pushresultsize(&b, url_decode(p, k, kl, 1));
  p = luaL_buffinitsize(L, &b, vl + 1);
  luaL_pushresultsize(&b, url_decode(p, v, vl, 1));
  lua_rawset(L, -3);
}

/* Sets field k of the table below the value at the top.  Stack: t v -> t */
#define SET_KEY(L, keys, k)            \
  do {                                 \
    lua_rawgeti(L, keys, base + (k) + 1); \
    lua_insert(L, -2);                 \
    lua_rawset(L, -3);                 \
  } while (0)

/* Pushes the `req` table.  keys: index of the handlers table. */
static void push_req(lua_State *L, const struct http_request *r, int keys, int base) {
  lua_createtable(L, 0, 10);
  if (r->method[0] == 'G' && !strcmp(r->method, "GET")) lua_rawgeti(L, keys, base + K_GET + 1);
  else if (r->method[0] == 'P' && !strcmp(r->method, "POST")) lua_rawgeti(L, keys, base + K_POST + 1);
  else lua_pushstring(L, r->method);
  SET_KEY(L, keys, K_METHOD);
  lua_pushlstring(L, r->path, r->path_len);
  SET_KEY(L, keys, K_PATH);
  lua_pushlstring(L, r->query, r->query_len);
  SET_KEY(L, keys, K_QUERY);
  lua_createtable(L, 0, 0);
  url_query_each(r->query, r->query_len, add_arg, L);
  SET_KEY(L, keys, K_ARGS);
  lua_createtable(L, 0, r->nheaders);
  for (int i = 0; i < r->nheaders; i++) {
    const struct http_header *h = &r->headers[i];
    lua_pushlstring(L, h->name, h->name_len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {   /* repeated: join with ", " */
      /* Cookie's pairs are separated by "; " (RFC 6265 5.4; HTTP/2 splits them) */
      if (h->name_len == 6 && !memcmp(h->name, "cookie", 6)) lua_pushliteral(L, "; ");
      else lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    }
    lua_rawset(L, -3);
  }
  SET_KEY(L, keys, K_HEADERS);
  lua_pushlstring(L, r->body, r->body_len);
  SET_KEY(L, keys, K_BODY);
  lua_pushstring(L, r->remote);
  SET_KEY(L, keys, K_REMOTE);
  if (r->http_major == 1 && r->http_minor == 1) lua_rawgeti(L, keys, base + K_V11 + 1);
  else lua_pushfstring(L, "%d.%d", r->http_major, r->http_minor);
  SET_KEY(L, keys, K_VERSION);
  lua_pushlstring(L, r->request_id, INSTANCE_RID_LEN);
  SET_KEY(L, keys, K_RID);
  lua_rawgeti(L, keys, meta_slot_of(base));   /* base = nroutes; form, files, cookies */
  lua_setmetatable(L, -2);
}

/* Normalises the handler's results to exactly: status headers|nil body. */
static int handler_done(lua_State *L, int status, lua_KContext ctx) {
  int n = lua_gettop(L) - 1;   /* slot 1 holds the job */
  if (n < 1 || n > 3)
    return luaL_error(L, "handler returned %d values; expected body, "
                         "(status, body) or (status, headers, body)", n);
  if (n == 1) { lua_pushinteger(L, 200); lua_insert(L, 2); }
  if (n <= 2) { lua_pushnil(L); lua_insert(L, 3); }
  if (!lua_isinteger(L, 2) || lua_tointeger(L, 2) < 200 || lua_tointeger(L, 2) > 599)
    return luaL_error(L, "handler returned status %s; expected an integer from 200 to 599",
                      luaL_tolstring(L, 2, NULL));
  if (!lua_isnil(L, 3) && !lua_istable(L, 3))
    return luaL_error(L, "handler returned headers of type %s; expected a table",
                      luaL_typename(L, 3));
  if (lua_isnil(L, 4)) { lua_pushliteral(L, ""); lua_replace(L, 4); }
  if (!lua_isstring(L, 4))   /* strings and numbers */
    return luaL_error(L, "handler returned a body of type %s; expected a string",
                      luaL_typename(L, 4));
  lua_tolstring(L, 4, NULL);   /* numbers become strings in place */
  return 3;
}

/* The coroutine's body: match, then call the handler. */
static int request_main(lua_State *L) {
  struct run_job *j = lua_touserdata(L, 1);
  const struct http_request *r = j->req;
  const struct config *cfg = j->st->cfg;
  size_t rest = 0;
  char allow[512];   /* filled only for a 405: not cleared per request */
  int ncap = 0, refused = 0;
  allow[0] = '\0';
  lua_rawgeti(L, LUA_REGISTRYINDEX, j->st->handlers_ref);   /* stack: job handlers */
  int i = match_route(L, 2, cfg, r, &rest, &ncap, allow, sizeof allow, &refused);
  j->route = i;
  if (i < 0 && refused) {   /* the path exists, not for this method */
    lua_pushinteger(L, 405);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, allow);
    lua_setfield(L, -2, "Allow");
    lua_pushliteral(L, "method not allowed\n");
    return 3;
  }
  if (i < 0) {
    lua_pushinteger(L, 404);
    lua_pushnil(L);
    lua_pushliteral(L, "not found\n");
    return 3;
  }
  if (cfg->routes[i].static_dir) {   /* answered by serve_static, outside */
    j->static_route = &cfg->routes[i];
    j->static_rest = rest;
    return 0;
  }
  if (ncap > 0) {   /* stack: job handlers captures... -> job handlers captures */
    lua_createtable(L, ncap, 0);
    lua_insert(L, 3);
    for (int c = ncap; c >= 1; c--) lua_rawseti(L, 3, c);
  }
  if (lua_rawgeti(L, 2, i + 1) != LUA_TFUNCTION) {   /* it failed to load */
    lua_pop(L, 1);
    if (!load_logged(L, cfg->routes[i].script)) {   /* it may load now */
      log_msg(LOG_ERROR, "request_id", r->request_id, "handler error for %s %.*s: handler "
              "script '%s' is not loaded (its load error is logged once per instance)",
              r->method, (int)r->path_len, r->path, cfg->routes[i].script);
      j->failed = 1;
      lua_pushinteger(L, 500);
      lua_pushnil(L);
      push_500_body(L, r->request_id);
      return 3;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, i + 1);
  }
  push_req(L, r, 2, cfg->nroutes);   /* stack: job handlers [captures] handler req */
  if (ncap > 0) {   /* a route without captures gets {} from req's __index */
    lua_rawgeti(L, 2, cfg->nroutes + K_CAPTURES + 1);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    lua_remove(L, 3);
  }
  lua_remove(L, 2);
  lua_callk(L, 1, LUA_MULTRET, 0, handler_done);
  return handler_done(L, LUA_OK, 0);
}

/* ---- outside: results and errors -------------------------------------- */

/* Doubles j's header array (the first growth leaves hbuf): 0, or -1. */
static int grow_headers(struct run_job *j, int *cap) {
  struct http_header *h = malloc((size_t)*cap * 2 * sizeof *h);
  if (!h) return -1;
  memcpy(h, j->headers, (size_t)*cap * sizeof *h);
  if (j->headers != j->hbuf) free(j->headers);
  j->headers = h;
  *cap *= 2;
  return 0;
}

/* Adds the header name: value (both on co at -2 and -1) to j->headers,
 * unless invalid (a log line).  1 when it is a Content-Type. */
static int add_header(struct run_job *j, lua_State *co, int *cap) {
  if (j->nheaders == *cap && grow_headers(j, cap) < 0) return 0;
  struct http_header *h = &j->headers[j->nheaders];
  lua_tolstring(co, -1, NULL);   /* number values become strings in place */
  h->name = lua_tolstring(co, -2, &h->name_len);
  h->value = lua_tolstring(co, -1, &h->value_len);
  if (!http_header_valid(h)) {
    log_msg(LOG_WARNING, "request_id", j->req->request_id,
            "invalid response header '%.*s' dropped (names must be tokens; values "
            "must not contain CR, LF or NUL)", (int)h->name_len, h->name);
    return 0;
  }
  int is_type = h->name_len == 12 && !strncasecmp(h->name, "content-type", 12);
  if (is_type && http_status_bodiless(j->status)) return 0;   /* 204, 304: no body */
  j->nheaders++;
  return is_type;
}

/* Collects the handler's headers table into j->headers (skipping invalid
 * ones with a log line): a string value is one line, an array of strings
 * one line each (Set-Cookie).  Runs with the limit off; values stay on co
 * (raw reads only: no metamethod runs here). */
static void collect_headers(struct run_job *j, lua_State *co, int idx) {
  int cap = (int)(sizeof j->hbuf / sizeof j->hbuf[0]), has_type = 0;
  j->headers = j->hbuf;
  j->nheaders = 0;
  if (idx > 0 && lua_istable(co, idx)) {
    lua_pushnil(co);
    while (lua_next(co, idx)) {   /* stack: name value */
      if (lua_type(co, -2) == LUA_TSTRING && lua_type(co, -1) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(co, -1);
        for (lua_Integer k = 1; k <= n; k++) {
          lua_pushvalue(co, -2);   /* stack: name array name */
          lua_rawgeti(co, -2, k);  /* stack: name array name item */
          if (!lua_isstring(co, -1)) {
            log_msg(LOG_WARNING, "request_id", j->req->request_id,
                    "response header '%s' item %lld is not a string: ignored",
                    lua_tostring(co, -2), (long long)k);
          } else {
            has_type |= add_header(j, co, &cap);
          }
          lua_pop(co, 2);
        }
        lua_pop(co, 1);
        continue;
      }
      if (lua_type(co, -2) != LUA_TSTRING || !lua_isstring(co, -1)) {
        log_msg(LOG_WARNING, "request_id", j->req->request_id,
                "response header with a non-string name or value ignored");
        lua_pop(co, 1);
        continue;
      }
      has_type |= add_header(j, co, &cap);
      lua_pop(co, 1);
    }
  }
  if (!has_type && !http_status_bodiless(j->status)) {
    if (j->nheaders == cap && grow_headers(j, &cap) < 0) j->nheaders--;   /* out of memory */
    j->headers[j->nheaders++] = (struct http_header)HTTP_HEADER_TEXT_PLAIN;
  }
}

/* A static_dir route: the file (or 404/405), loaded as serve sends it.
 * An internal request never reaches files: a static route answers it 404. */
static void serve_static(struct run_job *j, const struct route *rt, size_t rest) {
  const struct http_request *r = j->req;
  const char *type;
  size_t len = 0;
  j->status = j->internal ? 404
              : http_static_load(r->method, rt->static_dir, r->path + rest, r->path_len - rest,
                                 &j->file, &len, &type);
  j->headers = j->hbuf;
  j->nheaders = 0;
  if (j->status == 200) {
    j->hbuf[j->nheaders++] = (struct http_header){"Content-Type", 12, type, strlen(type)};
    j->body = j->file;
    j->body_len = len;
    return;
  }
  if (j->status == 405) j->hbuf[j->nheaders++] = (struct http_header){"Allow", 5, "GET, HEAD", 9};
  j->hbuf[j->nheaders++] = (struct http_header)HTTP_HEADER_TEXT_PLAIN;
  j->body = j->status == 405 ? "method not allowed\n" : "not found\n";
  j->body_len = strlen(j->body);
}

/* What the coroutine left (status st, nres results on co) becomes the
 * response: 1 when it is ready, 0 when the handler waits in a host call.
 * Host bookkeeping: run with the memory limit off. */
static int settle(struct run_job *j, int st, int nres) {
  lua_State *co = j->task.vt.co, *L = j->st->L;
  if (st == LUA_YIELD && j->task.waiting) return 0;   /* task_wait yielded */
  int was_on = vm_limit_off(L);
  if (st == LUA_YIELD) {   /* coroutine.yield() at the handler's top level */
    lua_pop(co, nres);
    lua_pushliteral(co, "handler yielded outside a host call (use runtime.sleep to wait, "
                        "or wrap your own coroutines)");
    st = LUA_ERRRUN;
  }
  if (st == LUA_OK && j->task.vt.deadline_hit) {
    /* the handler caught its deadline's error and returned: it still
     * answers 500 (SPEC §6), as when it does not catch it */
    lua_pop(co, nres);
    vm_error_push(co, VM_DEADLINE_CLASS, NULL, "request deadline of %f s exceeded (the "
                  "handler caught the error and returned)", j->task.vt.deadline_s);
    st = LUA_ERRRUN;
  }
  if (st == LUA_OK && j->static_route) {
    serve_static(j, j->static_route, j->static_rest);
  } else if (st == LUA_OK) {
    j->status = (int)lua_tointeger(co, -3);
    j->body = lua_tolstring(co, -1, &j->body_len);
    collect_headers(j, co, lua_absindex(co, -2));
  } else if (st == LUA_ERRRUN && req_form_error_status(co, -1, &j->status)) {
    /* a malformed form body the handler did not catch: the client's fault */
    lua_xmove(co, L, 1);
    const char *msg = vm_error_text(L);   /* its first line: no traceback */
    int ml = (int)strcspn(msg, "\n");
    log_msg(LOG_WARNING, "request_id", j->req->request_id, "bad request body for %s %.*s: %.*s",
            j->req->method, (int)j->req->path_len, j->req->path, ml, msg);
    lua_pushfstring(L, "%d %s\n", j->status, http_reason(j->status));
    lua_pushlstring(L, msg, (size_t)ml);
    lua_pushfstring(L, "\nrequest id: %s\n", j->req->request_id);
    lua_concat(L, 3);
    lua_remove(L, -2);
    lua_xmove(L, co, 1);   /* kept on co until run_finish */
    j->failed = 1;
    j->body = lua_tolstring(co, -1, &j->body_len);
    collect_headers(j, co, 0);
  } else {   /* the handler raised (or ran out of memory or time) */
    lua_xmove(co, L, 1);
    const char *msg = st == LUA_ERRMEM ? "not enough memory (memory_limit reached)"
                                       : vm_error_text(L);
    log_msg(LOG_ERROR, "request_id", j->req->request_id, "handler error for %s %.*s: %s",
            j->req->method, (int)j->req->path_len, j->req->path, msg);
    lua_pop(L, 1);
    j->out_of_memory = st == LUA_ERRMEM;
    j->failed = 1;
    push_500_body(L, j->req->request_id);
    lua_xmove(L, co, 1);   /* kept on co until run_finish */
    j->status = 500;
    j->body = lua_tolstring(co, -1, &j->body_len);
    collect_headers(j, co, 0);
  }
  vm_limit_restore(L, was_on);
  return 1;
}

/* The job's coroutine ran until it answered or waits: the answer goes to
 * j->done. */
static void step(struct run_job *j, int nargs) {
  int nres;
  struct app_state *d = j->st;
  j->task.waiting = 0;
  if (d->busy) d->busy(d->busy_ud, j->req->seq);
  int st = vm_resume(&j->task.vt, nargs, &nres);
  if (d->busy) d->busy(d->busy_ud, 0);
  if (settle(j, st, nres)) j->done(j);
}

/* task.resume: the wait is over (on the loop thread). */
static void on_resume(struct task *t) { step((struct run_job *)t, 0); }

/* A response the host gives itself (a reserved path). */
static void answer(struct run_job *j, int status, const char *body) {
  j->status = status;
  j->hbuf[0] = (struct http_header)HTTP_HEADER_TEXT_PLAIN;
  j->headers = j->hbuf;
  j->nheaders = 1;
  j->body = body;
  j->body_len = strlen(body);
  j->done(j);
}

void run_start(struct app_state *d, struct run_job *j, const struct http_request *req,
               int internal, struct task_loop *tl) {
  task_init(&j->task, tl, on_resume);   /* j->done is the caller's */
  j->st = d;
  j->req = req;
  j->internal = internal;
  j->static_route = NULL;
  j->file = NULL;
  j->headers = NULL;
  j->nheaders = 0;
  j->out_of_memory = 0;
  j->failed = 0;
  j->route = -1;
  j->task.vt.co = NULL;
  int status;
  const char *body;
  if (lifecycle_reserved(req, internal, &status, &body)) {
    answer(j, status, body);
    return;
  }
  lua_State *L = d->L;
  int was_on = vm_limit_off(L);
  d->inflight++;
  lua_State *co;
  if (d->npool > 0) {
    d->npool--;
    co = d->pool[d->npool];
    j->co_ref = d->pool_refs[d->npool];
  } else {
    co = lua_newthread(L);
    j->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  vm_limit_restore(L, was_on);
  j->task.vt.co = co;
  j->task.vt.request_id = req->request_id;
  j->task.vt.deadline_s = d->cfg->request_deadline;
  /* the precise clock: the coarse one lags by up to a tick, which would
   * end a wait at the deadline a few ms before the deadline's time */
  j->task.vt.deadline_ns = clock_now_ns() + (uint64_t)(d->cfg->request_deadline * 1e9);
  vm_arm_hook(co);
  lua_pushcfunction(co, request_main);
  lua_pushlightuserdata(co, j);
  step(j, 1);
}

int run_finish(struct run_job *j) {
  task_end_ops(&j->task);   /* what the request started and left running */
  int exhausted = 0;
  struct app_state *d = j->st;
  lua_State *co = j->task.vt.co;
  free(j->file);
  j->file = NULL;
  if (j->headers && j->headers != j->hbuf) free(j->headers);
  j->headers = NULL;
  if (!co) return 0;   /* a reserved path: no coroutine */
  int was_on = vm_limit_off(d->L);
  /* Only a coroutine that returned normally is reused: one that raised
   * (perhaps from the deadline hook, which leaves hooks disabled in it) or
   * yielded stray is closed and left to the collector. */
  int reusable = lua_status(co) == LUA_OK && !j->failed;
  if (!reusable) lua_resetthread(co);
  lua_settop(co, 0);
  if (j->out_of_memory) {   /* give the heap back before the next request */
    j->out_of_memory = 0;
    lua_gc(d->L, LUA_GCCOLLECT);
    size_t limit = vm_memory_limit(d->L);
    exhausted = limit && vm_memory_used(d->L) > limit / 4 * 3;
  }
  if (reusable && d->npool < POOL_MAX) {
    d->pool[d->npool] = co;
    d->pool_refs[d->npool++] = j->co_ref;
  } else {
    luaL_unref(d->L, LUA_REGISTRYINDEX, j->co_ref);
  }
  j->task.vt.co = NULL;
  d->inflight--;
  vm_limit_restore(d->L, was_on);
  return exhausted;
}
