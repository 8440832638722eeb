/* vm: the state factory's limits and the protected-call helpers. */
#include <lauxlib.h>

#include "base/clock.h"
#include "runner.h"
#include <unistd.h>
#include <stdlib.h>
#include "vm/call.h"
#include "vm/errors.h"
#include "vm/state.h"

static lua_State *new_state(size_t limit, int exit_mode) {
  char err[256];
  struct vm_opts o = {VM_FRONTEND, exit_mode, limit, {NULL, NULL, NULL}, NULL};
  lua_State *L = vm_new(&o, err, sizeof err);
  if (!L) FAIL_AT("vm_new: %s", err);
  return L;
}

/* Runs code; returns the status and leaves the error text (or "") on top. */
static int run(lua_State *L, const char *code) {
  if (luaL_loadstring(L, code) != LUA_OK) FAIL_AT("load: %s", lua_tostring(L, -1));
  int st = vm_pcall(L, 0, 1);
  if (st != LUA_OK) vm_error_text(L);
  return st;
}

TEST(memory_limit_refuses_growth) {
  lua_State *L = new_state(4u << 20, VM_EXIT_REFUSE);
  ASSERT_INT_EQ(run(L, "local t = {} for i = 1, 1e7 do t[i] = ('x'):rep(64) .. i end"),
                LUA_ERRMEM);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  ASSERT(vm_memory_used(L) < (4u << 20));
  ASSERT_INT_EQ(run(L, "return ('y'):rep(1000)"), LUA_OK);   /* usable after */
  vm_close(L);
}

TEST(deadline_not_swallowed_by_pcall) {
  lua_State *L = new_state(0, VM_EXIT_REFUSE);
  struct vm_task t = {.request_id = "rid", .deadline_ns = clock_coarse_ns() + 100000000u,
                      .deadline_s = 0.1};
  struct vm_task *prev = vm_enter(L, &t);
  uint64_t t0 = clock_now_ns();
  int st = run(L, "while true do pcall(function() while true do end end) end");
  vm_leave(L, prev);
  ASSERT_INT_EQ(st, LUA_ERRRUN);
  const char *msg = lua_tostring(L, -1);
  if (!strstr(msg, "runtime.DeadlineExceededError")) FAIL_AT("got: %s", msg);
  ASSERT(strstr(msg, "runtime.DeadlineExceededError: request deadline of 0.1 s exceeded"));
  ASSERT(clock_now_ns() - t0 < 2000000000u);
  vm_close(L);
}

TEST(binary_chunks_refused) {
  lua_State *L = new_state(0, VM_EXIT_REFUSE);
  ASSERT_INT_EQ(run(L, "local f, e = load(string.dump(function() return 1 end))\n"
                       "assert(f == nil and e:find('binary'), e)\n"
                       "assert(load('return 7')() == 7)\n"
                       "local f2, e2 = load(string.dump(function() end), 'x', 'b')\n"
                       "assert(f2 == nil, 'mode b must not let binary in')\n"
                       "return true"), LUA_OK);
  vm_close(L);
}

TEST(os_exit_refused) {
  lua_State *L = new_state(0, VM_EXIT_REFUSE);
  ASSERT_INT_EQ(run(L, "os.exit(3)"), LUA_ERRRUN);
  ASSERT(strstr(lua_tostring(L, -1), "os.exit is not allowed"));
  vm_close(L);
}

TEST(os_exit_caught) {
  lua_State *L = new_state(0, VM_EXIT_CATCH);
  ASSERT_INT_EQ(run(L, "local ok, e = pcall(os.exit, 5) return e.luahost_exit"), LUA_OK);
  ASSERT_INT_EQ(lua_tointeger(L, -1), 5);
  vm_close(L);
}

TEST(error_classes) {
  lua_State *L = new_state(0, VM_EXIT_REFUSE);
  vm_error_class(L, "t.Child", "t.Base");
  lua_setglobal(L, "Child");
  vm_error_class(L, "t.Base", NULL);
  lua_setglobal(L, "Base");
  vm_error_push(L, "t.Child", "t.Base", "went %s", "wrong");
  lua_setglobal(L, "e");
  ASSERT_INT_EQ(run(L, "assert(tostring(e) == 't.Child: went wrong', tostring(e))\n"
                       "assert(e.message == 'went wrong')\n"
                       "assert(Child:is_instance(e) and Base:is_instance(e))\n"
                       "assert(not Child:is_instance('t.Child: x'))\n"
                       "assert(not Child:is_instance(setmetatable({}, Base)))\n"
                       "assert(not Base:is_instance(nil))\n"
                       "return true"), LUA_OK);
  lua_getglobal(L, "e");
  ASSERT_INT_EQ(vm_error_is(L, -1, "t.Base"), 1);
  ASSERT_INT_EQ(vm_error_is(L, -1, "t.Other"), 0);
  vm_close(L);
}

TEST(traceback_kept_with_error_objects) {
  lua_State *L = new_state(0, VM_EXIT_REFUSE);
  ASSERT_INT_EQ(run(L, "local function inner() error(setmetatable({}, "
                       "{__tostring = function() return 'custom object' end})) end\n"
                       "inner()"), LUA_ERRRUN);
  const char *msg = lua_tostring(L, -1);
  ASSERT(strstr(msg, "custom object") && strstr(msg, "stack traceback") && strstr(msg, "inner"));
  ASSERT_INT_EQ(run(L, "error(setmetatable({}, {__tostring = function() error('x') end}))"),
                LUA_ERRRUN);
  ASSERT(strstr(lua_tostring(L, -1), "__tostring failed"));
  vm_close(L);
}

TEST(require_is_text_only) {
  char dir[] = "/tmp/luahost-vmXXXXXX";
  ASSERT(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/binmod.lua", dir);
  lua_State *L = new_state(0, VM_EXIT_REFUSE);
  lua_pushstring(L, path);
  lua_setglobal(L, "P");
  lua_pushstring(L, dir);
  lua_setglobal(L, "D");
  ASSERT_INT_EQ(run(L, "local f = io.open(P, 'wb') f:write(string.dump(function() return 1 end)) f:close()\n"
                       "package.path = D .. '/?.lua;' .. package.path\n"
                       "local ok, e = pcall(require, 'binmod')\n"
                       "assert(not ok and tostring(e):find('binary'), tostring(e))\n"
                       "assert(select(1, loadfile(P)) == nil)\n"
                       "assert(not pcall(dofile, P))\n"
                       "return true"), LUA_OK);
  vm_close(L);
  remove(path);
  rmdir(dir);
}

TEST_LIST(T(memory_limit_refuses_growth), T(deadline_not_swallowed_by_pcall),
          T(binary_chunks_refused), T(os_exit_refused), T(os_exit_caught), T(error_classes),
          T(traceback_kept_with_error_objects), T(require_is_text_only));
