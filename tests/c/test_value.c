/* vm/value: values encoded in one state and decoded in another. */
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>

#include "runner.h"
#include "value_describe.h"
#include "vm/state.h"
#include "vm/value.h"

/* Lua helpers loaded into every test state.
 * deq(a, b): deep equality of acyclic values with scalar keys, subtypes,
 *   NaN and the sign of zero included.
 * describe(v): a canonical text of v (keys sorted, tables numbered in
 *   visiting order, so shared references and cycles show), equal in two
 *   states exactly when the values are isomorphic.
 * gen(seed): a random nested value with shared references and cycles. */
static const char HELPERS[] =
  "function same_scalar(a, b)\n"
  "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n"
  "  if a ~= a then return b ~= b end\n"
  "  if a == 0 and math.type(a) == 'float' then return 1 / a == 1 / b end\n"
  "  return a == b\n"
  "end\n"
  "function deq(a, b)\n"
  "  if type(a) ~= 'table' or type(b) ~= 'table' then return same_scalar(a, b) end\n"
  "  for k, v in pairs(a) do if not deq(v, rawget(b, k)) then return false end end\n"
  "  for k in pairs(b) do if rawget(a, k) == nil then return false end end\n"
  "  return true\n"
  "end\n"
  VALUE_DESCRIBE_LUA
  "function gen(seed)\n"
  "  math.randomseed(seed)\n"
  "  local pool, R = {}, math.random\n"
  "  local function scalar()\n"
  "    local r = R(7)\n"
  "    if r == 1 then return R(2) == 1\n"
  "    elseif r == 2 then return R(-1000, 1000)\n"
  "    elseif r == 3 then local s = {math.maxinteger, math.mininteger, 0, -1, 1 << 40, 127, 128}\n"
  "      return s[R(#s)]\n"
  "    elseif r == 4 then return (R() - 0.5) * 10.0 ^ R(-30, 30)\n"
  "    elseif r == 5 then local s = {0.0, -0.0, 1/0, -1/0, 0/0, 1.0, 2^53, 2^63}\n"
  "      return s[R(#s)]\n"
  "    else local b = {} for i = 1, R(0, R(4) > 1 and 8 or 300) do b[i] = string.char(R(0, 255)) end\n"
  "      return table.concat(b) end\n"
  "  end\n"
  "  local function value(depth)\n"
  "    local r = R(10)\n"
  "    if depth > 6 or r <= 6 then return scalar() end\n"
  "    if r == 6 then return pool[R(#pool)] end\n"
  "    local t = {}\n"
  "    pool[#pool + 1] = t\n"
  "    for i = 1, R(0, 4) do t[i] = value(depth + 1) end\n"
  "    for _ = 1, R(0, 3) do\n"
  "      local k = scalar()\n"
  "      if k ~= k then k = 'nan' end\n"
  "      t[k] = value(depth + 1)\n"
  "    end\n"
  "    return t\n"
  "  end\n"
  "  local root = {}\n"
  "  pool[1] = root\n"
  "  for i = 1, R(1, 6) do root[i] = value(1) end\n"
  "  root.x = value(1)\n"
  "  return root\n"
  "end\n";

static void run(lua_State *L, const char *code) {
  if (luaL_loadbuffer(L, code, strlen(code), "=sender") != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK)
    FAIL_AT("lua error: %s\n-- in: %s", lua_tostring(L, -1), code);
}

static lua_State *new_state(void) {
  char err[256];
  struct vm_opts o = {VM_BACKEND, VM_EXIT_REFUSE, 0, {NULL, NULL, NULL}, NULL};
  lua_State *L = vm_new(&o, err, sizeof err);
  if (!L) FAIL_AT("vm_new: %s", err);
  run(L, HELPERS);
  return L;
}

/* Pushes the results of a chunk (one value). */
static void eval(lua_State *L, const char *code) {
  if (luaL_loadbuffer(L, code, strlen(code), "=sender") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    FAIL_AT("lua error: %s\n-- in: %s", lua_tostring(L, -1), code);
}

static void encode_top(lua_State *L, struct value *v) {
  char err[256];
  int top = lua_gettop(L);
  if (value_encode(L, -1, "value", v, err, sizeof err) != 0) FAIL_AT("encode: %s", err);
  ASSERT_INT_EQ(lua_gettop(L), top);
}

static void decode_to_global(lua_State *L, const struct value *v, const char *name) {
  int top = lua_gettop(L);
  ASSERT_INT_EQ(value_decode(L, v, 1), 0);
  ASSERT_INT_EQ(lua_gettop(L), top + 1);
  lua_setglobal(L, name);
}

/* Evaluates code in A and sets the copy as global v of B. */
static void xfer(lua_State *A, const char *code, lua_State *B) {
  struct value v = {0};
  eval(A, code);
  encode_top(A, &v);
  lua_pop(A, 1);
  decode_to_global(B, &v, "v");
  value_free(&v);
}

/* The value pushed by code must be refused with exactly msg. */
static void refused(lua_State *L, const char *root, const char *msg) {
  char err[256];
  struct value v = {0};
  int top = lua_gettop(L);
  if (value_encode(L, -1, root, &v, err, sizeof err) != -1) FAIL_AT("accepted, wanted: %s", msg);
  ASSERT_INT_EQ(lua_gettop(L), top);
  ASSERT_STR_EQ(err, msg);
  ASSERT_INT_EQ(v.len, 0);
  ASSERT_INT_EQ(v.nrefs, 0);
  value_free(&v);
}

static void refused_code(lua_State *L, const char *code, const char *root, const char *msg) {
  eval(L, code);
  refused(L, root, msg);
  lua_pop(L, 1);
}

/* ---- a fake host handle ------------------------------------------------ */

struct fake { int refs; int id; };
static struct fake fakes[2] = {{0, 10}, {0, 11}};

static void *fake_get(lua_State *L, int idx) {
  struct fake **u = luaL_testudata(L, idx, "test.Fake");
  return u ? *u : NULL;
}
static void fake_retain(void *o) { ((struct fake *)o)->refs++; }
static void fake_release(void *o) { ((struct fake *)o)->refs--; }
static int fake_gc(lua_State *L) {
  struct fake **u = luaL_checkudata(L, 1, "test.Fake");
  if (*u) fake_release(*u);
  *u = NULL;
  return 0;
}
static int fake_id(lua_State *L) {
  struct fake **u = luaL_checkudata(L, 1, "test.Fake");
  lua_pushinteger(L, (*u)->id);
  return 1;
}
static void fake_push(lua_State *L, void *obj) {
  struct fake **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = obj;
  fake_retain(obj);
  if (luaL_newmetatable(L, "test.Fake")) {
    lua_pushcfunction(L, fake_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushcfunction(L, fake_id);
    lua_setfield(L, -2, "id");
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
}
static const struct value_handle_type fake_type = {"test.Fake", fake_get, fake_retain,
                                                   fake_release, fake_push};

/* ---- tests ------------------------------------------------------------- */

TEST(scalars_keep_subtypes) {
  static const char *const cases[][2] = {
    {"return nil", "v == nil"},
    {"return true", "v == true"},
    {"return false", "v == false"},
    {"return 0", "math.type(v) == 'integer' and v == 0"},
    {"return -1", "math.type(v) == 'integer' and v == -1"},
    {"return 300", "math.type(v) == 'integer' and v == 300"},
    {"return math.maxinteger", "v == math.maxinteger"},
    {"return math.mininteger", "math.type(v) == 'integer' and v == math.mininteger"},
    {"return 1 << 62", "v == 1 << 62"},
    {"return 1.0", "math.type(v) == 'float' and v == 1"},
    {"return 0.0", "math.type(v) == 'float' and 1 / v == 1 / 0"},
    {"return -0.0", "math.type(v) == 'float' and v == 0 and 1 / v == -1 / 0"},
    {"return 1 / 0", "v == math.huge"},
    {"return -1 / 0", "v == -math.huge"},
    {"return 0 / 0", "math.type(v) == 'float' and v ~= v"},
    {"return 2^63", "math.type(v) == 'float' and v == 2^63"},
    {"return 3.14159", "v == 3.14159"},
    {"return 5e-324", "v == 5e-324 and v > 0"},
    {"return ''", "v == ''"},
    {"return 'plain'", "v == 'plain'"},
  };
  lua_State *A = new_state(), *B = new_state();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    xfer(A, cases[i][0], B);
    char code[256];
    snprintf(code, sizeof code, "assert(%s, 'case %zu')", cases[i][1], i);
    run(B, code);
  }
  vm_close(A);
  vm_close(B);
}

TEST(strings_are_binary_safe) {
  lua_State *A = new_state(), *B = new_state();
  static const char *const exprs[] = {
    "'a\\0b\\0\\0c'",
    "(function() local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end return table.concat(t) end)()",
    "('\\0\\255x'):rep(200000)",
    "('y'):rep(127)", "('y'):rep(128)", "('y'):rep(16384)",
  };
  for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
    char code[512];
    snprintf(code, sizeof code, "return %s", exprs[i]);
    xfer(A, code, B);
    snprintf(code, sizeof code, "assert(v == %s, 'string %zu')", exprs[i], i);
    run(B, code);
  }
  vm_close(A);
  vm_close(B);
}

TEST(tables_keep_shape) {
  static const char T[] =
    "return {1, 2, 3, nil, 5, n = 5, ['odd key'] = {x = {y = {}}}, [true] = false,\n"
    "  [false] = 'f', [1.5] = 'float key', [-3] = 'neg', [1 << 40] = 'big', [0] = 'zero',\n"
    "  [2^53] = 'float that is an integer key', nested = {{{}}, {a = 1.0, b = 1}},\n"
    "  s = 'a\\0b', e = {}}";
  lua_State *A = new_state(), *B = new_state();
  xfer(A, T, B);
  char code[1024];
  snprintf(code, sizeof code, "local want = (function() %s end)()\n"
                              "assert(deq(v, want) and deq(want, v))\n"
                              "assert(v[4] == nil and v[5] == 5 and math.type(v.nested[2].a) == 'float')",
           T);
  run(B, code);
  /* a long array and a big hash part */
  xfer(A, "local t = {} for i = 1, 5000 do t[i] = i * 2 end for i = 1, 3000 do t['k' .. i] = i end return t",
       B);
  run(B, "assert(#v == 5000 and v[5000] == 10000 and v.k3000 == 3000)\n"
         "local n = 0 for _ in pairs(v) do n = n + 1 end assert(n == 8000)");
  vm_close(A);
  vm_close(B);
}

/* A metatable marked VALUE_PLAIN_MT (req's) is dropped: a plain copy of
 * the fields present, metamethods never run. */
TEST(plain_marked_metatable_crosses) {
  lua_State *A = new_state(), *B = new_state();
  xfer(A, "return {r = setmetatable({path = '/x', n = {1}}, {__luahost_plain = true,\n"
          "  __index = function() error('ran') end, __pairs = function() error('ran') end})}", B);
  run(B, "assert(getmetatable(v.r) == nil and v.r.path == '/x' and v.r.n[1] == 1)\n"
         "assert(v.r.form == nil)");
  vm_close(A);
  vm_close(B);
}

TEST(shared_references_and_cycles) {
  lua_State *A = new_state(), *B = new_state();
  xfer(A, "local s = {1}\n"
          "local t = {a = s, b = s, list = {s, s}}\n"
          "t.self = t\n"
          "t.k = {}\n"
          "t[t.k] = t.k\n"
          "local x, y = {}, {}\n"
          "x.y, y.x = y, x\n"
          "t.x = x\n"
          "local e = {}\n"
          "t.e1, t.e2 = e, e\n"
          "t.deep = {{{{back = t, s = s}}}}\n"
          "return t", B);
  run(B, "assert(rawequal(v.a, v.b) and rawequal(v.list[1], v.a) and rawequal(v.list[2], v.a))\n"
         "assert(v.a[1] == 1)\n"
         "assert(rawequal(v.self, v))\n"
         "assert(rawequal(v[v.k], v.k))\n"
         "assert(rawequal(v.x.y.x, v.x) and not rawequal(v.x, v.x.y))\n"
         "assert(rawequal(v.e1, v.e2) and next(v.e1) == nil)\n"
         "assert(rawequal(v.deep[1][1][1].back, v) and rawequal(v.deep[1][1][1].s, v.a))\n"
         "v.a[1] = 99 assert(v.b[1] == 99)");
  /* a table key not shared with anything */
  xfer(A, "return {[{1, 2}] = 'x'}", B);
  run(B, "local k, val = next(v) assert(type(k) == 'table' and k[2] == 2 and val == 'x')");
  /* a self-cycle at the root */
  xfer(A, "local t = {} t[1] = t return t", B);
  run(B, "assert(rawequal(v[1], v))");
  vm_close(A);
  vm_close(B);
}

TEST(functions_cross_as_code) {
  lua_State *A = new_state(), *B = new_state();
  /* _ENV only: globals resolve in the receiver */
  run(A, "OFFSET = 1");
  xfer(A, "return function(a) return a + OFFSET end", B);
  run(B, "OFFSET = 100 assert(v(1) == 101)");
  /* no upvalue at all, and inner closures of its own */
  xfer(A, "return function(n) local c = 0 local function inc() c = c + n end inc() inc() return c end", B);
  run(B, "assert(v(5) == 10)");
  /* line numbers survive (strip = 0) */
  xfer(A, "return {f = function()\n\n  error('boom')\nend}", B);
  run(B, "local ok, e = pcall(v.f) assert(not ok and e == 'sender:3: boom', e)\n"
         "assert(debug.getinfo(v.f, 'S').linedefined == 1)");
  /* one function referenced twice stays one */
  xfer(A, "local f = function() return 7 end return {f, f, g = f}", B);
  run(B, "assert(rawequal(v[1], v[2]) and rawequal(v.g, v[1]) and v.g() == 7)");
  /* a function's _ENV is the receiver's globals, not a sandbox it had */
  xfer(A, "local f = load('return X') return f", B);
  run(B, "X = 'b' assert(v() == 'b')");
  vm_close(A);
  vm_close(B);
}

TEST(refusals_name_the_path) {
  lua_State *L = new_state();
  refused_code(L, "return {1, {conn = io.stdout}}", "args", "args[2].conn: cannot copy a userdata");
  refused_code(L, "local count = 0 return {list = {1, 2, function() count = count + 1 end}}", "value",
               "value.list[3]: cannot copy a function with upvalue 'count'");
  refused_code(L, "local x = 1 return function() return x + y end", "value",
               "value: cannot copy a function with upvalue 'x'");
  refused_code(L, "local x = 1 return function() return y + x end", "value",
               "value: cannot copy a function with upvalue 'x'");
  refused_code(L, "return {t = setmetatable({}, {})}", "value",
               "value.t: cannot copy a table with a metatable");
  refused_code(L, "return setmetatable({}, {})", "args", "args: cannot copy a table with a metatable");
  refused_code(L, "return setmetatable({}, {__luahost_plain = 1})", "args",
               "args: cannot copy a table with a metatable");   /* only true marks it */
  refused_code(L, "return {print}", "value", "value[1]: cannot copy a C function");
  refused_code(L, "return print", "value", "value: cannot copy a C function");
  refused_code(L, "return {co = coroutine.create(function() end)}", "value",
               "value.co: cannot copy a thread (coroutine)");
  refused_code(L, "return {['odd key'] = {print}}", "value", "value[\"odd key\"][1]: cannot copy a C function");
  refused_code(L, "return {['a\"b\\\\c\\n\\0\\1'] = print}", "value",
               "value[\"a\\\"b\\\\c\\n\\000\\001\"]: cannot copy a C function");
  refused_code(L, "return {['end'] = print}", "value", "value[\"end\"]: cannot copy a C function");
  refused_code(L, "return {['9a'] = print}", "value", "value[\"9a\"]: cannot copy a C function");
  refused_code(L, "return {_x9 = print}", "value", "value._x9: cannot copy a C function");
  refused_code(L, "return {[true] = print}", "value", "value[?]: cannot copy a C function");
  refused_code(L, "return {[1.5] = print}", "value", "value[?]: cannot copy a C function");
  refused_code(L, "return {[-5] = print}", "value", "value[-5]: cannot copy a C function");
  refused_code(L, "return {[10] = print}", "value", "value[10]: cannot copy a C function");
  refused_code(L, "return {[print] = 1}", "value", "value[?]: cannot copy a C function");
  refused_code(L, "return {a = {b = {{c = print}}}}", "value", "value.a.b[1].c: cannot copy a C function");
  /* light userdata, pushed from C */
  lua_newtable(L);
  lua_pushlightuserdata(L, L);
  lua_setfield(L, -2, "p");
  refused(L, "value", "value.p: cannot copy a light userdata");
  lua_pop(L, 1);
  /* a failed encode leaves what the value held before */
  struct value v = {0};
  char err[128];
  lua_pushinteger(L, 42);
  ASSERT_INT_EQ(value_encode(L, -1, "value", &v, err, sizeof err), 0);
  lua_pop(L, 1);
  size_t len = v.len;
  eval(L, "return {1, 2, 3, 'long string here', {x = print}}");
  ASSERT_INT_EQ(value_encode(L, -1, "value", &v, err, sizeof err), -1);
  lua_pop(L, 1);
  ASSERT_INT_EQ(v.len, len);
  ASSERT_INT_EQ(value_decode(L, &v, 0), 0);
  ASSERT_INT_EQ(lua_tointeger(L, -1), 42);
  lua_pop(L, 1);
  ASSERT_INT_EQ(lua_gettop(L), 0);
  value_free(&v);
  vm_close(L);
}

TEST(depth_limit) {
  lua_State *A = new_state(), *B = new_state();
  static const char NEST[] = "local t = {} local c = t for i = 2, %d do c[1] = {} c = c[1] end c.leaf = true return t";
  char code[256];
  snprintf(code, sizeof code, NEST, VALUE_MAX_DEPTH);
  xfer(A, code, B);
  run(B, "local n, c = 1, v while c[1] do n, c = n + 1, c[1] end assert(n == 200 and c.leaf, n)");
  snprintf(code, sizeof code, NEST, VALUE_MAX_DEPTH + 1);
  refused_code(A, code, "args", "args: table nested deeper than 200 levels");
  /* a deep cycle is not deep */
  xfer(A, "local t = {} t.a = {b = {c = t}} return {t, t, t}", B);
  run(B, "assert(rawequal(v[1].a.b.c, v[2]))");
  vm_close(A);
  vm_close(B);
}

TEST(handles_cross_by_reference) {
  ASSERT_INT_EQ(value_register_handle_type(&fake_type), 0);
  ASSERT_INT_EQ(value_register_handle_type(&fake_type), 0);
  lua_State *A = new_state(), *B = new_state();
  fake_push(A, &fakes[0]);
  lua_setglobal(A, "h");
  fake_push(A, &fakes[1]);
  lua_setglobal(A, "h2");
  ASSERT_INT_EQ(fakes[0].refs, 1);
  struct value v = {0};
  eval(A, "return {h, h, sub = {h}, [h2] = 'key', other = h2}");
  encode_top(A, &v);
  lua_pop(A, 1);
  ASSERT_INT_EQ(v.nrefs, 2);
  ASSERT_INT_EQ(fakes[0].refs, 2);
  ASSERT_INT_EQ(fakes[1].refs, 2);
  decode_to_global(B, &v, "v");
  ASSERT_INT_EQ(fakes[0].refs, 3);
  run(B, "assert(rawequal(v[1], v[2]) and rawequal(v.sub[1], v[1]) and v[1]:id() == 10)\n"
         "assert(v[v.other] == 'key' and v.other:id() == 11)");
  /* decoding twice makes new proxies again */
  decode_to_global(B, &v, "w");
  run(B, "assert(w[1]:id() == 10 and not rawequal(w[1], v[1]))");
  vm_close(B);
  ASSERT_INT_EQ(fakes[0].refs, 2);
  ASSERT_INT_EQ(fakes[1].refs, 2);
  value_reset(&v);
  ASSERT_INT_EQ(v.nrefs, 0);
  ASSERT_INT_EQ(fakes[0].refs, 1);
  /* a failed encode takes back the retains it took */
  eval(A, "return {h, h2, print}");
  char err[128];
  ASSERT_INT_EQ(value_encode(A, -1, "value", &v, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "value[3]: cannot copy a C function");
  lua_pop(A, 1);
  ASSERT_INT_EQ(fakes[0].refs, 1);
  ASSERT_INT_EQ(fakes[1].refs, 1);
  /* reuse after reset */
  eval(A, "return h2");
  encode_top(A, &v);
  lua_pop(A, 1);
  ASSERT_INT_EQ(fakes[1].refs, 2);
  value_free(&v);
  ASSERT_INT_EQ(fakes[1].refs, 1);
  vm_close(A);
  ASSERT_INT_EQ(fakes[0].refs, 0);
  ASSERT_INT_EQ(fakes[1].refs, 0);
}

TEST(unregistered_userdata_and_full_registry) {
  lua_State *L = new_state();
  ASSERT_INT_EQ(value_register_handle_type(&fake_type), 0);
  /* a userdata with another metatable, and one with none */
  lua_newtable(L);
  lua_newuserdatauv(L, 8, 0);
  luaL_newmetatable(L, "test.Other");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "o");
  refused(L, "value", "value.o: cannot copy a userdata");
  lua_newuserdatauv(L, 8, 0);
  lua_setfield(L, -2, "o");
  refused(L, "value", "value.o: cannot copy a userdata");
  lua_pop(L, 1);
  static struct value_handle_type more[8];
  int ok = 0;
  for (int i = 0; i < 8; i++) {
    more[i] = fake_type;
    if (value_register_handle_type(&more[i]) == 0) ok++;
  }
  ASSERT_INT_EQ(ok, 7);
  ASSERT_INT_EQ(value_register_handle_type(&fake_type), 0);
  vm_close(L);
}

/* A state at its memory limit: encode returns -1 and raises nothing. */
static const struct value_handle_type long_name_type = {
  "test.a-metatable-name-long-enough-not-to-be-interned-by-lua-at-all", fake_get,
  fake_retain, fake_release, fake_push};

TEST(encode_never_raises_at_memory_limit) {
  ASSERT_INT_EQ(value_register_handle_type(&long_name_type), 0);
  lua_State *L = new_state();
  eval(L, "return {1, {2, 3}}");
  lua_newuserdatauv(L, 8, 0);
  luaL_newmetatable(L, "test.Other");
  lua_setmetatable(L, -2);
  lua_rawseti(L, -2, 3);                     /* stack: t */
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCSTOP);
  vm_set_memory_limit(L, vm_memory_used(L));
  int was_on = vm_limit_off(L);
  vm_limit_restore(L, 1);
  struct value v = {0};
  char err[128];
  ASSERT_INT_EQ(value_encode(L, -1, "value", &v, err, sizeof err), -1);
  ASSERT_INT_EQ(lua_gettop(L), 1);
  if (!strstr(err, "not enough memory")) FAIL_AT("got: %s", err);
  ASSERT_INT_EQ(v.len, 0);
  vm_limit_restore(L, was_on);
  lua_gc(L, LUA_GCRESTART);
  value_free(&v);
  vm_close(L);
}

/* A valid encoding with every kind of record. */
static void rich_value(lua_State *A, struct value *v) {
  ASSERT_INT_EQ(value_register_handle_type(&fake_type), 0);
  fake_push(A, &fakes[0]);
  lua_setglobal(A, "h");
  eval(A, "local s = {1, 2.5, 'str'} local t = {s, s, true, false, -7, 1e300,\n"
          "  f = function(x) return x end, h = h, h2 = h, e = {}, [-1] = ('z'):rep(200),\n"
          "  [math.mininteger] = 0/0}\n"
          "t.self = t return t");
  encode_top(A, v);
  lua_pop(A, 1);
}

TEST(truncated_and_trailing_bytes_refused) {
  lua_State *A = new_state(), *B = new_state();
  struct value v = {0};
  rich_value(A, &v);
  struct value cut = v;
  for (size_t n = 0; n < v.len; n++) {
    cut.len = n;
    if (value_decode(B, &cut, 1) != -1) FAIL_AT("prefix of %zu/%zu bytes accepted", n, v.len);
    ASSERT_INT_EQ(lua_gettop(B), 0);
  }
  cut.len = v.len;
  ASSERT_INT_EQ(value_decode(B, &cut, 1), 0);
  lua_setglobal(B, "v");
  run(B, "assert(rawequal(v.self, v) and rawequal(v[1], v[2]) and v.f(3) == 3 and v.h:id() == 10)\n"
         "assert(rawequal(v.h, v.h2) and v[math.mininteger] ~= v[math.mininteger])");
  /* functions refused when not allowed */
  ASSERT_INT_EQ(value_decode(B, &v, 0), -1);
  ASSERT_INT_EQ(lua_gettop(B), 0);
  /* trailing garbage */
  ASSERT(v.cap > v.len);
  v.data[v.len++] = 0;
  ASSERT_INT_EQ(value_decode(B, &v, 1), -1);
  ASSERT_INT_EQ(lua_gettop(B), 0);
  value_free(&v);
  vm_close(A);
  vm_close(B);
}

static int decode_bytes(lua_State *L, const void *bytes, size_t n, int allow) {
  struct value v = {0};
  v.data = malloc(n ? n : 1);
  memcpy(v.data, bytes, n);
  v.len = v.cap = n;
  int top = lua_gettop(L);
  int r = value_decode(L, &v, allow);
  ASSERT_INT_EQ(lua_gettop(L), top + (r == 0));
  lua_settop(L, top);
  free(v.data);
  return r;
}

TEST(crafted_malformed_input) {
  lua_State *L = new_state();
  uint32_t one = 1, zero = 0, big = 0xffffffffu;
  unsigned char b[64];
  size_t n;
  /* a REF before any object, a REF to an unshared object, a REF forward */
  ASSERT_INT_EQ(decode_bytes(L, "\x0a\x00", 2, 1), -1);
  n = 0; b[n++] = 0x06; memcpy(b + n, &one, 4); n += 4; memcpy(b + n, &zero, 4); n += 4;
  b[n++] = 0x0a; b[n++] = 0x00;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  b[0] = 0x86;                                           /* SHARED: now a self-cycle */
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), 0);
  b[n - 1] = 0x01;                                       /* REF 1: no such object yet */
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  /* SHARED on a scalar; unknown tags */
  ASSERT_INT_EQ(decode_bytes(L, "\x83\x02", 2, 1), -1);
  ASSERT_INT_EQ(decode_bytes(L, "\x0b", 1, 1), -1);
  ASSERT_INT_EQ(decode_bytes(L, "\x7f", 1, 1), -1);
  /* counts larger than the bytes left */
  n = 0; b[n++] = 0x06; memcpy(b + n, &big, 4); n += 4; memcpy(b + n, &zero, 4); n += 4; b[n++] = 0;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  n = 0; b[n++] = 0x06; memcpy(b + n, &zero, 4); n += 4; memcpy(b + n, &big, 4); n += 4;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  /* a TABLE record with no entries is not what the encoder writes */
  n = 0; b[n++] = 0x06; memcpy(b + n, &zero, 4); n += 4; memcpy(b + n, &zero, 4); n += 4;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  /* nil in the array part, nil key, NaN key, nil value */
  n = 0; b[n++] = 0x06; memcpy(b + n, &one, 4); n += 4; memcpy(b + n, &zero, 4); n += 4; b[n++] = 0;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  n = 0; b[n++] = 0x06; memcpy(b + n, &zero, 4); n += 4; memcpy(b + n, &one, 4); n += 4;
  b[n++] = 0; b[n++] = 1;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  double nan = NAN;
  n = 0; b[n++] = 0x06; memcpy(b + n, &zero, 4); n += 4; memcpy(b + n, &one, 4); n += 4;
  b[n++] = 4; memcpy(b + n, &nan, 8); n += 8; b[n++] = 1;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  n = 0; b[n++] = 0x06; memcpy(b + n, &zero, 4); n += 4; memcpy(b + n, &one, 4); n += 4;
  b[n++] = 2; b[n++] = 0;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  b[n - 1] = 2;                                          /* {[true] = true} */
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), 0);
  /* varints: overlong, and mininteger's ten bytes */
  ASSERT_INT_EQ(decode_bytes(L, "\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, 1), -1);
  ASSERT_INT_EQ(decode_bytes(L, "\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, 1), 0);
  ASSERT_INT_EQ(decode_bytes(L, "\x03\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 12, 1), -1);
  /* a string longer than the bytes left; a handle with no refs */
  ASSERT_INT_EQ(decode_bytes(L, "\x05\x05" "abcd", 6, 1), -1);
  ASSERT_INT_EQ(decode_bytes(L, "\x09\x00", 2, 1), -1);
  /* a function record that is text, or not a function at all */
  n = 0; b[n++] = 0x08; uint32_t three = 3; memcpy(b + n, &three, 4); n += 4; memcpy(b + n, "x=1", 3); n += 3;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  b[5] = 0x1b;
  ASSERT_INT_EQ(decode_bytes(L, b, n, 1), -1);
  /* nesting: exactly 200 tables decode, 201 do not */
  for (int depth = 200; depth <= 201; depth++) {
    size_t len = (size_t)depth * 9 + 1;
    unsigned char *d = malloc(len), *p = d;
    for (int i = 0; i < depth; i++) {
      *p++ = 0x06; memcpy(p, &one, 4); p += 4; memcpy(p, &zero, 4); p += 4;
    }
    *p++ = 0x02;
    ASSERT_INT_EQ(decode_bytes(L, d, len, 1), depth == 200 ? 0 : -1);
    free(d);
  }
  ASSERT_INT_EQ(decode_bytes(L, "", 0, 1), -1);
  vm_close(L);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

TEST(random_bytes_never_crash) {
  lua_State *L = new_state();
  unsigned char b[96];
  int accepted = 0;
  for (int i = 0; i < 30000; i++) {
    size_t n = 1 + rng() % sizeof b;
    for (size_t j = 0; j < n; j++) {
      uint64_t r = rng();
      /* mostly small values, so tags and counts make sense more often */
      b[j] = (unsigned char)(r % 4 ? r % 12 : r >> 8);
    }
    accepted += decode_bytes(L, b, n, i & 1) == 0;
  }
  ASSERT(accepted > 0);
  vm_close(L);
}

TEST(mutated_encodings_never_crash) {
  lua_State *A = new_state(), *B = new_state();
  struct value v = {0};
  rich_value(A, &v);
  for (int round = 0; round < 20000; round++) {
    struct value m = v;
    m.data = malloc(v.len);
    memcpy(m.data, v.data, v.len);
    m.cap = v.len;
    for (int k = 0; k < 1 + round % 3; k++) {
      size_t at = rng() % v.len;
      m.data[at] = (char)(rng() % 3 ? m.data[at] ^ (1 << (rng() % 8)) : (char)rng());
    }
    int top = lua_gettop(B);
    int r = value_decode(B, &m, 0);
    ASSERT_INT_EQ(lua_gettop(B), top + (r == 0));
    lua_settop(B, top);
    free(m.data);
    if (round % 1000 == 0) lua_gc(B, LUA_GCCOLLECT);
  }
  value_free(&v);
  vm_close(A);
  vm_close(B);
}

TEST(random_round_trips) {
  lua_State *A = new_state(), *B = new_state();
  struct value v = {0}, back = {0};
  for (int seed = 1; seed <= 300; seed++) {
    char code[64];
    snprintf(code, sizeof code, "return gen(%d)", seed);
    eval(A, code);                                     /* stack: orig */
    encode_top(A, &v);
    decode_to_global(B, &v, "v");
    /* compare canonical texts across the states */
    eval(B, "return describe(v)");
    lua_getglobal(A, "describe");
    lua_pushvalue(A, 1);
    lua_call(A, 1, 1);                                 /* stack: orig text */
    size_t na, nb;
    const char *ta = lua_tolstring(A, -1, &na), *tb = lua_tolstring(B, -1, &nb);
    if (na != nb || memcmp(ta, tb, na) != 0) {
      size_t at = 0;
      while (at < na && at < nb && ta[at] == tb[at]) at++;
      size_t from = at > 40 ? at - 40 : 0;
      FAIL_AT("seed %d: copies differ at byte %zu:\n%.80s\n%.80s", seed, at, ta + from, tb + from);
    }
    lua_pop(B, 1);
    /* and back again: B's encoding decodes to the same in A */
    lua_getglobal(B, "v");
    value_reset(&back);
    encode_top(B, &back);
    lua_pop(B, 1);
    ASSERT_INT_EQ(value_decode(A, &back, 0), 0);      /* stack: orig text copy */
    lua_getglobal(A, "describe");
    lua_insert(A, -2);
    lua_call(A, 1, 1);
    ASSERT(lua_rawequal(A, -1, -2));                   /* strings: compared by content */
    lua_settop(A, 0);
    value_reset(&v);
  }
  value_free(&v);
  value_free(&back);
  vm_close(A);
  vm_close(B);
}

TEST_LIST(T(scalars_keep_subtypes), T(strings_are_binary_safe), T(tables_keep_shape),
          T(plain_marked_metatable_crosses),
          T(shared_references_and_cycles), T(functions_cross_as_code), T(refusals_name_the_path),
          T(depth_limit), T(handles_cross_by_reference), T(unregistered_userdata_and_full_registry),
          T(encode_never_raises_at_memory_limit), T(truncated_and_trailing_bytes_refused),
          T(crafted_malformed_input), T(random_bytes_never_crash), T(mutated_encodings_never_crash),
          T(random_round_trips));
