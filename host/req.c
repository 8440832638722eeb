/* req: req.form, req.files, req.cookies (and an empty req.captures) on
 * first use, through the __index of req's metatable. */
#include "req.h"

#include <string.h>

#include <lauxlib.h>

#include "http/form.h"
#include "http/url.h"
#include "vm/errors.h"
#include "vm/value.h"

/* The string field k of the table at idx (raw), or NULL; it stays on the
 * stack while it is used (one value pushed either way). */
static const char *raw_string(lua_State *L, int idx, const char *k, size_t *len) {
  lua_pushstring(L, k);
  if (lua_rawget(L, idx) != LUA_TSTRING) { *len = 0; return NULL; }
  return lua_tolstring(L, -1, len);
}

/* req.headers[name] as a string, or NULL.  Pushes two values. */
static const char *header(lua_State *L, const char *name, size_t *len) {
  lua_pushliteral(L, "headers");
  if (lua_rawget(L, 1) != LUA_TTABLE) { lua_pushnil(L); *len = 0; return NULL; }
  return raw_string(L, lua_gettop(L), name, len);
}

/* ---- cookies ------------------------------------------------------------ */

static void add_cookie(void *ud, const char *k, size_t kl, const char *v, size_t vl) {
  lua_State *L = ud;
  lua_pushlstring(L, k, kl);
  lua_pushlstring(L, v, vl);
  lua_rawset(L, -3);   /* a repeated name: the last one stays */
}

static void push_cookies(lua_State *L) {
  size_t n;
  const char *s = header(L, "cookie", &n);
  lua_newtable(L);
  if (s) form_cookies_each(s, n, add_cookie, L);
}

/* ---- forms -------------------------------------------------------------- */

struct fill { lua_State *L; int form, files; lua_Integer nfiles; };

/* Decoded urlencoded pair into form (last value wins, as args). */
static void add_field(void *ud, const char *k, size_t kl, const char *v, size_t vl) {
  struct fill *f = ud;
  lua_State *L = f->L;
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, kl + 1);
  luaL_pushresultsize(&b, url_decode(p, k, kl, 1));
  p = luaL_buffinitsize(L, &b, vl + 1);
  luaL_pushresultsize(&b, url_decode(p, v, vl, 1));
  lua_rawset(L, f->form);
}

static void push_param(lua_State *L, const struct form_span *s) {
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, s->len + 1);
  luaL_pushresultsize(&b, form_param_decode(p, s));
}

/* A part: a field of form, or (with a filename) an entry of files. */
static int add_part(void *ud, const struct form_part *part) {
  struct fill *f = ud;
  lua_State *L = f->L;
  luaL_checkstack(L, 6, "form");
  if (!part->filename.p) {
    push_param(L, &part->name);
    lua_pushlstring(L, part->body, part->body_len);
    lua_rawset(L, f->form);
    return 0;
  }
  lua_createtable(L, 0, 4);
  push_param(L, &part->name);
  lua_setfield(L, -2, "field");
  push_param(L, &part->filename);
  lua_setfield(L, -2, "filename");
  if (part->content_type.p) lua_pushlstring(L, part->content_type.p, part->content_type.len);
  else lua_pushliteral(L, "text/plain");   /* RFC 7578 4.4's default */
  lua_setfield(L, -2, "content_type");
  lua_pushlstring(L, part->body, part->body_len);
  lua_setfield(L, -2, "body");
  lua_rawseti(L, f->files, ++f->nfiles);
  return 0;
}

static int form_error(lua_State *L, int code) {
  vm_error_push(L, REQ_FORM_ERROR, NULL, "%s", form_strerror(code));
  lua_pushinteger(L, code == FORM_ETOOMANY ? 413 : 400);
  lua_setfield(L, -2, "status");
  return lua_error(L);
}

/* Sets req.form and req.files (req at 1); raises a FormError. */
static void fill_form(lua_State *L) {
  size_t blen, ctlen;
  const char *body = raw_string(L, 1, "body", &blen);
  const char *ct = header(L, "content-type", &ctlen);
  if (!body) body = "";
  struct fill f = {L, 0, 0, 0};
  lua_newtable(L);
  f.form = lua_gettop(L);
  lua_newtable(L);
  f.files = lua_gettop(L);
  int kind = ct ? form_kind(ct, ctlen) : FORM_OTHER;
  if (kind == FORM_URLENCODED) {
    form_urlencoded_each(body, blen, add_field, &f);
  } else if (kind == FORM_MULTIPART) {
    struct form_span b;
    int rc = form_boundary(ct, ctlen, &b);
    if (rc == 0) rc = form_multipart_parse(body, blen, b.p, b.len, NULL, add_part, &f);
    if (rc < 0) form_error(L, rc);
  }
  lua_pushliteral(L, "files");
  lua_pushvalue(L, f.files);
  lua_rawset(L, 1);
  lua_pushliteral(L, "form");
  lua_pushvalue(L, f.form);
  lua_rawset(L, 1);
}

/* __index(req, key): computes, keeps and returns the lazy fields. */
static int req_index(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  const char *k = lua_tostring(L, 2);
  if (!strcmp(k, "form") || !strcmp(k, "files")) {
    fill_form(L);
    lua_pushvalue(L, 2);
    lua_rawget(L, 1);
    return 1;
  }
  if (!strcmp(k, "cookies")) push_cookies(L);
  else if (!strcmp(k, "captures")) lua_newtable(L);   /* a route without captures */
  else return 0;
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);   /* stack: ... value key value */
  lua_rawset(L, 1);
  return 1;
}

void req_push_meta(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, req_index);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "luahost.req");
  lua_setfield(L, -2, "__name");
  lua_pushboolean(L, 1);   /* req still crosses to queues and threads */
  lua_setfield(L, -2, VALUE_PLAIN_MT);
}

int req_form_error_status(lua_State *L, int idx, int *status) {
  if (!vm_error_is(L, idx, REQ_FORM_ERROR)) return 0;
  idx = lua_absindex(L, idx);
  lua_pushliteral(L, "status");
  lua_rawget(L, idx);
  *status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 400;
  lua_pop(L, 1);
  return 1;
}
