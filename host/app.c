/* app: serve, run and test. */
#include "app.h"

#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "base/log.h"
#include "bindings/bindings.h"
#include "redis_calls.h"
#include "remote_calls.h"
#include "server.h"
#include "store/remote.h"
#include "store/dict.h"
#include "store/queue.h"
#include "task.h"
#include "threads.h"
#include "vm/call.h"
#include "vm/state.h"

/* Which host modules each context gets. */
static const luaL_Reg serve_modules[] = {
  {"runtime", luaopen_runtime},
  {"shared", luaopen_shared},
  {"background_thread", luaopen_background_thread},
  {"urlfetch", luaopen_urlfetch},
  {"json", luaopen_json},
  {"redis", luaopen_redis},
  {NULL, NULL}
};
static const luaL_Reg test_modules[] = {
  {"runtime", luaopen_runtime},
  {"shared", luaopen_shared},
  {"background_thread", luaopen_background_thread},
  {"urlfetch", luaopen_urlfetch},
  {"json", luaopen_json},
  {"apptest", luaopen_apptest},
  {"redis", luaopen_redis},
  {NULL, NULL}
};

/* Background threads get the serve modules; limits from the app. */
static void configure_threads(int max, size_t memory_limit, const char *dir, int role) {
  /* backends keep spare threads with fresh states, so that a start hands
   * its target over at once (SPEC: frontends start no threads) */
  struct threads_config tc = {max, memory_limit, dir, serve_modules,
                              role == VM_BACKEND && max > 0 ? 4 : 0, role};
  vm_set_cancel_class(BT_CLASS_CANCELLED, BT_CLASS_ERROR);
  threads_init(&tc);
}

/* The Redis servers of app.lua, and shared on one of them (shared.store). */
static void configure_redis(const struct config *cfg) {
  const char *names[REDIS_CALLS_MAX], *urls[REDIS_CALLS_MAX];
  int n = cfg->nredis < REDIS_CALLS_MAX ? cfg->nredis : REDIS_CALLS_MAX;
  for (int i = 0; i < n; i++) {
    names[i] = cfg->redis[i].name;
    urls[i] = cfg->redis[i].url;
  }
  redis_calls_configure(names, urls, n);
  if (!cfg->store) return;
  remote_configure(cfg->store_prefix, (unsigned)(cfg->store_timeout * 1000.0 + 0.5));
  for (int i = 0; i < cfg->nqueues; i++)
    remote_configure_queue(cfg->queues[i].name, cfg->queues[i].size);
  remote_calls_configure(redis_calls_find(cfg->store));
}

/* Capacities of the shared dicts and queues named in app.lua. */
static void configure_stores(const struct config *cfg) {
  for (int i = 0; i < cfg->ndicts; i++) dict_configure(cfg->dicts[i].name, cfg->dicts[i].size);
  for (int i = 0; i < cfg->nqueues; i++) queue_configure(cfg->queues[i].name, cfg->queues[i].size);
  configure_redis(cfg);
}

/* Process exit: what the stores hold (values may reference other stores). */
static void free_stores(void) {
  threads_free_all();
  queue_free_all();
  dict_free_all();
}

/* Loads the configuration: 0, or the exit status after the message (2 for
 * a configuration error, 1 when the host itself failed). */
static int load_config(struct config *cfg, const char *dir, const struct config_cli *cli) {
  char err[2048];
  int rc = config_load(cfg, dir, cli, err, sizeof err);
  if (rc == 0) return 0;
  fprintf(stderr, "luahost: %s\n", err);
  config_free(cfg);
  return rc == LH_ESYSTEM ? 1 : 2;
}

int app_serve(const char *app_dir, const struct config_cli *cli) {
  struct config cfg;
  int rc = load_config(&cfg, app_dir, cli);
  if (rc != 0) return rc;
  log_set_json(cfg.log_json);
  configure_stores(&cfg);
  configure_threads(cfg.max_background_threads, cfg.memory_limit, cfg.app_dir, cfg.role);
  rc = server_run(&cfg, serve_modules);
  config_free(&cfg);
  free_stores();
  return rc;
}

/* The directory of a file, as an absolute path when possible. */
static void dir_of(const char *file, char out[PATH_MAX]) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", file);
  const char *d = dirname(tmp);
  if (!realpath(d, out)) snprintf(out, PATH_MAX, "%s", d);
}

/* run: the script's directory is its app; an app.lua there (optional)
 * gives the limits and shared capacities, as for serve. */
int app_run(const char *script, int argc, char **argv) {
  char err[2048], dir[PATH_MAX], app_lua[PATH_MAX + 16];
  struct config cfg;
  size_t memory_limit = CONFIG_DEFAULT_MEMORY_LIMIT;
  int max_threads = CONFIG_DEFAULT_MAX_THREADS;
  dir_of(script, dir);
  snprintf(app_lua, sizeof app_lua, "%s/app.lua", dir);
  if (access(app_lua, F_OK) == 0) {
    struct config_cli cli;
    memset(&cli, 0, sizeof cli);
    int rc = load_config(&cfg, dir, &cli);
    if (rc != 0) return rc;
    memory_limit = cfg.memory_limit;
    max_threads = cfg.max_background_threads;
    configure_stores(&cfg);
    config_free(&cfg);
  }
  configure_threads(max_threads, memory_limit, dir, VM_BACKEND);
  struct vm_opts vo = {VM_BACKEND, VM_EXIT_ALLOW, memory_limit, {dir, NULL, NULL},
                       serve_modules, NULL};
  lua_State *L = vm_new(&vo, err, sizeof err);
  if (!L) { fprintf(stderr, "luahost: %s\n", err); return 1; }
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  int rc = 0;
  if (luaL_loadfilex(L, script, "t") != LUA_OK) {
    fprintf(stderr, "luahost: %s\n", lua_tostring(L, -1));
    rc = 1;
  } else {
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    if (vm_pcall(L, argc, 0) != LUA_OK) {
      fprintf(stderr, "luahost: %s\n", vm_error_text(L));
      rc = 1;
    }
  }
  threads_wait_idle(UINT64_MAX);   /* as a Python program waits for its threads */
  task_thread_end();
  vm_close(L);
  free_stores();
  return rc;
}

/* ---- test ------------------------------------------------------------- */

struct files { char **v; int n, cap; };

static void add_file(struct files *f, const char *path) {
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 16;
    f->v = realloc(f->v, (size_t)f->cap * sizeof *f->v);
    if (!f->v) abort();
  }
  f->v[f->n++] = strdup(path);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every test_*.lua under dir, recursively.  A symlink to a directory is
 * not followed (as find and os.walk do not): a link to a parent would
 * loop; a symlinked file is taken. */
static void collect(struct files *f, const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  if (!d) return;
  while ((e = readdir(d))) {
    char p[PATH_MAX];
    struct stat st;
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (lstat(p, &st) < 0) continue;
    int link = S_ISLNK(st.st_mode);
    if (link && stat(p, &st) < 0) continue;
    size_t n = strlen(e->d_name);
    if (S_ISDIR(st.st_mode)) { if (!link) collect(f, p); }
    else if (n > 9 && !strncmp(e->d_name, "test_", 5) && !strcmp(e->d_name + n - 4, ".lua"))
      add_file(f, p);
  }
  closedir(d);
}

/* Runs one file; adds the number of tests it ran to *ran. */
static int run_test_file(const char *path, int role, const struct config *cfg,
                         char **lu_args, int nlu_args, long *ran) {
  char err[1024], dir[PATH_MAX];
  dir_of(path, dir);
  struct vm_opts vo = {role, VM_EXIT_CATCH, cfg ? cfg->memory_limit : CONFIG_DEFAULT_MEMORY_LIMIT,
                       {dir, cfg ? cfg->app_dir : NULL, NULL}, test_modules, NULL};
  lua_State *L = vm_new(&vo, err, sizeof err);
  if (!L) { fprintf(stderr, "luahost: %s\n", err); return 1; }
  vm_set_host_data(L, (void *)cfg);
  int rc = 1;
  if (vm_load_script(L, "testrunner") != LUA_OK) {
    fprintf(stderr, "luahost: %s\n", lua_tostring(L, -1));
  } else {
    lua_pushstring(L, path);
    for (int i = 0; i < nlu_args; i++) lua_pushstring(L, lu_args[i]);
    if (vm_pcall(L, 1 + nlu_args, 2) != LUA_OK) {
      fprintf(stderr, "luahost: %s: %s\n", path, vm_error_text(L));
    } else {
      rc = lua_isinteger(L, -2) ? (int)lua_tointeger(L, -2) : 1;
      if (lua_isinteger(L, -1)) *ran += (long)lua_tointeger(L, -1);
    }
  }
  task_thread_end();
  vm_close(L);
  return rc;
}

/* Threads the tests left running (an app's long-lived consumer, say) are
 * cancelled and joined, so that the run ends with its summary.  Returns
 * how many still run after TEST_THREADS_GRACE_NS (logged by ID). */
#define TEST_THREADS_GRACE_NS 10000000000ull
static int end_test_threads(void) {
  if (threads_wait_idle(0) == 0) return 0;
  int n = threads_cancel_all();
  if (n) log_msg(LOG_INFO, NULL, NULL, "luahost test: cancelling %d background thread%s the "
                 "tests left running", n, n == 1 ? "" : "s");
  if (threads_wait_idle(TEST_THREADS_GRACE_NS) == 0) return 0;
  return threads_log_running();
}

int app_test(const char *app_dir, const char *role_name, char **paths, int npaths,
             char **lu_args, int nlu_args) {
  struct config cfg, *cfgp = NULL;
  struct config_cli cli;
  int role = VM_FRONTEND;
  memset(&cli, 0, sizeof cli);
  cli.role = role_name;
  if (app_dir) {
    int rc = load_config(&cfg, app_dir, &cli);
    if (rc != 0) return rc;
    cfgp = &cfg;
    role = cfg.role;
    configure_stores(&cfg);
    configure_threads(cfg.max_background_threads, cfg.memory_limit, cfg.app_dir, role);
  } else if (role_name) {
    if (strcmp(role_name, "frontend") && strcmp(role_name, "backend")) {
      fprintf(stderr, "luahost: option --role: expected \"frontend\" or \"backend\", got '%s'\n",
              role_name);
      return 2;
    }
    role = strcmp(role_name, "backend") == 0 ? VM_BACKEND : VM_FRONTEND;
  }
  struct files files = {0};
  for (int i = 0; i < npaths; i++) {
    struct stat st;
    if (stat(paths[i], &st) < 0) {
      fprintf(stderr, "luahost: test path '%s': no such file or directory\n", paths[i]);
      return 2;
    }
    if (S_ISDIR(st.st_mode)) {
      int before = files.n;
      collect(&files, paths[i]);
      if (files.n > before)   /* qsort's array may not be NULL, even empty */
        qsort(files.v + before, (size_t)(files.n - before), sizeof *files.v, cmp_str);
    } else {
      add_file(&files, paths[i]);
    }
  }
  if (npaths == 0) {
    collect(&files, app_dir ? app_dir : ".");
    if (files.n > 0) qsort(files.v, (size_t)files.n, sizeof *files.v, cmp_str);
  }
  if (!cfgp) configure_threads(CONFIG_DEFAULT_MAX_THREADS, CONFIG_DEFAULT_MEMORY_LIMIT, NULL, role);
  int failed = 0;
  long ran = 0;
  for (int i = 0; i < files.n; i++) {
    printf("== %s\n", files.v[i]);
    fflush(stdout);
    if (run_test_file(files.v[i], role, cfgp, lu_args, nlu_args, &ran) != 0) failed++;
    fflush(stdout);
    free(files.v[i]);
  }
  free(files.v);
  int stuck = end_test_threads();
  printf("luahost test: %d files, %d passed, %d failed; %ld tests ran\n", files.n,
         files.n - failed, failed, ran);
  fflush(stdout);
  if (cfgp) config_free(cfgp);
  if (!stuck) free_stores();   /* a thread that ignored its cancel may still use them */
  if (files.n == 0) {
    fprintf(stderr, "luahost: no tests found (no test_*.lua files)\n");
    return 1;
  }
  if (ran == 0) {   /* an empty run is never a pass (as pytest refuses one) */
    fprintf(stderr, "luahost: no tests found (no test ran in %d files)\n", files.n);
    return 1;
  }
  return failed ? 1 : 0;
}
