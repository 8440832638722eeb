/*
 * urlfetch: App Engine's urlfetch for Lua (SPEC §10), over host/net/fetch
 * on the loop the calling task waits on (task_io_loop): a request's
 * fetches run on its worker's loop while the coroutine yields; elsewhere
 * on the thread's own loop while it waits in place.
 *
 * Channels: misuse raises (argument shape: luaL_argerror; a malformed URL
 * or a scheme other than http/https: urlfetch.InvalidURLError; a bad
 * header: urlfetch.Error); outcomes of the network return nil, err with
 * err an object of urlfetch.DownloadError, DeadlineExceededError,
 * ResponseTooLargeError or SSLCertificateError (all urlfetch.Error);
 * bt.cancel gives nil, "cancelled".  Any HTTP status is a result.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "base/size.h"
#include "bindings/bindings.h"
#include "metrics.h"
#include "net/fetch.h"
#include "task.h"
#include "vm/errors.h"
#include "vm/state.h"

#define CLASS_ERROR "urlfetch.Error"
#define RPC_MT "luahost.urlfetch.RPC"

static const char *const classes[] = {
  "DownloadError", "DeadlineExceededError", "ResponseTooLargeError", "SSLCertificateError",
  "InvalidURLError", NULL};

/* A finished fetch, copied out of the net layer's callback into one
 * malloc'd block (its strings follow the struct). */
struct fetched {
  int error;
  const char *message;
  long status;
  struct fetch_header *headers;
  size_t nheaders;
  const char *body; size_t body_len;
  const char *final_url;
  int truncated;
};

/* An RPC: a userdata on the Lua stack of whoever started it.  f is the
 * fetch in flight (NULL once done or abandoned); the wait is registered
 * while a task waits for it.  All on the loop's thread (the state's). */
struct rpc {
  struct task_wait tw;
  struct fetch *f;
  struct task_loop *loop;       /* the loop it runs on */
  struct task_wait *waiter;     /* &tw while a task waits for it */
  struct fetched *done;         /* the copied result, until turned into Lua */
  int done_static;              /* done is the static out-of-memory result */
  int result_ref;               /* registry: the results table {n, ...}; LUA_NOREF */
  int cancelled;                /* its waiter was cancelled: nil, "cancelled" */
  int oneshot;                  /* urlfetch.fetch's: no second wait, nothing kept */
  struct task_op op;            /* tied to the request that started it */
};

/* ---- the net layer's callback ----------------------------------------- */

static size_t add_str(size_t *total, size_t n) { size_t at = *total; *total += n + 1; return at; }

static void on_done(void *ud, const struct fetch_result *res) {
  struct rpc *r = ud;
  metrics_count_any(METRIC_URLFETCH_REQUESTS);   /* /_ah/metrics */
  if (res->error) metrics_count_any(METRIC_URLFETCH_ERRORS);
  size_t total = sizeof(struct fetched) + res->nheaders * sizeof(struct fetch_header);
  size_t msg_at = add_str(&total, res->message ? strlen(res->message) : 0);
  size_t url_at = add_str(&total, res->final_url ? strlen(res->final_url) : 0);
  size_t body_at = add_str(&total, res->body_len);
  size_t hdr_at = total;   /* the headers' names and values follow, in order */
  for (size_t i = 0; i < res->nheaders; i++)
    total += res->headers[i].name_len + res->headers[i].value_len + 2;
  char *block = malloc(total);
  r->f = NULL;
  task_op_done(&r->op);
  if (!block) {
    static const struct fetched oom = {FETCH_ENOMEM, "out of memory for the response", 0,
                                       NULL, 0, "", 0, "", 0};
    r->done = (struct fetched *)&oom;
    r->done_static = 1;
  } else {
    struct fetched *d = (struct fetched *)block;
    d->error = res->error;
    d->status = res->status;
    d->truncated = res->truncated;
    d->headers = (struct fetch_header *)(block + sizeof *d);
    d->nheaders = res->nheaders;
    const char *msg = res->message ? res->message : "";
    const char *url = res->final_url ? res->final_url : "";
    d->message = memcpy(block + msg_at, msg, strlen(msg) + 1);
    d->final_url = memcpy(block + url_at, url, strlen(url) + 1);
    if (res->body_len) memcpy(block + body_at, res->body, res->body_len);
    block[body_at + res->body_len] = '\0';
    d->body = block + body_at;
    d->body_len = res->body_len;
    for (size_t i = 0, at = hdr_at; i < res->nheaders; i++) {
      const struct fetch_header *h = &res->headers[i];
      char *n = block + add_str(&at, h->name_len), *v = block + add_str(&at, h->value_len);
      memcpy(n, h->name, h->name_len);
      n[h->name_len] = '\0';
      memcpy(v, h->value, h->value_len);
      v[h->value_len] = '\0';
      d->headers[i] = (struct fetch_header){n, h->name_len, v, h->value_len};
    }
    r->done = d;
  }
  if (r->waiter) task_complete(r->waiter);
}

static void free_done(struct rpc *r) {
  if (!r->done_static) free(r->done);
  r->done = NULL;
  r->done_static = 0;
}

/* ---- results as Lua values --------------------------------------------- */

/* Pushes nil, an instance of urlfetch.<cls>. */
static int push_error(lua_State *L, const char *cls, const char *msg) {
  char name[64];
  snprintf(name, sizeof name, "urlfetch.%s", cls);
  lua_pushnil(L);
  vm_error_push(L, name, CLASS_ERROR, "%s", msg);
  return 2;
}

/* Response headers: lower-case names; repeated ones joined with ", ",
 * except set-cookie, an array.  Stack: -> headers */
static void push_headers(lua_State *L, const struct fetched *d) {
  lua_createtable(L, 0, (int)d->nheaders);
  for (size_t i = 0; i < d->nheaders; i++) {
    const struct fetch_header *h = &d->headers[i];
    int cookie = h->name_len == 10 && !memcmp(h->name, "set-cookie", 10);
    lua_pushlstring(L, h->name, h->name_len);
    lua_pushvalue(L, -1);
    int t = lua_rawget(L, -3);                      /* stack: hs name old */
    if (cookie) {
      if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, -5);                          /* hs[name] = {} */
      }
      lua_pushlstring(L, h->value, h->value_len);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 2);
      continue;
    }
    if (t == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);                             /* stack: hs name old..", "..value */
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    }
    lua_rawset(L, -3);
  }
}

/* The outcome as Lua values: res | nil, err.  Stack: -> results */
static int push_outcome(lua_State *L, const struct fetched *d) {
  switch (d->error) {
  case FETCH_OK: break;
  case FETCH_ETIMEDOUT: return push_error(L, "DeadlineExceededError", d->message);
  case FETCH_ETOOLARGE: return push_error(L, "ResponseTooLargeError", d->message);
  case FETCH_ESSLCERT: return push_error(L, "SSLCertificateError", d->message);
  case FETCH_ENOMEM: return luaL_error(L, "not enough memory for the response (%s)", d->message);
  case FETCH_ECANCELLED: lua_pushnil(L); lua_pushliteral(L, "cancelled"); return 2;
  default: return push_error(L, "DownloadError", d->message);
  }
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, d->status);
  lua_setfield(L, -2, "status");
  push_headers(L, d);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, d->body, d->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, d->final_url);
  lua_setfield(L, -2, "final_url");
  lua_pushboolean(L, d->truncated);
  lua_setfield(L, -2, "truncated");
  return 1;
}

/* The RPC's results, made once and kept for a second wait (urlfetch.fetch's
 * RPC has none: its results are pushed as they are). */
static int rpc_results(lua_State *L, struct rpc *r) {
  if (r->oneshot && r->result_ref == LUA_NOREF) {
    int n;
    if (r->cancelled) { lua_pushnil(L); lua_pushliteral(L, "cancelled"); n = 2; }
    else n = push_outcome(L, r->done);
    free_done(r);
    return n;
  }
  if (r->result_ref == LUA_NOREF) {
    int base = lua_gettop(L);
    int n;
    if (r->cancelled) { lua_pushnil(L); lua_pushliteral(L, "cancelled"); n = 2; }
    else n = push_outcome(L, r->done);
    free_done(r);
    lua_createtable(L, n, 1);
    lua_insert(L, -n - 1);                  /* stack: t results... */
    for (int i = n; i >= 1; i--) lua_rawseti(L, -i - 1, i);   /* pops results[i] */
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    r->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->result_ref);
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -n - 1);
  return n;
}

/* ---- the wait ------------------------------------------------------------ */

static int rpc_start(struct task_wait *w) {
  struct rpc *r = (struct rpc *)w;
  if (!r->f) return 1;   /* already done */
  r->waiter = w;
  return 0;
}

/* The waiter is gone (deadline, cancel): the fetch is abandoned and freed. */
/* task_op.cancel: the request that started it ended first. */
static void rpc_request_ended(struct task_op *op) {
  struct rpc *r = (struct rpc *)((char *)op - offsetof(struct rpc, op));
  if (r->f) fetch_cancel(r->f);
  r->f = NULL;
  r->cancelled = 1;
}

static int rpc_abandon(struct task_wait *w, int why) {
  struct rpc *r = (struct rpc *)w;
  r->waiter = NULL;
  if (r->f) {
    fetch_cancel(r->f);
    r->f = NULL;
    r->cancelled = 1;
  }
  task_op_done(&r->op);
  return 1;
}

static int rpc_result(lua_State *L, struct task_wait *w) {
  struct rpc *r = (struct rpc *)w;
  r->waiter = NULL;
  if (w->end == TASK_CANCELLED) r->cancelled = 1;
  return rpc_results(L, r);
}

static int rpc_gc(lua_State *L) {
  struct rpc *r = luaL_checkudata(L, 1, RPC_MT);
  if (r->f) fetch_cancel(r->f);
  r->f = NULL;
  task_op_done(&r->op);
  free_done(r);
  if (r->result_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->result_ref);
  r->result_ref = LUA_NOREF;
  return 0;
}

/* rpc:wait() -> res | nil, err: the same results on every call. */
static int rpc_wait(lua_State *L) {
  struct rpc *r = luaL_checkudata(L, 1, RPC_MT);
  lua_settop(L, 1);
  if (r->result_ref != LUA_NOREF || (!r->f && !r->waiter)) return rpc_results(L, r);
  if (task_io_loop(L) != r->loop) {
    vm_error_push(L, CLASS_ERROR, NULL, "rpc:wait() must be called where urlfetch.start "
                  "was (in the same request, or the same thread and coroutine kind)");
    return lua_error(L);
  }
  if (r->waiter) {
    vm_error_push(L, CLASS_ERROR, NULL, "rpc:wait(): another wait for this RPC is in progress");
    return lua_error(L);
  }
  return task_wait(L, &r->tw, TASK_NO_TIMEOUT);
}

/* ---- starting ----------------------------------------------------------- */

static void *make_client(uv_loop_t *uv) { return fetch_client_new(uv); }
static void close_client(void *c) { fetch_client_close(c, NULL, NULL); }

static int opt_bool(lua_State *L, int opts, const char *k, int def) {
  if (!opts || lua_getfield(L, opts, k) == LUA_TNIL) {
    if (opts) lua_pop(L, 1);
    return def;
  }
  if (!lua_isboolean(L, -1))
    luaL_error(L, "urlfetch: option '%s' must be a boolean, got %s", k, luaL_typename(L, -1));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The option k's value pushed, checked to be of type t (nil: absent). */
static int opt_get(lua_State *L, int opts, const char *k, int t, const char *what) {
  int got = lua_getfield(L, opts, k);
  if (got != LUA_TNIL && got != t)
    luaL_error(L, "urlfetch: option '%s' must be %s, got %s", k, what, luaL_typename(L, -1));
  return got != LUA_TNIL;
}

/* Raises for an option fetch does not know (a typo would go unnoticed). */
static void check_option_names(lua_State *L, int opts) {
  static const char *const known[] = {"method", "headers", "body", "deadline",
    "follow_redirects", "validate_certificate", "max_response_size", "allow_truncated", NULL};
  lua_pushnil(L);
  while (lua_next(L, opts)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; known[i] && !ok; i++) ok = !strcmp(lua_tostring(L, -1), known[i]);
    if (!ok)
      luaL_error(L, "urlfetch: unknown option '%s' (expected method, headers, body, deadline, "
                 "follow_redirects, validate_certificate, max_response_size or "
                 "allow_truncated)", luaL_tolstring(L, -1, NULL));
  }
}

/* Raises urlfetch.<cls> (misuse). */
static int raise_misuse(lua_State *L, const char *cls, const char *msg) {
  vm_error_push(L, cls, strcmp(cls, CLASS_ERROR) ? CLASS_ERROR : NULL, "%s", msg);
  return lua_error(L);
}

/* Reads url and opts (stack 1, 2) into rq; the strings stay on the stack. */
static void read_request(lua_State *L, struct fetch_request *rq, struct fetch_header **hs) {
  fetch_request_init(rq);
  rq->url = luaL_checkstring(L, 1);
  int opts = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    opts = 2;
  }
  lua_settop(L, 2);
  if (opts) {
    check_option_names(L, opts);
    if (opt_get(L, opts, "method", LUA_TSTRING, "a string")) rq->method = lua_tostring(L, -1);
    if (opt_get(L, opts, "body", LUA_TSTRING, "a string"))
      rq->body = lua_tolstring(L, -1, &rq->body_len);
    if (opt_get(L, opts, "deadline", LUA_TNUMBER, "a number of seconds")) {
      lua_Number s = lua_tonumber(L, -1);
      if (!(s > 0)) luaL_error(L, "urlfetch: option 'deadline' must be a number of seconds > 0");
      rq->timeout_ms = s > 86400 * 365 ? 86400L * 365 * 1000 : (long)(s * 1000 + 0.5);
      if (rq->timeout_ms < 1) rq->timeout_ms = 1;
    }
    int t = lua_getfield(L, opts, "max_response_size");
    if (t == LUA_TNUMBER) {
      int whole;
      lua_Integer n = lua_tointegerx(L, -1, &whole);
      if (!whole) luaL_error(L, "urlfetch: option 'max_response_size' must be a whole number of bytes");
      if (n < 0) luaL_error(L, "urlfetch: option 'max_response_size' must be >= 0");
      rq->max_response_size = (size_t)n;
    } else if (t == LUA_TSTRING) {
      if (size_parse(lua_tostring(L, -1), &rq->max_response_size) < 0)
        luaL_error(L, "urlfetch: option 'max_response_size': expected a size such as "
                      "\"32m\", got '%s'", lua_tostring(L, -1));
    } else if (t != LUA_TNIL) {
      luaL_error(L, "urlfetch: option 'max_response_size' must be a number or a size string");
    }
    rq->follow_redirects = opt_bool(L, opts, "follow_redirects", 1);
    rq->validate_certificate = opt_bool(L, opts, "validate_certificate", 1);
    rq->allow_truncated = opt_bool(L, opts, "allow_truncated", 0);
    if (lua_getfield(L, opts, "headers") == LUA_TTABLE) {
      /* stack: ... headers array holder; the holder keeps every name and
       * value string alive until fetch_start has copied them */
      int ht = lua_gettop(L);
      size_t n = 0, cap = 8;
      *hs = lua_newuserdatauv(L, cap * sizeof **hs, 0);
      lua_newtable(L);
      lua_pushnil(L);
      while (lua_next(L, ht)) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
          luaL_error(L, "urlfetch: headers must map strings to strings");
        if (n == cap) {
          struct fetch_header *nw = lua_newuserdatauv(L, cap * 2 * sizeof *nw, 0);
          memcpy(nw, *hs, n * sizeof *nw);
          lua_replace(L, ht + 1);
          *hs = nw;
          cap *= 2;
        }
        struct fetch_header *h = &(*hs)[n++];
        h->name = lua_tolstring(L, -2, &h->name_len);   /* a string key: no conversion */
        h->value = luaL_tolstring(L, -1, &h->value_len);
        lua_rawseti(L, ht + 2, (lua_Integer)n);         /* the value string, kept */
        lua_pop(L, 1);
      }
      rq->headers = *hs;
      rq->nheaders = n;
    } else if (!lua_isnil(L, -1)) {
      luaL_error(L, "urlfetch: option 'headers' must be a table");
    }
  }
  /* response bytes count against the calling state's memory_limit */
  rq->alloc = vm_charged_allocf(L, &rq->alloc_ud);
  /* never past the request's own deadline */
  const struct vm_task *vt = vm_current(L);
  if (vt->deadline_ns) {
    uint64_t now = clock_now_ns();
    long left = vt->deadline_ns > now ? (long)((vt->deadline_ns - now) / 1000000) : 0;
    if (left < 1) left = 1;
    if (!rq->timeout_ms || left < rq->timeout_ms) rq->timeout_ms = left;
  }
}

/* Starts the fetch; pushes the RPC userdata. */
static struct rpc *start_rpc(lua_State *L) {
  struct fetch_request rq;
  struct fetch_header *hs = NULL;
  read_request(L, &rq, &hs);
  struct task_loop *tl = task_io_loop(L);
  struct fetch_client *c = tl ? task_loop_client(tl, TASK_CLIENT_FETCH, make_client,
                                                 close_client) : NULL;
  if (!c) luaL_error(L, "urlfetch: cannot make a client for this loop (out of memory)");
  struct rpc *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  r->result_ref = LUA_NOREF;
  r->loop = tl;
  r->tw.start = rpc_start;
  r->tw.abandon = rpc_abandon;
  r->tw.result = rpc_result;
  luaL_setmetatable(L, RPC_MT);
  r->op.cancel = rpc_request_ended;
  list_node_init(&r->op.node);
  int rc = fetch_start(c, &rq, on_done, r, &r->f);
  if (rc == 0) task_op_add(L, &r->op);
  if (rc == FETCH_EINVAL_URL)
    raise_misuse(L, "urlfetch.InvalidURLError",
          lua_pushfstring(L, "invalid URL '%s' (expected an http:// or https:// URL)", rq.url));
  if (rc == FETCH_EINVAL_HEADER)
    raise_misuse(L, CLASS_ERROR, "invalid request header: names must be tokens; values must not "
                          "contain CR, LF or NUL");
  if (rc < 0) raise_misuse(L, CLASS_ERROR, fetch_strerror(rc));
  return r;
}

/* urlfetch.fetch(url[, opts]) -> res | nil, err */
static int urlfetch_fetch(lua_State *L) {
  struct rpc *r = start_rpc(L);
  r->oneshot = 1;
  return task_wait(L, &r->tw, TASK_NO_TIMEOUT);
}

/* urlfetch.start(url[, opts]) -> rpc (started at once) */
static int urlfetch_start(lua_State *L) {
  start_rpc(L);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"fetch", urlfetch_fetch}, {"start", urlfetch_start}, {NULL, NULL}};

int luaopen_urlfetch(lua_State *L) {
  if (luaL_newmetatable(L, RPC_MT)) {
    lua_pushcfunction(L, rpc_gc);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, rpc_wait);
    lua_setfield(L, -2, "wait");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  vm_error_class(L, CLASS_ERROR, NULL);
  lua_setfield(L, -2, "Error");
  for (int i = 0; classes[i]; i++) {
    char name[64];
    snprintf(name, sizeof name, "urlfetch.%s", classes[i]);
    vm_error_class(L, name, CLASS_ERROR);
    lua_setfield(L, -2, classes[i]);
  }
  return 1;
}
