/* threads: one fresh state per background thread, outcomes, limits. */
#include "threads.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fault.h"
#include "base/sync.h"
#include "base/list.h"
#include "base/log.h"
#include "metrics.h"
#include "store/queue.h"
#include "vm/call.h"
#include "vm/errors.h"
#include "vm/state.h"
#include "spares.h"
#include "task.h"

#define MAX_KEPT_OUTCOMES 1000

/* The starter waits on this (on its own stack) until the thread runs or
 * fails to build its state.  Guarded by reg.lock. */
struct start_sync {
  int state;                    /* 0 waiting, 1 running, -1 no state (err) */
  char err[512];
  pthread_cond_t cond;
};

/* One background thread.  Fields marked (lock) are guarded by reg.lock; id,
 * outcome and is_hook are set by the starter before the record is linked
 * into `reg.by_id` and read-only after. */
struct bt {
  int64_t id;
  struct queue *outcome;        /* capacity 1; the record holds a reference */
  atomic_int cancel;            /* set by bt.cancel; read by the thread's count hook */
  int alive;                    /* (lock) */
  struct start_sync *sync;      /* (lock) the starter's, until the thread runs */
  int is_hook;                  /* the shutdown hook: no outcome kept */
  struct value target, args, kwargs;   /* owned by the thread while it runs */
  struct bt *hnext;             /* (lock) the next record in its reg.by_id bucket */
  struct list_node done_node;   /* (lock) on reg.done: finished, oldest first */
};

/* The registry of threads.  Fields marked (lock) are guarded by
 * reg.lock, which guards every record's (lock) fields too; lock order:
 * reg.lock, then a queue's (never the spare pool's: spares_take is called
 * without it).  cfg, app_dir and package_path are set by threads_init on
 * the main thread before any background thread starts; read-only after
 * (app_dir is cfg.app_dir's own copy). */
#define ID_BUCKETS 1024
static struct {
  pthread_mutex_t lock;
  struct bt *by_id[ID_BUCKETS];       /* (lock) all records, by id % ID_BUCKETS */
  struct list done;                   /* (lock) finished records, oldest first */
  int ndone;                          /* (lock) */
  int active;                         /* (lock) reserved or running threads */
  int shutting_down;                  /* (lock) */
  int64_t next_id;                    /* (lock) */
  pthread_cond_t idle_cond;           /* (lock) signalled when active drops */
  struct value hook;                  /* (lock) the shutdown hook's target */
  struct threads_config cfg;
  char *app_dir;
  char *package_path;                 /* every thread state's */
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .done = {{&reg.done.head, &reg.done.head}}};

static struct bt **bucket(int64_t id) { return &reg.by_id[(uint64_t)id % ID_BUCKETS]; }

/* (lock) */
static struct bt *find(int64_t id) {
  for (struct bt *b = *bucket(id); b; b = b->hnext)
    if (b->id == id) return b;
  return NULL;
}

/* (lock) every record, in ID buckets */
#define FOR_EACH_RECORD(b) \
  for (int i_ = 0; i_ < ID_BUCKETS; i_++) \
    for (struct bt *b = reg.by_id[i_], *n_; b && (n_ = b->hnext, 1); b = n_)

/* (lock) b (its id set) in its bucket */
static void link_record(struct bt *b) {
  b->hnext = *bucket(b->id);
  *bucket(b->id) = b;
}

/* (lock) takes b out of its bucket */
static void unlink_record(struct bt *b) {
  struct bt **p = bucket(b->id);
  while (*p != b) p = &(*p)->hnext;
  *p = b->hnext;
}

/* (lock) unlinks and frees a finished record */
static void drop(struct bt *b) {
  unlink_record(b);
  if (list_linked(&b->done_node)) {   /* on the finished list */
    list_remove(&b->done_node);
    reg.ndone--;
  }
  queue_release(b->outcome);
  free(b);
}

/* ---- the thread ------------------------------------------------------- */

/* Frees b's encoded target, args and kwargs (each may already be). */
static void free_call(struct bt *b) {
  value_free(&b->target);
  value_free(&b->args);
  value_free(&b->kwargs);
}

/* In the thread's state, protected: pushes the target function, its
 * arguments, and calls it.  Upvalue-free: all data comes from the record. */
static int run_target(lua_State *L) {
  struct bt *b = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (value_decode(L, &b->target, 1) < 0) return luaL_error(L, "corrupt thread target");
  if (lua_type(L, 1) == LUA_TSTRING) {   /* "module:function" */
    const char *spec = lua_tostring(L, 1);
    const char *colon = strchr(spec, ':');
    lua_pushlstring(L, spec, (size_t)(colon - spec));
    if (vm_require(L, lua_tostring(L, -1)) != LUA_OK)
      return luaL_error(L, "target '%s': %s", spec, lua_tostring(L, -1));
    if (!lua_istable(L, -1))
      return luaL_error(L, "target '%s': module '%.*s' did not return a table", spec,
                        (int)(colon - spec), spec);
    lua_getfield(L, -1, colon + 1);
    if (!lua_isfunction(L, -1))
      return luaL_error(L, "target '%s': '%s' is not a function of the module", spec, colon + 1);
    lua_replace(L, 1);
    lua_settop(L, 1);
  }
  int nargs = 0;
  if (b->args.len) {
    if (value_decode(L, &b->args, 1) < 0) return luaL_error(L, "corrupt thread arguments");
    lua_Integer n;
    if (lua_getfield(L, 2, "n") == LUA_TNUMBER) n = lua_tointeger(L, -1);
    else n = (lua_Integer)lua_rawlen(L, 2);
    lua_pop(L, 1);
    luaL_checkstack(L, (int)n + 2, "too many arguments");
    for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
    lua_remove(L, 2);
    nargs = (int)n;
  }
  if (b->kwargs.len) {
    if (value_decode(L, &b->kwargs, 1) < 0) return luaL_error(L, "corrupt thread kwargs");
    nargs++;
  }
  free_call(b);   /* rebuilt in L: the bytes are not kept while the target runs */
  lua_call(L, nargs, LUA_MULTRET);
  /* stack: results...: pack them as {ok = true, n = N, ...} */
  int n = lua_gettop(L);
  lua_createtable(L, n, 2);
  lua_insert(L, 1);
  for (int i = n; i >= 1; i--) lua_rawseti(L, 1, i);
  lua_pushinteger(L, n);
  lua_setfield(L, 1, "n");
  lua_pushboolean(L, 1);
  lua_setfield(L, 1, "ok");
  return 1;
}

/* Encodes the failure {ok = false, err = msg[, class =][, value =]} into
 * out.  errv (0: none) is the value raised: an error object of a host class
 * crosses as its class chain (the joiner gets an instance of that class
 * whose message is msg's, traceback included); another table, a number or
 * a boolean crosses as itself when it can be copied; a string is msg. */
static void failure(lua_State *L, const char *msg, int errv, struct value *out) {
  char err[256];
  value_reset(out);
  errv = errv ? lua_absindex(L, errv) : 0;
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "ok");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "err");
  int t = errv ? lua_type(L, errv) : LUA_TNIL;
  if (t == LUA_TTABLE && vm_error_chain(L, errv)) {
    lua_setfield(L, -2, "class");
  } else if (t == LUA_TTABLE || t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
    lua_pushvalue(L, errv);
    lua_setfield(L, -2, "value");
  }
  if (value_encode(L, -1, "outcome", out, err, sizeof err) < 0) {
    lua_pushnil(L);   /* the value cannot cross: the message alone */
    lua_setfield(L, -2, "value");
    value_reset(out);
    if (value_encode(L, -1, "outcome", out, err, sizeof err) < 0) value_reset(out);
  }
  lua_pop(L, 1);
}

/* A thread's fresh state.  (A full collection after building it was
 * measured: it no longer makes an idle thread smaller, and cost 3% of
 * starts per second.) */
static lua_State *new_state(char *err, size_t errlen) {
  struct vm_opts vo = {reg.cfg.role, VM_EXIT_REFUSE, reg.cfg.memory_limit,
                       {reg.cfg.app_dir, NULL, NULL}, reg.cfg.preload, reg.package_path};
  return vm_new(&vo, err, errlen);
}

/* Encodes the outcome of the target's run (status st, the result or
 * error on top of L).  Its buffers are off the stack while the target
 * runs: an idle thread's touched stack stays small. */
static __attribute__((noinline)) void encode_outcome(struct bt *b, lua_State *L, int st,
                                                     struct value *outcome) {
  char err[1024], tid[24];
  snprintf(tid, sizeof tid, "%lld", (long long)b->id);
  if (fault_hit(FAULT_OUTCOME)) {   /* as if not even a failure could be copied */
    log_msg(LOG_ERROR, "thread_id", tid, "background thread outcome cannot be copied "
            "(injected fault)");
    value_reset(outcome);
    return;
  }
  if (st == LUA_OK) {
    if (value_encode(L, -1, "result", outcome, err, sizeof err) < 0) {
      log_msg(LOG_ERROR, "thread_id", tid, "background thread result cannot be copied: %s",
              err);
      vm_error_push(L, "background_thread.Error", NULL, "%s", err);
      lua_pushvalue(L, -1);
      failure(L, vm_error_text(L), -2, outcome);
    }
  } else {
    lua_pushvalue(L, -1);   /* the value raised stays below its text */
    const char *msg = vm_error_text(L);
    log_msg(LOG_ERROR, "thread_id", tid, "background thread %s ended with an error: %s",
            b->is_hook ? "(shutdown hook)" : tid, msg);
    metrics_count_any(METRIC_THREADS_FAILED);
    failure(L, msg, -2, outcome);
  }
}

/* Runs b's target in L (its fresh state), closes L, then publishes the
 * outcome, releases the slot and asks for a spare in its place. */
static void run_job(struct bt *b, lua_State *L) {
  struct value outcome = {0};
  struct vm_task *base = vm_base(L);
  base->thread_id = b->id;
  base->cancel = &b->cancel;
  lua_pushcfunction(L, run_target);
  lua_pushlightuserdata(L, b);
  encode_outcome(b, L, vm_pcall(L, 1, 1), &outcome);
  task_thread_end();   /* the loop its waits and fetches ran on, if any */
  vm_close(L);
  free_call(b);   /* run_target freed them, unless it failed first */
  /* The state is closed: release the slot, then publish the outcome (so a
   * joiner that starts a new thread at once finds the slot free).  The
   * outcome queue is closed once a joiner took the outcome, or here when
   * there is none to publish. */
  struct queue *q = b->outcome;
  int keep = !b->is_hook;
  queue_retain(q);
  pthread_mutex_lock(&reg.lock);
  b->alive = 0;
  reg.active--;
  pthread_cond_broadcast(&reg.idle_cond);
  if (!keep) {
    drop(b);
  } else {
    list_push_back(&reg.done, &b->done_node);
    if (++reg.ndone > MAX_KEPT_OUTCOMES)
      drop(list_entry(list_first(&reg.done), struct bt, done_node));
  }
  pthread_mutex_unlock(&reg.lock);
  if (keep && outcome.len) queue_push(q, &outcome);   /* b may be gone: use q */
  else if (keep) queue_close(q, LH_ECLOSED);   /* no memory to copy even a failure:
                                                 joiners are not left waiting */
  value_free(&outcome);
  queue_release(q);
  spares_replace();
}

/* A thread made for one target: builds its state, tells the starter it
 * runs (or why it cannot), runs the target, ends. */
static void *thread_main(void *arg) {
  struct bt *b = arg;
  char err[512];
  lua_State *L = new_state(err, sizeof err);
  pthread_mutex_lock(&reg.lock);
  struct start_sync *sync = b->sync;
  b->sync = NULL;
  sync->state = L ? 1 : -1;
  if (!L) snprintf(sync->err, sizeof sync->err, "%s", err);
  pthread_cond_signal(&sync->cond);
  pthread_mutex_unlock(&reg.lock);
  if (L) run_job(b, L);   /* else the starter undoes b */
  return NULL;
}

/* spares_ops: a spare's fresh state, and its job. */
static lua_State *spare_state(void) {
  char err[512];
  return new_state(err, sizeof err);
}

static void run_spare_job(void *job, lua_State *L) { run_job(job, L); }

/* Frees a record whose thread never ran, with its values and queue. */
static void discard(struct bt *b) {
  free_call(b);
  queue_release(b->outcome);
  free(b);
}

static int64_t spawn(struct value *target, struct value *args, struct value *kwargs,
                     int is_hook, char *err, size_t errlen) {
  struct bt *b = calloc(1, sizeof *b);
  struct queue *q = b ? queue_new_private(1) : NULL;
  if (!b || !q) {
    free(b);
    snprintf(err, errlen, "out of memory");
    value_free(target); value_free(args); value_free(kwargs);
    return LH_ESYSTEM;
  }
  b->outcome = q;
  b->is_hook = is_hook;
  b->target = *target; b->args = *args; b->kwargs = *kwargs;   /* taken in every case */
  memset(target, 0, sizeof *target); memset(args, 0, sizeof *args);
  memset(kwargs, 0, sizeof *kwargs);
  int64_t refused = 0;
  pthread_mutex_lock(&reg.lock);
  if (reg.shutting_down && !is_hook) {
    snprintf(err, errlen, "the instance is shutting down: no new background threads");
    refused = LH_ESHUTDOWN;
  } else if (!is_hook && reg.active >= reg.cfg.max_threads) {
    snprintf(err, errlen, "max_background_threads (%d) background threads are already active",
             reg.cfg.max_threads);
    refused = LH_ELIMIT;
  }
  if (refused) {
    pthread_mutex_unlock(&reg.lock);
    discard(b);
    return refused;
  }
  reg.active++;   /* the reservation, released when the thread's state is closed */
  b->id = ++reg.next_id;
  b->alive = 1;
  link_record(b);
  int64_t id = b->id;
  pthread_mutex_unlock(&reg.lock);
  if (spares_take(b)) {   /* a spare runs it: its ID can be returned now */
    metrics_count_any(METRIC_THREADS_STARTED);
    return id;
  }
  /* No spare: a thread and a state of its own. */
  pthread_mutex_lock(&reg.lock);
  struct start_sync sync = {0};
  pthread_cond_init(&sync.cond, NULL);
  b->sync = &sync;
  int rc = sync_spawn_detached(thread_main, b);
  if (rc != 0) snprintf(err, errlen, "cannot create a thread: %s", strerror(rc));
  else while (!sync.state) pthread_cond_wait(&sync.cond, &reg.lock);
  if (rc == 0 && sync.state < 0) snprintf(err, errlen, "%s", sync.err);
  if (rc != 0 || sync.state < 0) {   /* never ran: undo the reservation */
    unlink_record(b);
    reg.active--;
    pthread_cond_broadcast(&reg.idle_cond);
    id = LH_ESYSTEM;
  }
  pthread_mutex_unlock(&reg.lock);
  pthread_cond_destroy(&sync.cond);
  if (id == LH_ESYSTEM) discard(b);   /* else b may be gone by now */
  else metrics_count_any(METRIC_THREADS_STARTED);
  return id;
}

int threads_valid_target(const char *s) {
  const char *colon = strchr(s, ':');
  if (!colon || colon == s || !colon[1] || strchr(colon + 1, ':')) return 0;
  for (const char *p = s; *p; p++)
    if (p != colon && !(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
                        (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
      return 0;
  return 1;
}

void threads_init(const struct threads_config *c) {
  reg.cfg = *c;
  free(reg.app_dir);
  reg.app_dir = c->app_dir ? strdup(c->app_dir) : NULL;
  reg.cfg.app_dir = reg.app_dir;
  /* package.path costs a tenth of a thread state to assemble: once here */
  struct vm_opts vo = {VM_BACKEND, VM_EXIT_REFUSE, 0, {reg.app_dir, NULL, NULL}, NULL, NULL};
  free(reg.package_path);
  reg.package_path = vm_package_path(&vo);   /* NULL: each state builds its own */
  sync_cond_init(&reg.idle_cond);
  static const struct spares_ops ops = {spare_state, run_spare_job};
  spares_init(c->spares, &ops);
}

int64_t threads_start(struct value *target, struct value *args, struct value *kwargs,
                      char *err, size_t errlen) {
  return spawn(target, args, kwargs, 0, err, errlen);
}

struct queue *threads_outcome(int64_t id) {
  pthread_mutex_lock(&reg.lock);
  struct bt *b = find(id);
  struct queue *q = b && !b->is_hook ? b->outcome : NULL;
  if (q) queue_retain(q);
  pthread_mutex_unlock(&reg.lock);
  return q;
}

void threads_forget(int64_t id) {
  pthread_mutex_lock(&reg.lock);
  struct bt *b = find(id);
  if (b && !b->alive) {
    /* a joiner took the outcome: others waiting for it are told now */
    queue_close(b->outcome, LH_ECLOSED);
    drop(b);
  }
  pthread_mutex_unlock(&reg.lock);
}

int threads_is_alive(int64_t id) {
  pthread_mutex_lock(&reg.lock);
  struct bt *b = find(id);
  int alive = b && b->alive;
  pthread_mutex_unlock(&reg.lock);
  return alive;
}

int threads_active(void) {
  pthread_mutex_lock(&reg.lock);
  int n = reg.active;
  pthread_mutex_unlock(&reg.lock);
  return n;
}

int threads_max(void) { return reg.cfg.max_threads; }

int threads_cancel(int64_t id) {
  pthread_mutex_lock(&reg.lock);
  struct bt *b = find(id);
  int alive = b && b->alive;
  if (alive) atomic_store(&b->cancel, 1);
  pthread_mutex_unlock(&reg.lock);
  if (alive) task_poke_all();   /* its wait, if any, ends now */
  return alive;
}

int threads_cancel_all(void) {
  int n = 0;
  pthread_mutex_lock(&reg.lock);
  FOR_EACH_RECORD(b)
    if (b->alive) {
      atomic_store(&b->cancel, 1);
      n++;
    }
  pthread_mutex_unlock(&reg.lock);
  if (n) task_poke_all();   /* their waits end now */
  return n;
}

void threads_shutdown(void) {
  pthread_mutex_lock(&reg.lock);
  reg.shutting_down = 1;
  pthread_mutex_unlock(&reg.lock);
  spares_shutdown();
}

int threads_wait_idle(uint64_t timeout_ns) {
  struct timespec ts = sync_deadline(timeout_ns == UINT64_MAX ? 0 : timeout_ns);
  pthread_mutex_lock(&reg.lock);
  while (reg.active > 0) {
    if (timeout_ns == UINT64_MAX) pthread_cond_wait(&reg.idle_cond, &reg.lock);
    else if (pthread_cond_timedwait(&reg.idle_cond, &reg.lock, &ts) == ETIMEDOUT) break;
  }
  int left = reg.active;
  pthread_mutex_unlock(&reg.lock);
  return left ? -1 : 0;
}

int threads_log_running(void) {
  int n = 0;
  pthread_mutex_lock(&reg.lock);
  FOR_EACH_RECORD(b)
    if (b->alive) {
      n++;
      char tid[24];
      snprintf(tid, sizeof tid, "%lld", (long long)b->id);
      log_msg(LOG_WARNING, "thread_id", tid, "background thread %s%s still running after "
              "the shutdown grace", tid, b->is_hook ? " (shutdown hook)" : "");
    }
  pthread_mutex_unlock(&reg.lock);
  return n;
}

void threads_set_hook(struct value *target, struct value *prev) {
  pthread_mutex_lock(&reg.lock);
  *prev = reg.hook;
  memset(&reg.hook, 0, sizeof reg.hook);
  if (target) {
    reg.hook = *target;
    memset(target, 0, sizeof *target);
  }
  pthread_mutex_unlock(&reg.lock);
}

void threads_run_hook(void) {
  struct value target = {0}, none1 = {0}, none2 = {0};
  char err[256];
  threads_set_hook(NULL, &target);
  if (!target.len) { value_free(&target); return; }
  if (spawn(&target, &none1, &none2, 1, err, sizeof err) < 0)
    log_msg(LOG_ERROR, NULL, NULL, "shutdown hook could not start: %s", err);
}

void threads_free_all(void) {
  pthread_mutex_lock(&reg.lock);
  FOR_EACH_RECORD(b)   /* only finished records are freed; running threads own theirs */
    if (!b->alive) drop(b);
  value_free(&reg.hook);
  pthread_mutex_unlock(&reg.lock);
}
