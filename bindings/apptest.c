/*
 * apptest: `luahost test --app DIR` sends requests to the app's handlers
 * without a socket: request{method, path, headers, body} -> status,
 * headers, body, through the one request runner (dispatch.c) that serve
 * uses, on a loop of apptest's own: the same routes, reserved paths,
 * static files, limits, waits and error handling.  start() runs the
 * app's /_ah/start as the host does.
 *
 * Channels: misuse (no app, a bad request table) raises; the app's
 * answers are results.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "base/clock.h"
#include "base/instance.h"
#include "bindings/bindings.h"
#include "dispatch.h"
#include "http/response.h"
#include "lifecycle.h"
#include "task.h"

static const char RUNNER_KEY[] = "luahost.apptest.runner";

/* apptest's app state (handlers loaded in the test's own state) and the
 * loop its requests run on.  A userdata in the registry; __gc closes it. */
struct runner {
  struct app_state st;
  uv_loop_t uv;
  struct task_loop tl;
  int ready;
};

static int runner_gc(lua_State *L) {
  struct runner *rn = lua_touserdata(L, 1);
  if (!rn->ready) return 0;
  rn->ready = 0;
  app_state_free(&rn->st);
  task_loop_close(&rn->tl);
  uv_run(&rn->uv, UV_RUN_DEFAULT);
  uv_loop_close(&rn->uv);
  return 0;
}

/* The state's runner, made (handlers loaded) on first use. */
static struct runner *get_runner(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, RUNNER_KEY) == LUA_TUSERDATA) {
    struct runner *rn = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rn;
  }
  lua_pop(L, 1);
  const struct config *cfg = vm_host_data(L);
  if (!cfg)
    luaL_error(L, "apptest needs an app: run the tests with luahost test --app APP_DIR");
  struct runner *rn = lua_newuserdatauv(L, sizeof *rn, 0);
  memset(rn, 0, sizeof *rn);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, runner_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  char err[1024];
  if (uv_loop_init(&rn->uv) < 0) luaL_error(L, "apptest: cannot make a loop");
  if (task_loop_init(&rn->tl, &rn->uv) < 0) {
    uv_loop_close(&rn->uv);
    luaL_error(L, "apptest: cannot make a loop");
  }
  if (app_state_init(&rn->st, L, cfg, err, sizeof err) < 0) {
    task_loop_close(&rn->tl);
    uv_run(&rn->uv, UV_RUN_DEFAULT);
    uv_loop_close(&rn->uv);
    luaL_error(L, "%s", err);
  }
  rn->ready = 1;
  lua_setfield(L, LUA_REGISTRYINDEX, RUNNER_KEY);
  return rn;
}

static const char *opt_field(lua_State *L, const char *k, const char *def, size_t *len) {
  int t = lua_getfield(L, 1, k);
  if (t == LUA_TNIL) { lua_pop(L, 1); *len = strlen(def); return def; }
  if (t != LUA_TSTRING) luaL_error(L, "apptest.request: field '%s' must be a string", k);
  return lua_tolstring(L, -1, len);   /* stays on the stack */
}

/* The request's headers from the table at idx, names lower-cased as the
 * HTTP layer gives them, kept as strings on the stack; the array is a
 * userdata in slot `slot`, so an error anywhere frees it. */
static struct http_header *collect_headers(lua_State *L, int idx, int slot, int *n) {
  int nh = 0, cap = 0;
  struct http_header *hs = NULL;
  lua_pushnil(L);
  while (lua_next(L, idx)) {   /* stack: ... k v */
    if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
      luaL_error(L, "apptest.request: headers must map strings to strings");
    if (nh == cap) {
      cap = cap ? cap * 2 : 8;
      struct http_header *nw = lua_newuserdatauv(L, (size_t)cap * sizeof *nw, 0);
      if (nh) memcpy(nw, hs, (size_t)nh * sizeof *nw);
      lua_replace(L, slot);
      hs = nw;
    }
    luaL_checkstack(L, 4, "apptest.request: too many headers");
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    luaL_Buffer lb;
    char *low = luaL_buffinitsize(L, &lb, kl);
    http_lower(low, k, kl);
    luaL_pushresultsize(&lb, kl);   /* stack: ... k v lname (v and lname stay) */
    hs[nh].name = lua_tolstring(L, -1, &hs[nh].name_len);
    hs[nh].value = lua_tolstring(L, -2, &hs[nh].value_len);
    nh++;
    lua_pushvalue(L, -3);        /* the key again, for lua_next */
  }
  *n = nh;
  return hs;
}

/* A job apptest drives to its end on its own loop. */
struct test_job {
  struct run_job rj;
  lua_State *L;
  int answered, released;
};

static void on_released(struct task *t) { ((struct test_job *)t)->released = 1; }

/* Into the headers table on top: what serve writes itself, x-request-id
 * and (unless the status is bodiless) content-length. */
static void host_headers(lua_State *L, const char *request_id, int status, size_t len) {
  lua_pushstring(L, request_id);
  lua_setfield(L, -2, "x-request-id");
  if (!http_status_bodiless(status)) {
    lua_pushfstring(L, "%I", (lua_Integer)len);
    lua_setfield(L, -2, "content-length");
  }
}

/* What serve answers a request the HTTP layer refuses before dispatch
 * (header block over 64 KiB: 431; body over max_body: 413). */
static int refuse(lua_State *L, const struct http_request *r, int status) {
  const char *msg = http_refusal_text(status);
  lua_pushinteger(L, status);
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, HTTP_TEXT_PLAIN);
  lua_setfield(L, -2, "content-type");
  host_headers(L, r->request_id, status, strlen(msg));
  lua_pushstring(L, msg);
  return 3;
}

/* run_job.done: the answer as Lua values (host bookkeeping: the limit is
 * off, the handler may have left the heap full until run_finish). */
static void on_done(struct run_job *rj) {
  struct test_job *tj = (struct test_job *)rj;
  lua_State *L = tj->L;
  int was_on = vm_limit_off(L);
  lua_pushinteger(L, rj->status);
  lua_createtable(L, 0, rj->nheaders + 2);
  for (int i = 0; i < rj->nheaders; i++) {   /* a repeated name: an array, in order */
    if (http_host_owned(&rj->headers[i])) continue;   /* as serve: ours replace them */
    luaL_Buffer b;
    char *low = luaL_buffinitsize(L, &b, rj->headers[i].name_len);
    http_lower(low, rj->headers[i].name, rj->headers[i].name_len);
    luaL_pushresultsize(&b, rj->headers[i].name_len);
    lua_pushvalue(L, -1);
    int had = lua_rawget(L, -3);   /* stack: t name old */
    lua_pushlstring(L, rj->headers[i].value, rj->headers[i].value_len);
    if (had == LUA_TSTRING) {
      lua_createtable(L, 2, 0);
      lua_rotate(L, -3, 1);        /* stack: t name arr old value */
      lua_rawseti(L, -3, 2);
      lua_rawseti(L, -2, 1);
    } else if (had == LUA_TTABLE) {
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    } else {
      lua_remove(L, -2);
    }
    lua_rawset(L, -3);
  }
  host_headers(L, rj->req->request_id, rj->status, rj->body_len);
  /* as on the wire: HEAD and 1xx/204/304 answers carry no body */
  if (rj->req->is_head || http_status_bodiless(rj->status)) lua_pushliteral(L, "");
  else lua_pushlstring(L, rj->body, rj->body_len);
  run_finish(rj);
  vm_limit_restore(L, was_on);
  tj->answered = 1;
  task_release(&rj->task, on_released);
}

/* apptest.request{method=, path=, headers=, body=} -> status, headers, body */
static int request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct runner *rn = get_runner(L);
  struct http_request r;
  size_t mlen;
  memset(&r, 0, sizeof r);
  r.method = opt_field(L, "method", "GET", &mlen);
  r.target = opt_field(L, "path", "/", &r.target_len);
  r.body = opt_field(L, "body", "", &r.body_len);
  if (r.target_len == 0 || r.target[0] != '/')
    return luaL_error(L, "apptest.request: path must start with '/'");
  const char *q = memchr(r.target, '?', r.target_len);
  r.path = r.target;
  r.path_len = q ? (size_t)(q - r.target) : r.target_len;
  r.query = q ? q + 1 : "";
  r.query_len = q ? r.target_len - r.path_len - 1 : 0;
  r.http_major = r.http_minor = 1;
  r.is_head = !strcmp(r.method, "HEAD");
  r.remote = "127.0.0.1";
  r.start_ns = clock_now_ns();
  r.seq = instance_request_id(r.request_id);
  int top = lua_gettop(L);
  lua_pushnil(L);   /* slot top + 1: the header array */
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE)   /* slot top + 2 */
    r.headers = collect_headers(L, top + 2, top + 1, &r.nheaders);
  /* what the HTTP layer refuses before a request is dispatched: a method
   * it does not parse, a target with spaces or control bytes, an invalid
   * header (400); a header block over 64 KiB (431); a body over max_body */
  int bad = !http_method_known(r.method);
  for (size_t i = 0; i < r.target_len && !bad; i++)
    bad = (unsigned char)r.target[i] <= ' ' || r.target[i] == 0x7f;
  size_t head = mlen + r.target_len + 12;   /* "M T HTTP/1.1\r\n" */
  for (int i = 0; i < r.nheaders; i++) {
    bad = bad || !http_header_valid(&r.headers[i]);
    head += r.headers[i].name_len + r.headers[i].value_len + 4;
  }
  if (bad) return refuse(L, &r, 400);
  if (head > HTTP_MAX_HEADER_BLOCK) return refuse(L, &r, 431);
  if (r.body_len > rn->st.cfg->max_body) return refuse(L, &r, 413);
  int base = lua_gettop(L);
  struct test_job tj;
  memset(&tj, 0, sizeof tj);
  tj.L = L;
  tj.rj.done = on_done;
  run_start(&rn->st, &tj.rj, &r, 0, &rn->tl);
  while (!tj.released) uv_run(&rn->uv, UV_RUN_ONCE);
  return lua_gettop(L) - base;   /* status, headers, body */
}

/* apptest.start() -> status: the app's /_ah/start, as a backend host runs
 * it before it accepts traffic (2xx or 404 is success). */
static int start(lua_State *L) {
  struct runner *rn = get_runner(L);
  int status = lifecycle_request(&rn->st, &rn->tl, "/_ah/start");
  lua_pushinteger(L, status);
  lua_pushboolean(L, lifecycle_start_ok(status));
  return 2;
}

static const luaL_Reg funcs[] = {{"request", request}, {"start", start}, {NULL, NULL}};

int luaopen_apptest(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
