/*
 * fuzz_config: arbitrary bytes as the text of app.lua, then config_load.
 *
 * The input (at most 4 KiB) is written as app.lua in a temporary app
 * directory made once per process (removed at exit).  config_load must
 * return 0 with a sane config, or -1 with a non-empty message; config_free
 * always; no crash, no leak.
 *
 * The chunk is arbitrary Lua, so the harness bounds it the way a worker
 * bounds a handler, through the link-time wraps set in CMakeLists.txt
 * (-Wl,--wrap=vm_new,--wrap=vm_pcall; config.c's calls reach these):
 * - vm_new: the state config_load makes loses io and os (a fuzzed chunk
 *   must not read stdin or touch files), gets a 64 MiB memory limit and a
 *   deadline of 1 s (the host's own count hook raises past it).
 * - vm_pcall: when the chunk's protected call returns, the memory limit is
 *   lifted again (config.c's own work after it runs unprotected, as in
 *   production, where that state has no limit).  The deadline stays, so
 *   Lua code that config.c runs outside a protected call (metamethods)
 *   shows up as a crash instead of a hang.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "base/clock.h"
#include "config.h"
#include "route.h"
#include "vm/state.h"

#define FUZZ_MAX_INPUT 4096
#define CHUNK_MEMORY (64u << 20)
#define CHUNK_SECONDS 1.0

#define FUZZ_NAME "fuzz_config"
#include "fuzz_check.h"

lua_State *__real_vm_new(const struct vm_opts *o, char *err, size_t errlen);
lua_State *__wrap_vm_new(const struct vm_opts *o, char *err, size_t errlen);
int __real_vm_pcall(lua_State *L, int nargs, int nresults);
int __wrap_vm_pcall(lua_State *L, int nargs, int nresults);

static lua_State *config_state;   /* the state config_load made, while it runs */

lua_State *__wrap_vm_new(const struct vm_opts *o, char *err, size_t errlen) {
  lua_State *L = __real_vm_new(o, err, errlen);
  if (!L) return NULL;
  static const char *const drop[] = {"io", "os"};
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  for (int i = 0; i < 2; i++) {
    lua_pushnil(L);
    lua_setglobal(L, drop[i]);
    lua_pushnil(L);
    lua_setfield(L, -2, drop[i]);
  }
  lua_pop(L, 2);
  vm_set_memory_limit(L, CHUNK_MEMORY);
  vm_limit_restore(L, 1);
  vm_base(L)->deadline_s = CHUNK_SECONDS;
  vm_base(L)->deadline_ns = clock_coarse_ns() + (uint64_t)(CHUNK_SECONDS * 1e9);
  config_state = L;
  return L;
}

int __wrap_vm_pcall(lua_State *L, int nargs, int nresults) {
  int st = __real_vm_pcall(L, nargs, nresults);
  if (L == config_state) vm_limit_restore(L, 0);
  return st;
}

static char app_dir[64];
static char app_lua[96];

static void cleanup(void) {
  unlink(app_lua);
  rmdir(app_dir);
}

static void setup(void) {
  strcpy(app_dir, "/tmp/luahost-fuzz-config-XXXXXX");
  CHECK(mkdtemp(app_dir), "mkdtemp");
  snprintf(app_lua, sizeof app_lua, "%s/app.lua", app_dir);
  atexit(cleanup);
}

static void check_config(const struct config *c) {
  CHECK(c->app_dir && strcmp(c->app_dir, app_dir) == 0, "app_dir %s", c->app_dir);
  CHECK(c->role == VM_FRONTEND || c->role == VM_BACKEND, "role %d", c->role);
  CHECK(c->listen_host && c->listen_port >= 0 && c->listen_port <= 65535, "listen");
  CHECK(c->workers >= 1 && c->workers <= 256, "workers %d", c->workers);
  CHECK(c->max_background_threads >= 0, "max_background_threads %d",
        c->max_background_threads);
  CHECK(c->request_deadline > 0 && c->shutdown_grace >= 0, "deadline %f grace %f",
        c->request_deadline, c->shutdown_grace);
  CHECK(c->nroutes >= 1 && c->routes, "nroutes %d", c->nroutes);
  for (int i = 0; i < c->nroutes; i++) {
    const struct route *r = &c->routes[i];
    /* url may be "": config.c keeps a string only up to its first NUL */
    CHECK(r->url, "route %d of %d: url %s script %s static_dir %s", i,
          c->nroutes, r->url ? r->url : "(null)", r->script ? r->script : "(null)",
          r->static_dir ? r->static_dir : "(null)");
    CHECK(!r->script != !r->static_dir, "route %d: script and static_dir", i);
    CHECK(!r->literal || strlen(r->literal) == r->literal_len, "route %d: literal", i);
    CHECK(r->ncaptures >= 0 && r->ncaptures <= ROUTE_MAX_CAPTURES, "route %d: %d captures", i,
          r->ncaptures);
    CHECK(!r->methods == !r->nmethods, "route %d: %d methods", i, r->nmethods);
    for (int m = 0; m < r->nmethods; m++) {
      const char *s = r->methods[m];
      CHECK(s && route_is_token(s, strlen(s)), "route %d: method %d not a token", i, m);
      for (const char *p = s; *p; p++) CHECK(*p < 'a' || *p > 'z', "route %d: '%s'", i, s);
    }
  }
  for (int i = 0; i < c->ndicts; i++) CHECK(c->dicts[i].name, "dict %d", i);
  for (int i = 0; i < c->nqueues; i++) CHECK(c->queues[i].name, "queue %d", i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FUZZ_MAX_INPUT) return -1;
  if (!app_dir[0]) setup();
  FILE *f = fopen(app_lua, "wb");
  CHECK(f, "cannot write %s", app_lua);
  CHECK(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write %s", app_lua);

  struct config c;
  struct config_cli cli = {0};
  char err[1024];
  err[0] = '\0';
  int rc = config_load(&c, app_dir, &cli, err, sizeof err);
  config_state = NULL;
  if (getenv("FUZZ_CONFIG_VERBOSE")) fprintf(stderr, "config_load: %d %s\n", rc, err);
  if (rc == 0) check_config(&c);
  else CHECK(rc == LH_EINVAL && err[0] != '\0', "config_load returned %d with message '%s'", rc, err);
  config_free(&c);
  return 0;
}
