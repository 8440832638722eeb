/*
 * fuzz_values: value_encode / value_decode.
 *
 * 1. The input is a little stack program that builds a value in state A
 *    (made with vm_new).  Each op is one byte (op % 16), some take operands:
 *      0 nil            1 bool (next byte & 1)   2 int (next 8 bytes)
 *      3 small int (next byte, signed)           4 float (next 8 bytes)
 *      5 string (length byte, then bytes)        6 new table (joins the pool)
 *      7 set: t[k] = v (pops k, v; t below them; key must be a scalar)
 *      8 append: t[#t + 1] = v (pops v)          9 pool ref (next byte)
 *      10 dup           11 pop                   12 nest: t[next byte] = new
 *                                                   table, pushed (deep nesting)
 *      13 Lua function (no upvalue but _ENV)     14 an unencodable value (next
 *                                                   byte: C function, table with
 *                                                   a metatable, coroutine, userdata)
 *      15 swap
 *    The bottom of the stack is encoded (value_encode), decoded in state B
 *    and both sides are rendered canonically (keys sorted, tables numbered
 *    in visiting order, so shared references and cycles show); the texts
 *    must match.  Whether encode must refuse is worked out beforehand by a
 *    reference walk in Lua (EXPECT below) from the contract (SPEC §5: a C
 *    function, a coroutine, a userdata that is no host handle, a table with
 *    a metatable reachable from the value, or tables nested deeper than
 *    VALUE_MAX_DEPTH): encode refuses exactly then, with the message of
 *    the first such place in traversal order, and leaves the stack and
 *    the output as they were; it accepts everything else.
 * 2. The raw input is given to value_decode(B, v, 0): -1 with nothing
 *    pushed, or 0 with one value pushed; never a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "vm/state.h"
#include "vm/value.h"

#define FUZZ_MAX_INPUT 4096
#define MAX_STACK 400

#define FUZZ_NAME "fuzz_values"
#include "fuzz_check.h"
#include "../c/value_describe.h"

/* describe(v), from value_describe.h (the builder makes keys scalars). */
static const char DESCRIBE[] = VALUE_DESCRIBE_LUA;

/* expect_refusal(v, max_depth): nil when v can cross states, else the
 * words the refusal message must contain.  Walks v depth first in `next`
 * order (the order lua_next gives the encoder), keys before values; a
 * table or function met again is a reference (no new nesting level). */
static const char EXPECT[] =
  "function expect_refusal(v, max_depth)\n"
  "  local seen, depth = {}, 0\n"
  "  local function walk(x)\n"
  "    local t = type(x)\n"
  "    if t == 'table' then\n"
  "      if debug.getmetatable(x) ~= nil then return 'a table with a metatable' end\n"
  "      if seen[x] then return nil end\n"
  "      seen[x] = true\n"
  "      if depth >= max_depth then return 'nested deeper than' end\n"
  "      depth = depth + 1\n"
  "      for k, val in next, x do\n"
  "        local r = walk(k) or walk(val)\n"
  "        if r then return r end\n"
  "      end\n"
  "      depth = depth - 1\n"
  "    elseif t == 'function' then\n"
  "      if debug.getinfo(x, 'S').what == 'C' then return 'a C function' end\n"
  "      for i = 1, math.huge do\n"
  "        local name = debug.getupvalue(x, i)\n"
  "        if name == nil then break end\n"
  "        if i ~= 1 or name ~= '_ENV' then return 'upvalue' end\n"
  "      end\n"
  "    elseif t == 'thread' then return 'a thread'\n"
  "    elseif t == 'userdata' then return 'a userdata'\n"
  "    end\n"
  "    return nil\n"
  "  end\n"
  "  return walk(v)\n"
  "end\n";

static lua_State *new_state(void) {
  char err[256];
  struct vm_opts o = {VM_BACKEND, VM_EXIT_REFUSE, 0, {NULL, NULL, NULL}, NULL};
  lua_State *L = vm_new(&o, err, sizeof err);
  CHECK(L, "vm_new: %s", err);
  CHECK(luaL_loadstring(L, DESCRIBE) == LUA_OK && lua_pcall(L, 0, 0, 0) == LUA_OK,
        "describe: %s", lua_tostring(L, -1));
  CHECK(luaL_loadstring(L, EXPECT) == LUA_OK && lua_pcall(L, 0, 0, 0) == LUA_OK,
        "expect_refusal: %s", lua_tostring(L, -1));
  return L;
}

/* ---- the builder ------------------------------------------------------- */

struct prog { const uint8_t *p; size_t n, i; };

static int next_byte(struct prog *g) { return g->i < g->n ? g->p[g->i++] : 0; }

static uint64_t next_u64(struct prog *g) {
  uint64_t x = 0;
  for (int k = 0; k < 8; k++) x |= (uint64_t)next_byte(g) << (8 * k);
  return x;
}

static int is_key(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER) {
    lua_Number f = lua_tonumber(L, idx);
    return f == f;   /* no NaN */
  }
  return t == LUA_TBOOLEAN || t == LUA_TSTRING;
}

static int noop(lua_State *L) { return 0; }

/* Runs the program (protected: lua_pushcfunction'd).  Stack on return: the
 * value built (nil for an empty stack). */
static int build(lua_State *L) {
  struct prog *g = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_newtable(L);                    /* 1: the pool of tables */
  int npool = 0;
  const int base = 1;
  while (g->i < g->n) {
    int op = next_byte(g) % 16, top = lua_gettop(L) - base;
    if (top >= MAX_STACK && op != 7 && op != 8 && op != 11) continue;
    luaL_checkstack(L, 4, "builder");
    switch (op) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, next_byte(g) & 1); break;
    case 2: lua_pushinteger(L, (lua_Integer)next_u64(g)); break;
    case 3: lua_pushinteger(L, (int8_t)next_byte(g)); break;
    case 4: {
      uint64_t x = next_u64(g);
      double d;
      memcpy(&d, &x, sizeof d);
      lua_pushnumber(L, d);
      break;
    }
    case 5: {
      size_t len = (size_t)next_byte(g);
      if (len > g->n - g->i) len = g->n - g->i;
      lua_pushlstring(L, (const char *)g->p + g->i, len);
      g->i += len;
      break;
    }
    case 6:
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawseti(L, base, ++npool);
      break;
    case 7:   /* stack: t k v */
      if (top >= 3 && lua_istable(L, -3) && is_key(L, -2)) {
        if (lua_isnil(L, -1)) lua_pop(L, 2);   /* t[k] = nil: not a change of shape */
        else lua_rawset(L, -3);
      }
      break;
    case 8:   /* stack: t v */
      if (top >= 2 && lua_istable(L, -2)) {
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      }
      break;
    case 9:
      if (npool) lua_rawgeti(L, base, 1 + next_byte(g) % npool);
      else lua_pushnil(L);
      break;
    case 10: if (top >= 1) lua_pushvalue(L, -1); break;
    case 11: if (top >= 1) lua_pop(L, 1); break;
    case 12:
      if (top >= 1 && lua_istable(L, -1)) {
        int k = next_byte(g);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, base, ++npool);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, k);    /* stack: t new */
      }
      break;
    case 13: {
      static const char *const src[] = {"return 42", "return 'x' .. 1", "return nil",
                                        "return math.pi"};
      const char *s = src[next_byte(g) % 4];
      if (luaL_loadstring(L, s) != LUA_OK) lua_error(L);
      break;
    }
    case 14:
      switch (next_byte(g) % 4) {
      case 0: lua_pushcfunction(L, noop); break;
      case 1:
        lua_newtable(L);
        lua_newtable(L);
        lua_setmetatable(L, -2);
        break;
      case 2: lua_newthread(L); break;
      default: lua_newuserdatauv(L, 8, 0); break;
      }
      break;
    case 15:
      if (top >= 2) lua_rotate(L, -2, 1);
      break;
    }
  }
  if (lua_gettop(L) > base) lua_settop(L, base + 1);
  else lua_pushnil(L);
  lua_remove(L, base);
  return 1;
}

/* Pushes describe(value at idx). */
static const char *describe(lua_State *L, int idx, size_t *len) {
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "describe");
  lua_pushvalue(L, idx);
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "describe: %s", lua_tostring(L, -1));
  return lua_tolstring(L, -1, len);
}

static void round_trip(lua_State *A, lua_State *B, const uint8_t *data, size_t size) {
  struct prog g = {data, size, 0};
  lua_settop(A, 0);
  lua_pushcfunction(A, build);
  lua_pushlightuserdata(A, &g);
  CHECK(lua_pcall(A, 1, 1, 0) == LUA_OK, "build: %s", lua_tostring(A, -1));

  /* the reference's verdict, worked out before the encoder sees the value */
  char want[64] = "";
  lua_getglobal(A, "expect_refusal");
  lua_pushvalue(A, 1);
  lua_pushinteger(A, VALUE_MAX_DEPTH);
  CHECK(lua_pcall(A, 2, 1, 0) == LUA_OK, "expect_refusal: %s", lua_tostring(A, -1));
  if (lua_isstring(A, -1)) snprintf(want, sizeof want, "%s", lua_tostring(A, -1));
  lua_settop(A, 1);

  struct value v = {0};
  char err[256] = "";
  int rc = value_encode(A, 1, "value", &v, err, sizeof err);
  CHECK(lua_gettop(A) == 1, "encode left %d values on the stack", lua_gettop(A));
  CHECK((rc != 0) == (want[0] != '\0'), "encode %s, the reference says %s (message '%s')",
        rc ? "refused" : "accepted", want[0] ? want : "it can cross", err);
  if (rc != 0) {
    CHECK(rc == -1, "encode returned %d", rc);
    CHECK(strstr(err, want) != NULL, "refusal '%s' does not name '%s'", err, want);
    CHECK(err[0] != '\0' && strncmp(err, "value", 5) == 0, "bad message '%s'", err);
    CHECK(v.len == 0 && v.nrefs == 0, "refused encode wrote %zu bytes", v.len);
    value_free(&v);
    return;
  }
  lua_settop(B, 0);
  CHECK(value_decode(B, &v, 1) == 0, "decode of an encoded value failed");
  CHECK(lua_gettop(B) == 1, "decode pushed %d values", lua_gettop(B));
  size_t la, lb;
  const char *da = describe(A, 1, &la), *db = describe(B, 1, &lb);
  CHECK(la == lb && memcmp(da, db, la) == 0, "copies differ:\n  A: %.*s\n  B: %.*s",
        (int)(la > 2000 ? 2000 : la), da, (int)(lb > 2000 ? 2000 : lb), db);
  value_free(&v);
  lua_settop(A, 0);
  lua_settop(B, 0);
}

/* value_decode of raw bytes, in protected mode (it may raise memory errors). */
static int raw_decode(lua_State *L) {
  const struct value *v = lua_touserdata(L, 1);
  lua_settop(L, 0);
  int rc = value_decode(L, v, 0);
  CHECK(rc == 0 || rc == -1, "decode returned %d", rc);
  CHECK(lua_gettop(L) == (rc == 0 ? 1 : 0), "decode returned %d with %d values pushed", rc,
        lua_gettop(L));
  return lua_gettop(L);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FUZZ_MAX_INPUT) return -1;
  lua_State *A = new_state(), *B = new_state();
  round_trip(A, B, data, size);

  struct value raw = {(char *)data, size, size, NULL, 0, 0};
  lua_settop(B, 0);
  lua_pushcfunction(B, raw_decode);
  lua_pushlightuserdata(B, &raw);
  int st = lua_pcall(B, 1, LUA_MULTRET, 0);
  CHECK(st == LUA_OK || st == LUA_ERRMEM, "raw decode raised: %s", lua_tostring(B, -1));
  vm_close(A);
  vm_close(B);
  return 0;
}
