/*
 * apptest: `luahost test --app DIR` sends requests to the app's handlers
 * without a socket: request{method, path, headers, body} -> status,
 * headers, body, through the same routes, limits and error handling as
 * serve (dispatch.c).  Host calls that wait block here.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "bindings/bindings.h"
#include "dispatch.h"
#include "http/static.h"

static const char DISPATCH_KEY[] = "luahost.apptest.dispatch";

static int dispatch_gc(lua_State *L) {
  dispatch_free(lua_touserdata(L, 1));
  return 0;
}

/* The state's dispatcher, made (handlers loaded) on first use. */
static struct dispatch *get_dispatch(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, DISPATCH_KEY) == LUA_TUSERDATA) {
    struct dispatch *d = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return d;
  }
  lua_pop(L, 1);
  const struct config *cfg = vm_of(L)->host_data;
  if (!cfg)
    luaL_error(L, "apptest needs an app: run the tests with luahost test --app APP_DIR");
  struct dispatch *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, dispatch_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  char err[1024];
  if (dispatch_init(d, L, cfg, err, sizeof err) < 0) luaL_error(L, "%s", err);
  lua_setfield(L, LUA_REGISTRYINDEX, DISPATCH_KEY);
  return d;
}

static const char *opt_field(lua_State *L, const char *k, const char *def, size_t *len) {
  int t = lua_getfield(L, 1, k);
  if (t == LUA_TNIL) { lua_pop(L, 1); *len = strlen(def); return def; }
  if (t != LUA_TSTRING) luaL_error(L, "apptest.request: field '%s' must be a string", k);
  return lua_tolstring(L, -1, len);   /* stays on the stack */
}

/* apptest.request{method=, path=, headers=, body=} -> status, headers, body */
static int request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct dispatch *d = get_dispatch(L);
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
  r.remote = "127.0.0.1";
  r.start_ns = clock_now_ns();
  r.seq = instance_request_id(r.request_id);
  /* headers: names lower-cased, kept as strings on the stack; the array
   * is a userdata in slot top + 1, so an error anywhere frees it */
  int nh = 0, top = lua_gettop(L);
  struct http_header *hs = NULL;
  lua_pushnil(L);
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {   /* slot top + 2 */
    int cap = 0;
    lua_pushnil(L);
    while (lua_next(L, top + 2)) {   /* stack: ... k v */
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        return luaL_error(L, "apptest.request: headers must map strings to strings");
      if (nh == cap) {
        cap = cap ? cap * 2 : 8;
        struct http_header *n = lua_newuserdatauv(L, (size_t)cap * sizeof *n, 0);
        if (nh) memcpy(n, hs, (size_t)nh * sizeof *n);
        lua_replace(L, top + 1);
        hs = n;
      }
      luaL_checkstack(L, 4, "apptest.request: too many headers");
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      luaL_Buffer lb;
      char *low = luaL_buffinitsize(L, &lb, kl);
      for (size_t i = 0; i < kl; i++) low[i] = (char)tolower((unsigned char)k[i]);
      luaL_pushresultsize(&lb, kl);   /* stack: ... k v lname (v and lname stay) */
      hs[nh].name = lua_tolstring(L, -1, &hs[nh].name_len);
      hs[nh].value = lua_tolstring(L, -2, &hs[nh].value_len);
      nh++;
      lua_pushvalue(L, -3);        /* the key again, for lua_next */
    }
  }
  r.headers = hs;
  r.nheaders = nh;
  int status;
  const char *body;
  if (dispatch_reserved(&r, 0, &status, &body)) {
    lua_pushinteger(L, status);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "text/plain; charset=utf-8");
    lua_setfield(L, -2, "content-type");
    lua_pushstring(L, body);
    return 3;
  }
  struct dispatch_job j;
  memset(&j, 0, sizeof j);
  dispatch_start(d, &j, &r);   /* no waiter: waits block, so it is done */
  /* The answer is host bookkeeping: built with the memory limit off (the
   * handler may have left the heap full until dispatch_finish). */
  struct vm *vm = vm_of(L);
  int was_on = vm->limit_on;
  vm->limit_on = 0;
  if (j.static_route) {
    char *data;
    size_t len;
    const char *type;
    status = http_static_load(r.method, j.static_route->static_dir, r.path + j.static_rest,
                              r.path_len - j.static_rest, &data, &len, &type);
    dispatch_finish(&j);
    lua_pushinteger(L, status);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "content-type");
    if (data) lua_pushlstring(L, data, len); else lua_pushstring(L, "not found\n");
    free(data);
    vm->limit_on = was_on;
    return 3;
  }
  lua_pushinteger(L, j.status);
  lua_createtable(L, 0, j.nheaders);
  for (int i = 0; i < j.nheaders; i++) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < j.headers[i].name_len; k++) {
      char c = j.headers[i].name[k];
      luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);
    }
    luaL_pushresult(&b);
    lua_pushlstring(L, j.headers[i].value, j.headers[i].value_len);
    lua_rawset(L, -3);
  }
  lua_pushlstring(L, j.body, j.body_len);
  dispatch_finish(&j);
  vm->limit_on = was_on;
  return 3;
}

static const luaL_Reg funcs[] = {{"request", request}, {NULL, NULL}};

int luaopen_apptest(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
