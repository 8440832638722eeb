/* vm/state: the state factory. */
#include "vm/state.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "base/arena.h"
#include "base/clock.h"
#include "base/fault.h"
#include "base/log.h"
#include "embedded.h"
#include "vm/errors.h"
#include "vm/internal.h"

#define HOOK_COUNT 1000

/* Counting allocator over the state's arena: refuses growth past the
 * limit while it is on. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct vm *vm = ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    arena_free(&vm->arena, ptr, osize);
    vm->used -= osize;
    return NULL;
  }
  if (vm->limit_on && vm->limit && nsize > osize && vm->used + (nsize - osize) > vm->limit)
    return NULL;
#ifdef LUAHOST_FAULT_INJECTION
  if (vm->building && nsize > osize && fault_hit(FAULT_STATE_ALLOC)) return NULL;
#endif
  void *p = arena_realloc(&vm->arena, ptr, osize, nsize);
  if (p) vm->used = vm->used - osize + nsize;
  return p;
}

static void *charged_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct vm *vm = ud;
  int was = vm->limit_on;
  vm->limit_on = 1;
  void *p = vm_alloc(vm, ptr, osize, nsize);
  vm->limit_on = was;
  return p;
}

lua_Alloc vm_charged_allocf(lua_State *L, void **ud) {
  *ud = vm_of(L);
  return charged_alloc;
}

int vm_raise_deadline(lua_State *L) {
  vm_of(L)->current->deadline_hit = 1;
  vm_error_push(L, VM_DEADLINE_CLASS, NULL, "request deadline of %f s exceeded",
                vm_of(L)->current->deadline_s);
  return lua_error(L);
}

/* Set once, before any thread runs (luaopen of the owning module is too
 * late for a state that never loads it): read-only after. */
static struct vm_cancel_class cancel_class = {"Cancelled", NULL};

void vm_set_cancel_class(const char *name, const char *parent) {
  cancel_class.name = name;
  cancel_class.parent = parent;
}

struct vm_task *vm_current(lua_State *L) { return vm_of(L)->current; }
struct vm_task *vm_base(lua_State *L) { return &vm_of(L)->base; }

struct vm_task *vm_enter(lua_State *L, struct vm_task *t) {
  struct vm *vm = vm_of(L);
  struct vm_task *prev = vm->current;
  vm->current = t;
  return prev;
}

void vm_leave(lua_State *L, struct vm_task *prev) { vm_of(L)->current = prev; }
int vm_role(lua_State *L) { return vm_of(L)->role; }
void *vm_host_data(lua_State *L) { return vm_of(L)->host_data; }
void vm_set_host_data(lua_State *L, void *p) { vm_of(L)->host_data = p; }
size_t vm_memory_used(lua_State *L) { return vm_of(L)->used; }
size_t vm_memory_limit(lua_State *L) { return vm_of(L)->limit; }
void vm_set_memory_limit(lua_State *L, size_t limit) { vm_of(L)->limit = limit; }

int vm_limit_off(lua_State *L) {
  struct vm *vm = vm_of(L);
  int was = vm->limit_on;
  vm->limit_on = 0;
  return was;
}

void vm_limit_restore(lua_State *L, int was_on) { vm_of(L)->limit_on = was_on; }

/* Deadline check every HOOK_COUNT instructions.  Once past the deadline it
 * re-arms to run on every instruction, so the first instruction after a
 * pcall that caught the error raises again, one level further out: a pcall
 * in the handler cannot absorb it. */
static void vm_hook(lua_State *L, lua_Debug *ar) {
  struct vm_task *t = vm_of(L)->current;
  if (t->deadline_ns && clock_coarse_ns() >= t->deadline_ns) {
    lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1);
    vm_raise_deadline(L);
  }
  if (t->cancel && atomic_load_explicit(t->cancel, memory_order_relaxed)) {
    lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1);
    vm_error_push(L, cancel_class.name, cancel_class.parent,
                  "background thread %I was cancelled", (lua_Integer)t->thread_id);
    lua_error(L);
  }
}

/* ---- replacements of standard functions ------------------------------ */

static int refused_exit(lua_State *L) {
  return luaL_error(L, "os.exit is not allowed inside luahost serve "
                       "(the host keeps running; return a response instead)");
}

/* Test mode: os.exit(code) raises {luahost_exit = code}, which the test
 * runner turns into the file's result; a handler run by apptest gets
 * serve's refusal. */
static int caught_exit(lua_State *L) {
  /* inside a request (apptest) as serve would: refused */
  if (vm_of(L)->current->request_id) return refused_exit(L);
  int code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, 0);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "luahost_exit");
  return lua_error(L);
}

/* load(chunk [, name [, mode [, env]]]) and loadfile(name [, mode [, env]])
 * with mode forced to "t".  Upvalues: the original function, and the
 * position of its mode argument. */
static int text_only(lua_State *L) {
  int at = (int)lua_tointeger(L, lua_upvalueindex(2));
  int n = lua_gettop(L);
  if (n < at) lua_settop(L, n = at);
  lua_pushliteral(L, "t");
  lua_replace(L, at);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

static int dofile_cont(lua_State *L, int status, lua_KContext k) {
  return lua_gettop(L) - 1;
}

static int text_dofile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, fname, "t") != LUA_OK) return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_cont);
  return dofile_cont(L, 0, 0);
}

/* debug.sethook would remove the host's deadline hook. */
static int refused_sethook(lua_State *L) {
  return luaL_error(L, "debug.sethook is not available in luahost "
                       "(the host's hook enforces deadlines)");
}

/* package.searchers[2] replacement: Lua files on package.path, text only. */
static int text_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 2);            /* stack: name package filename|nil err */
  if (lua_isnil(L, -2)) return 1;   /* the error message */
  const char *filename = lua_tostring(L, -2);
  if (luaL_loadfilex(L, filename, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, filename, lua_tostring(L, -1));
  lua_pushstring(L, filename);
  return 2;
}

static void text_only_global(lua_State *L, const char *name, int mode_at) {
  lua_getglobal(L, name);
  lua_pushinteger(L, mode_at);
  lua_pushcclosure(L, text_only, 2);
  lua_setglobal(L, name);
}

/* package.path (package on top): the given directories first, then the
 * defaults.  Not inlined: the buffer stays out of setup's frame, which is
 * on the stack while the libraries open (a smaller idle thread stack). */
static __attribute__((noinline)) void set_path(lua_State *L, const struct vm_opts *o) {
  if (o->package_path) {
    lua_pushstring(L, o->package_path);
    lua_setfield(L, -2, "path");
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < 3 && o->path_dirs[i]; i++) {
    const char *d = o->path_dirs[i];
    luaL_addstring(&b, d); luaL_addstring(&b, "/?.lua;");
    luaL_addstring(&b, d); luaL_addstring(&b, "/?/init.lua;");
  }
  lua_getfield(L, -2, "path");
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "path");
}

/* Runs inside lua_pcall so that any failure while building is caught. */
static int setup(lua_State *L) {
  const struct vm_opts *o = lua_touserdata(L, 1);
  luaL_openlibs(L);
  text_only_global(L, "load", 3);
  text_only_global(L, "loadfile", 2);
  lua_pushcfunction(L, text_dofile);
  lua_setglobal(L, "dofile");
  if (o->exit_mode != VM_EXIT_ALLOW) {
    lua_getglobal(L, "os");
    lua_pushcfunction(L, o->exit_mode == VM_EXIT_CATCH ? caught_exit : refused_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
  }
  lua_getglobal(L, "debug");
  lua_pushcfunction(L, refused_sethook);
  lua_setfield(L, -2, "sethook");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  lua_pushcfunction(L, text_searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 1);
  set_path(L, o);                 /* stack: package */
  lua_getfield(L, -1, "preload");
  for (const luaL_Reg *r = o->preload; r && r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  return 0;
}

static void log_task(struct vm *vm, int level, const char *msg, size_t len) {
  struct vm_task *t = vm->current;
  char tid[24];
  if (t->request_id) {
    log_text(level, "request_id", t->request_id, msg, len);
  } else if (t->thread_id) {
    snprintf(tid, sizeof tid, "%lld", (long long)t->thread_id);
    log_text(level, "thread_id", tid, msg, len);
  } else {
    log_text(level, NULL, NULL, msg, len);
  }
}

void vm_log(lua_State *L, int level, const char *msg, size_t len) {
  log_task(vm_of(L), level, msg, len);
}

#define VM_WARN_MAX 512

/* Lua's warning function: pieces are joined (up to the buffer), control
 * messages "@on"/"@off" switch logging. */
static void vm_warn(void *ud, const char *msg, int tocont) {
  struct vm *vm = ud;
  if (vm->warn_len == 0 && !tocont && msg[0] == '@') {
    if (!strcmp(msg, "@off")) vm->warn_off = 1;
    else if (!strcmp(msg, "@on")) vm->warn_off = 0;
    return;
  }
  if (!vm->warn && !(vm->warn = malloc(VM_WARN_MAX))) return;
  size_t n = strlen(msg), room = VM_WARN_MAX - vm->warn_len;
  if (n > room) n = room;
  memcpy(vm->warn + vm->warn_len, msg, n);
  vm->warn_len += n;
  if (tocont) return;
  if (!vm->warn_off) log_task(vm, LOG_WARNING, vm->warn, vm->warn_len);
  vm->warn_len = 0;
}

lua_State *vm_new(const struct vm_opts *o, char *err, size_t errlen) {
  struct vm *vm = calloc(1, sizeof *vm);
  if (!vm) { snprintf(err, errlen, "cannot build a Lua state: out of memory"); return NULL; }
  vm->building = 1;
  lua_State *L = lua_newstate(vm_alloc, vm);
  if (!L) {
    arena_release(&vm->arena);
    free(vm);
    snprintf(err, errlen, "cannot build a Lua state: out of memory");
    return NULL;
  }
  *(struct vm **)lua_getextraspace(L) = vm;
  lua_setwarnf(L, vm_warn, vm);
  vm->role = o->role;
  vm->current = &vm->base;
  /* Everything made while building is live: a collection would find
   * nothing to free (measured: its steps were a tenth of a thread start). */
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, setup);
  lua_pushlightuserdata(L, (void *)o);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "cannot build a Lua state: %s", lua_tostring(L, -1));
    vm_close(L);
    return NULL;
  }
  /* The first cycle waits until the heap has grown by its built size, as
   * it would after a full collection (a negative step credits the
   * collector; restarted with no credit, its first step was a whole cycle
   * over the fresh state). */
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCSTEP, -lua_gc(L, LUA_GCCOUNT));
  vm_arm_hook(L);
  vm->limit = o->memory_limit;
  vm->building = 0;
  return L;
}

/* In a bare state: package opened, its path set as a state built with o
 * gets it; returns the path. */
static int path_only(lua_State *L) {
  const struct vm_opts *o = lua_touserdata(L, 1);
  luaL_requiref(L, LUA_LOADLIBNAME, luaopen_package, 0);
  set_path(L, o);
  lua_getfield(L, -1, "path");
  return 1;
}

char *vm_package_path(const struct vm_opts *o) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  struct vm_opts dirs_only = *o;
  dirs_only.package_path = NULL;
  char *path = NULL;
  lua_pushcfunction(L, path_only);
  lua_pushlightuserdata(L, &dirs_only);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) path = strdup(lua_tostring(L, -1));
  lua_close(L);
  return path;
}

/* Compiled embedded scripts, shared by all states: written once under
 * script_lock, read-only after. */
static pthread_mutex_t script_lock = PTHREAD_MUTEX_INITIALIZER;
#define MAX_COMPILED 16   /* room for every file of scripts/ (embedded.c) */
static struct compiled { const char *name; char *code; size_t len; } compiled[MAX_COMPILED];

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  struct compiled *c = ud;
  char *code = realloc(c->code, c->len + n);
  if (!code) return 1;
  memcpy(code + c->len, p, n);
  c->code = code;
  c->len += n;
  return 0;
}

int vm_load_script(lua_State *L, const char *name) {
  char chunkname[64];
  snprintf(chunkname, sizeof chunkname, "=%s", name);
  pthread_mutex_lock(&script_lock);
  struct compiled *c = NULL;
  for (int i = 0; i < MAX_COMPILED && compiled[i].name; i++)
    if (!strcmp(compiled[i].name, name)) { c = &compiled[i]; break; }
  if (c) {
    pthread_mutex_unlock(&script_lock);
    return luaL_loadbufferx(L, c->code, c->len, chunkname, "b");
  }
  const struct embedded_script *e = embedded_scripts;
  while (e->name && strcmp(e->name, name)) e++;
  int st;
  if (!e->name) {
    lua_pushfstring(L, "no embedded script '%s'", name);
    st = LUA_ERRFILE;
  } else if ((st = luaL_loadbufferx(L, e->text, e->len, chunkname, "t")) == LUA_OK) {
    for (int i = 0; i < MAX_COMPILED; i++) {
      if (compiled[i].name) continue;
      struct compiled tmp = {NULL, NULL, 0};
      if (lua_dump(L, dump_writer, &tmp, 0) == 0) {
        tmp.name = e->name;
        compiled[i] = tmp;
      } else {
        free(tmp.code);
      }
      break;
    }
  }
  pthread_mutex_unlock(&script_lock);
  return st;
}

void vm_arm_hook(lua_State *L) { lua_sethook(L, vm_hook, LUA_MASKCOUNT, HOOK_COUNT); }

void vm_close(lua_State *L) {
  if (!L) return;
  struct vm *vm = vm_of(L);
  vm->limit_on = 0;
  arena_closing(&vm->arena);
  lua_close(L);
  arena_release(&vm->arena);
  free(vm->warn);
  free(vm);
}
