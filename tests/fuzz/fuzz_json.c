/*
 * fuzz_json: the json module, each input in a fresh state (vm_new) with a
 * 1 MiB memory_limit.
 *
 * 1. json.decode(input): succeeds or raises "json: ... at byte N" (or runs
 *    out of memory); never crashes.  When it succeeds, the input was valid
 *    UTF-8 (checked here independently), and decode(encode(v)) equals v,
 *    integer/float subtypes and the sign of -0.0 included.
 * 2. The input read as a little program builds a value: each op is one
 *    byte (op % 10), some take operands:
 *      0 json.null       1 bool (next byte & 1)   2 int (next 8 bytes)
 *      3 small int       4 float (next 8 bytes)   5 string (length byte, bytes)
 *      6 array (n = next byte % 8 elements; empty ones marked by the next bit)
 *      7 object (n = next byte % 8 members: key string, value)
 *      8 nest the next value in (next byte * 5) arrays   9 short decimal
 *    encode(v) must succeed and decode back to an equal value unless the
 *    program made something JSON cannot hold (NaN, inf, invalid UTF-8,
 *    nesting over 1000); then it may raise "json: cannot encode ...".
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings/bindings.h"
#include "vm/state.h"

#define FUZZ_MAX_INPUT 4096
#define FUZZ_NAME "fuzz_json"
#include "fuzz_check.h"

static lua_State *new_state(void) {
  char err[256];
  struct vm_opts o = {VM_BACKEND, VM_EXIT_REFUSE, 1 << 20, {NULL, NULL, NULL}, NULL, NULL};
  lua_State *L = vm_new(&o, err, sizeof err);
  CHECK(L, "vm_new: %s", err);
  return L;
}

/* Independent of the module: is s well-formed UTF-8 (RFC 3629)? */
static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + (size_t)len > n) return 0;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (int k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += (size_t)len;
  }
  return 1;
}

/* Strict deep equality of the values at a and b (metatables ignored). */
static int same(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  int t = lua_type(L, a);
  if (t != lua_type(L, b)) return 0;
  if (t == LUA_TNUMBER) {
    if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
    if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
    double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    return x == y && signbit(x) == signbit(y);
  }
  if (t != LUA_TTABLE) return lua_rawequal(L, a, b);
  luaL_checkstack(L, 4, "same");
  int na = 0, nb = 0, ok = 1;
  lua_pushnil(L);
  while (ok && lua_next(L, a)) {   /* stack: k v */
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);               /* stack: k v bv */
    ok = same(L, -2, -1);
    lua_pop(L, 2);
  }
  if (!ok) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

/* Calls json[fn](value at idx[, opts]) protected; the status, result on top. */
static int call_json(lua_State *L, const char *fn, int idx, int sorted) {
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "json");
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_pushvalue(L, idx);
  if (sorted) {
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "sort_keys");
  }
  return lua_pcall(L, sorted ? 2 : 1, 1, 0);
}

/* A refusal must be the module's own message or a memory error. */
static void check_refusal(lua_State *L, int st, const char *prefix) {
  CHECK(st == LUA_ERRRUN || st == LUA_ERRMEM, "status %d", st);
  const char *msg = lua_tostring(L, -1);
  CHECK(msg, "error object is not a string");
  if (st == LUA_ERRMEM || strcmp(msg, "not enough memory") == 0) return;
  CHECK(strncmp(msg, prefix, strlen(prefix)) == 0, "unexpected message: %s", msg);
}

/* decode(encode(value at idx)) equals it; 1 if checked, 0 if refused. */
static int round_trip(lua_State *L, int idx, int may_refuse) {
  idx = lua_absindex(L, idx);
  int st = call_json(L, "encode", idx, 0);
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    CHECK(may_refuse || st == LUA_ERRMEM || (msg && strcmp(msg, "not enough memory") == 0),
          "encode refused a plain value: %s", msg ? msg : "?");
    check_refusal(L, st, "json: cannot encode ");
    lua_pop(L, 1);
    return 0;
  }
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  CHECK(utf8_valid((const uint8_t *)text, len), "encode wrote invalid UTF-8");
  st = call_json(L, "decode", -1, 0);   /* stack: text value */
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    CHECK(st == LUA_ERRMEM || (msg && strcmp(msg, "not enough memory") == 0),
          "decode of encode's text failed: %s\n  text: %.*s", msg ? msg : "?",
          (int)(len > 2000 ? 2000 : len), text);
    lua_pop(L, 2);
    return 0;
  }
  CHECK(same(L, idx, -1), "decode(encode(v)) differs from v\n  text: %.*s",
        (int)(len > 2000 ? 2000 : len), text);
  /* sort_keys gives one text for equal values */
  if (call_json(L, "encode", idx, 1) == LUA_OK && call_json(L, "encode", -2, 1) == LUA_OK) {
    size_t la, lb;
    const char *a = lua_tolstring(L, -2, &la), *b = lua_tolstring(L, -1, &lb);
    CHECK(la == lb && memcmp(a, b, la) == 0, "sorted texts differ: %.*s / %.*s",
          (int)(la > 500 ? 500 : la), a, (int)(lb > 500 ? 500 : lb), b);
  }
  lua_settop(L, idx);
  return 1;
}

/* ---- the builder ------------------------------------------------------- */

struct prog { const uint8_t *p; size_t n, i; int odd; };

static int next_byte(struct prog *g) { return g->i < g->n ? g->p[g->i++] : 0; }

static uint64_t next_u64(struct prog *g) {
  uint64_t x = 0;
  for (int k = 0; k < 8; k++) x |= (uint64_t)next_byte(g) << (8 * k);
  return x;
}

static void push_string(lua_State *L, struct prog *g) {
  size_t len = (size_t)next_byte(g) % 24;
  if (len > g->n - g->i) len = g->n - g->i;
  if (!utf8_valid(g->p + g->i, len)) g->odd = 1;
  lua_pushlstring(L, (const char *)g->p + g->i, len);
  g->i += len;
}

/* Pushes one value; depth: tables around it. */
static void build(lua_State *L, struct prog *g, int depth) {
  luaL_checkstack(L, 6, "builder");
  switch (next_byte(g) % 10) {
  case 0: lua_pushlightuserdata(L, NULL); break;
  case 1: lua_pushboolean(L, next_byte(g) & 1); break;
  case 2: lua_pushinteger(L, (lua_Integer)next_u64(g)); break;
  case 3: lua_pushinteger(L, (int8_t)next_byte(g)); break;
  case 4: {
    uint64_t x = next_u64(g);
    double d;
    memcpy(&d, &x, sizeof d);
    if (!isfinite(d)) g->odd = 1;
    lua_pushnumber(L, d);
    break;
  }
  case 5: push_string(L, g); break;
  case 6: {
    int n = next_byte(g) % 8;
    if (depth + 1 > 1000) g->odd = 1;
    lua_createtable(L, n, 0);
    if (n == 0 && (next_byte(g) & 1)) {
      lua_getglobal(L, "json");
      lua_getfield(L, -1, "array_mt");
      lua_setmetatable(L, -3);
      lua_pop(L, 1);
    }
    for (int k = 1; k <= n; k++) {
      build(L, g, depth + 1);
      lua_rawseti(L, -2, k);
    }
    break;
  }
  case 7: {
    int n = next_byte(g) % 8;
    if (depth + 1 > 1000) g->odd = 1;
    lua_createtable(L, 0, n);
    for (int k = 0; k < n; k++) {
      push_string(L, g);
      build(L, g, depth + 1);
      lua_rawset(L, -3);
    }
    break;
  }
  case 8: {
    int levels = next_byte(g) * 5;
    if (depth + levels > 1000) g->odd = 1;
    build(L, g, depth + levels);
    for (int k = 0; k < levels; k++) {
      lua_createtable(L, 1, 0);
      lua_rotate(L, -2, 1);
      lua_rawseti(L, -2, 1);
    }
    break;
  }
  default: {
    int64_t m = (int32_t)(uint32_t)next_u64(g);
    lua_pushnumber(L, (double)m / pow(10, next_byte(g) % 12));
    break;
  }
  }
}

static int run_builder(lua_State *L) {
  struct prog *g = lua_touserdata(L, 1);
  lua_settop(L, 0);
  build(L, g, 0);
  return 1;
}

static int open_json(lua_State *L) {
  luaL_requiref(L, "json", luaopen_json, 1);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FUZZ_MAX_INPUT) return -1;
  lua_State *L = new_state();
  lua_pushcfunction(L, open_json);
  CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK, "luaopen_json: %s", lua_tostring(L, -1));

  /* 1: the bytes as a document */
  lua_pushlstring(L, (const char *)data, size);
  int st = call_json(L, "decode", -1, 0);
  if (st == LUA_OK) {
    CHECK(utf8_valid(data, size), "decode accepted invalid UTF-8");
    round_trip(L, -1, 0);
  } else {
    check_refusal(L, st, "json: ");
    const char *msg = lua_tostring(L, -1);
    CHECK(strcmp(msg, "not enough memory") == 0 || strstr(msg, " at byte "),
          "no byte offset: %s", msg);
  }
  lua_settop(L, 0);

  /* 2: the bytes as a program that builds a value */
  struct prog g = {data, size, 0, 0};
  lua_pushcfunction(L, run_builder);
  lua_pushlightuserdata(L, &g);
  st = lua_pcall(L, 1, 1, 0);
  if (st == LUA_OK) round_trip(L, 1, g.odd);
  else CHECK(st == LUA_ERRMEM, "builder: %s", lua_tostring(L, -1));
  vm_close(L);
  return 0;
}
