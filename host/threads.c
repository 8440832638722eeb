/* threads: one fresh state per background thread, outcomes, limits. */
#include "threads.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/fault.h"
#include "base/sync.h"
#include "base/instance.h"
#include "base/log.h"
#include "store/queue.h"
#include "vm/call.h"
#include "vm/state.h"
#include "task.h"

#define MAX_KEPT_OUTCOMES 1000

/* The starter waits on this (on its own stack) until the thread runs or
 * fails to build its state.  Guarded by `tl`. */
struct start_sync {
  int state;                    /* 0 waiting, 1 running, -1 no state (err) */
  char err[512];
  pthread_cond_t cond;
};

/* One background thread.  Fields marked (tl) are guarded by `tl`; id,
 * outcome and is_hook are set by the starter before the record is linked
 * into `by_id` and read-only after. */
struct bt {
  int64_t id;
  struct queue *outcome;        /* capacity 1; the record holds a reference */
  atomic_int cancel;            /* set by bt.cancel; read by the thread's count hook */
  int alive;                    /* (tl) */
  struct start_sync *sync;      /* (tl) the starter's, until the thread runs */
  int is_hook;                  /* the shutdown hook: no outcome kept */
  struct value target, args, kwargs;   /* owned by the thread while it runs */
  struct bt *hnext;             /* (tl) the next record in its by_id bucket */
  struct bt *next_done, *prev_done;   /* (tl) finished records, oldest first */
};

static pthread_mutex_t tl = PTHREAD_MUTEX_INITIALIZER;
#define ID_BUCKETS 1024
static struct bt *by_id[ID_BUCKETS];       /* (tl) all records, by id % ID_BUCKETS */
static struct bt *done_head, *done_tail;   /* (tl) finished, oldest first */
static int ndone;                          /* (tl) */
static int active;                         /* (tl) reserved or running threads */
static int shutting_down;                  /* (tl) */
static int64_t next_id;                    /* (tl) */
static pthread_cond_t idle_cond;           /* (tl) signalled when active drops */
static struct value hook;                  /* (tl) the shutdown hook's target */
/* Set by threads_init on the main thread before any background thread
 * starts; read-only after (app_dir is cfg.app_dir's own copy). */
static struct threads_config cfg;
static char *app_dir;
static char *package_path;      /* every thread state's: made by threads_init, as cfg */


static struct bt **bucket(int64_t id) { return &by_id[(uint64_t)id % ID_BUCKETS]; }

/* (tl) */
static struct bt *find(int64_t id) {
  for (struct bt *b = *bucket(id); b; b = b->hnext)
    if (b->id == id) return b;
  return NULL;
}

/* (tl) every record, in ID buckets */
#define FOR_EACH_RECORD(b) \
  for (int i_ = 0; i_ < ID_BUCKETS; i_++) \
    for (struct bt *b = by_id[i_], *n_; b && (n_ = b->hnext, 1); b = n_)

/* (tl) b (its id set) in its bucket */
static void link_record(struct bt *b) {
  b->hnext = *bucket(b->id);
  *bucket(b->id) = b;
}

/* (tl) takes b out of its bucket */
static void unlink_record(struct bt *b) {
  struct bt **p = bucket(b->id);
  while (*p != b) p = &(*p)->hnext;
  *p = b->hnext;
}

/* (tl) unlinks and frees a finished record */
static void drop(struct bt *b) {
  unlink_record(b);
  if (b->prev_done || done_head == b) {   /* on the finished list */
    if (b->prev_done) b->prev_done->next_done = b->next_done; else done_head = b->next_done;
    if (b->next_done) b->next_done->prev_done = b->prev_done; else done_tail = b->prev_done;
    ndone--;
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

/* Encodes the failure {ok = false, err = msg} into out. */
static void failure(lua_State *L, const char *msg, struct value *out) {
  char err[256];
  value_reset(out);
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "ok");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "err");
  if (value_encode(L, -1, "outcome", out, err, sizeof err) < 0) value_reset(out);
  lua_pop(L, 1);
}

/* A thread's fresh state.  (A full collection after building it was
 * measured: it no longer makes an idle thread smaller, and cost 3% of
 * starts per second.) */
static lua_State *new_state(char *err, size_t errlen) {
  struct vm_opts vo = {VM_BACKEND, VM_EXIT_REFUSE, cfg.memory_limit,
                       {cfg.app_dir, NULL, NULL}, cfg.preload, package_path};
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
      char msg[1100];
      snprintf(msg, sizeof msg, "background_thread.Error: %s", err);
      failure(L, msg, outcome);
    }
  } else {
    const char *msg = vm_error_text(L);
    log_msg(LOG_ERROR, "thread_id", tid, "background thread %s ended with an error: %s",
            b->is_hook ? "(shutdown hook)" : tid, msg);
    failure(L, msg, outcome);
  }
}

static int reserve_spare(void);
static int start_spare(void);

/* Runs b's target in L (its fresh state), closes L, then publishes the
 * outcome, releases the slot and starts a spare in its place. */
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
  pthread_mutex_lock(&tl);
  b->alive = 0;
  active--;
  pthread_cond_broadcast(&idle_cond);
  if (!keep) {
    drop(b);
  } else {
    b->next_done = NULL;
    b->prev_done = done_tail;
    if (done_tail) done_tail->next_done = b; else done_head = b;
    done_tail = b;
    if (++ndone > MAX_KEPT_OUTCOMES) drop(done_head);
  }
  int spare = reserve_spare();
  pthread_mutex_unlock(&tl);
  if (keep && outcome.len) queue_push(q, &outcome);   /* b may be gone: use q */
  else if (keep) queue_close(q, QW_CLOSED);   /* no memory to copy even a failure:
                                                 joiners are not left waiting */
  value_free(&outcome);
  queue_release(q);
  if (spare) start_spare();
}

/* A thread made for one target: builds its state, tells the starter it
 * runs (or why it cannot), runs the target, ends. */
static void *thread_main(void *arg) {
  struct bt *b = arg;
  char err[512];
  lua_State *L = new_state(err, sizeof err);
  pthread_mutex_lock(&tl);
  struct start_sync *sync = b->sync;
  b->sync = NULL;
  sync->state = L ? 1 : -1;
  if (!L) snprintf(sync->err, sizeof sync->err, "%s", err);
  pthread_cond_signal(&sync->cond);
  pthread_mutex_unlock(&tl);
  if (L) run_job(b, L);   /* else the starter undoes b */
  return NULL;
}

/* ---- spare threads ------------------------------------------------------
 * A spare is a new thread that already holds a fresh state and waits for
 * its one target; a start hands the target to a spare (no thread creation
 * or state building on the starter's path) and the replenisher thread
 * makes a new spare in the background.  Each thread still runs exactly one
 * target, and each state is closed after it. */

struct spare {
  sem_t go;                     /* posted once, by whoever took the spare off
                                   the list (a starter, or threads_shutdown);
                                   destroyed by the spare */
  struct bt *job;               /* set under tl while on the list; read by the
                                   spare after the post (NULL: shutdown) */
  struct spare *next;           /* (tl) idle spares */
};

static struct spare *spares;    /* (tl) idle spares, ready */
static int nspares, spares_making;   /* (tl) ready, and being made */
static int spares_wanted;       /* set by threads_init (main thread, first); read-only after */
static pthread_cond_t replenish_cond;   /* (tl) */
static pthread_cond_t spare_cond;       /* (tl) a spare is ready, or one in the making failed */

/* A spare's state, or NULL (the spare then ends).  Not inlined: its
 * buffer is off the stack while the spare waits and runs.  Host modules
 * load on require, as in any state (measured: loading `runtime` ahead
 * cost 4 KiB per idle thread and a tenth of the starts per second, for no
 * gain in latency). */
static __attribute__((noinline)) lua_State *spare_state(void) {
  char err[512];
  return new_state(err, sizeof err);
}

/* (tl) A spare counted as making is ready or failed.  Every start waiting
 * for one is woken: with none left in the making, they go on to make their
 * own rather than wait for a spare that never comes. */
static void made_spare(void) {
  spares_making--;
  pthread_cond_broadcast(&spare_cond);
}

static void *spare_main(void *arg) {
  struct spare sp;
  lua_State *L = spare_state();
  sem_init(&sp.go, 0, 0);
  sp.job = NULL;
  pthread_mutex_lock(&tl);
  made_spare();
  if (!L || shutting_down) {   /* cannot serve: leave the start path alone */
    pthread_mutex_unlock(&tl);
    sem_destroy(&sp.go);
    if (L) vm_close(L);
    return NULL;
  }
  sp.next = spares;
  spares = &sp;
  nspares++;
  pthread_mutex_unlock(&tl);
  /* A semaphore, not a condition variable: the post (made after whoever
   * took us off the list set job) wakes us without our having to take
   * `tl` back before running the target. */
  while (sem_wait(&sp.go) != 0) {}
  struct bt *b = sp.job;   /* NULL: shutdown */
  sem_destroy(&sp.go);
  if (b) run_job(b, L);
  else vm_close(L);
  return NULL;
}

/* Keeps spares_wanted spares ready. */
static void *replenisher_main(void *arg) {
  pthread_mutex_lock(&tl);
  while (!shutting_down) {
    if (reserve_spare()) {
      pthread_mutex_unlock(&tl);
      int rc = start_spare();
      pthread_mutex_lock(&tl);
      if (rc != 0) {
        struct timespec ts = sync_deadline(100000000u);   /* retry later */
        pthread_cond_timedwait(&replenish_cond, &tl, &ts);
      }
      continue;
    }
    pthread_cond_wait(&replenish_cond, &tl);
  }
  pthread_mutex_unlock(&tl);
  return NULL;
}

/* A finishing thread starts the spare that replaces it, so that a start
 * wakes one thread (the spare), not the replenisher too: about a tenth
 * more starts per second with 2 in flight.  The replenisher fills in when
 * the last spare is taken (threads that run long) or a start fails.
 * (tl) reserve_spare: 1 when a spare is to be made (counted as making). */
static int reserve_spare(void) {
  if (!spares_wanted || shutting_down || nspares + spares_making >= spares_wanted) return 0;
  spares_making++;
  return 1;
}

/* Starts the spare reserve_spare counted, outside tl: 0, or -1 when no
 * thread could be made (then no longer counted; the replenisher retries
 * later). */
static int start_spare(void) {
  if (sync_spawn_detached(spare_main, NULL) == 0) return 0;
  pthread_mutex_lock(&tl);
  made_spare();
  pthread_cond_signal(&replenish_cond);
  pthread_mutex_unlock(&tl);
  return -1;
}

/* (tl) A ready spare takes b: the spare, to be woken (sem_post) once tl
 * is released, or NULL when none is ready.  Until that post the spare
 * waits and, off the list, is reached by no one else. */
static struct spare *hand_to_spare(struct bt *b) {
  struct spare *sp = spares;
  if (!sp) return NULL;
  spares = sp->next;
  nspares--;
  sp->job = b;
  if (nspares + spares_making == 0) pthread_cond_signal(&replenish_cond);
  return sp;
}

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
    return BT_SYSTEM;
  }
  b->outcome = q;
  b->is_hook = is_hook;
  b->target = *target; b->args = *args; b->kwargs = *kwargs;   /* taken in every case */
  memset(target, 0, sizeof *target); memset(args, 0, sizeof *args);
  memset(kwargs, 0, sizeof *kwargs);
  int64_t refused = 0;
  pthread_mutex_lock(&tl);
  if (shutting_down && !is_hook) {
    snprintf(err, errlen, "the instance is shutting down: no new background threads");
    refused = BT_SHUTDOWN;
  } else if (!is_hook && active >= cfg.max_threads) {
    snprintf(err, errlen, "max_background_threads (%d) background threads are already active",
             cfg.max_threads);
    refused = BT_LIMIT;
  }
  if (refused) {
    pthread_mutex_unlock(&tl);
    discard(b);
    return refused;
  }
  active++;   /* the reservation, released when the thread's state is closed */
  b->id = ++next_id;
  b->alive = 1;
  link_record(b);
  int64_t id = b->id;
  /* None ready but some in the making (starts outrun their replacement):
   * wait for the first, which is less work than a thread and a state of
   * our own and comes sooner. */
  struct spare *sp;
  while (!(sp = hand_to_spare(b)) && spares_making > 0 && !shutting_down)
    pthread_cond_wait(&spare_cond, &tl);
  if (sp) {   /* the spare runs: its ID can be returned now */
    pthread_mutex_unlock(&tl);
    sem_post(&sp->go);
    return id;
  }
  if (spares_wanted) pthread_cond_signal(&replenish_cond);   /* none ready: make more */
  struct start_sync sync = {0};
  pthread_cond_init(&sync.cond, NULL);
  b->sync = &sync;
  int rc = sync_spawn_detached(thread_main, b);
  if (rc != 0) snprintf(err, errlen, "cannot create a thread: %s", strerror(rc));
  else while (!sync.state) pthread_cond_wait(&sync.cond, &tl);
  if (rc == 0 && sync.state < 0) snprintf(err, errlen, "%s", sync.err);
  if (rc != 0 || sync.state < 0) {   /* never ran: undo the reservation */
    unlink_record(b);
    active--;
    pthread_cond_broadcast(&idle_cond);
    id = BT_SYSTEM;
  }
  pthread_mutex_unlock(&tl);
  pthread_cond_destroy(&sync.cond);
  if (id == BT_SYSTEM) discard(b);   /* else b may be gone by now */
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
  cfg = *c;
  free(app_dir);
  app_dir = c->app_dir ? strdup(c->app_dir) : NULL;
  cfg.app_dir = app_dir;
  /* package.path costs a tenth of a thread state to assemble: once here */
  struct vm_opts vo = {VM_BACKEND, VM_EXIT_REFUSE, 0, {app_dir, NULL, NULL}, NULL, NULL};
  free(package_path);
  package_path = vm_package_path(&vo);   /* NULL: each state builds its own */
  sync_cond_init(&idle_cond);
  pthread_cond_init(&replenish_cond, NULL);
  pthread_cond_init(&spare_cond, NULL);
  spares_wanted = c->spares;
  if (spares_wanted > 0) {
    if (sync_spawn_detached(replenisher_main, NULL) != 0) spares_wanted = 0;
  }
}

int64_t threads_start(struct value *target, struct value *args, struct value *kwargs,
                      char *err, size_t errlen) {
  return spawn(target, args, kwargs, 0, err, errlen);
}

struct queue *threads_outcome(int64_t id) {
  pthread_mutex_lock(&tl);
  struct bt *b = find(id);
  struct queue *q = b && !b->is_hook ? b->outcome : NULL;
  if (q) queue_retain(q);
  pthread_mutex_unlock(&tl);
  return q;
}

void threads_forget(int64_t id) {
  pthread_mutex_lock(&tl);
  struct bt *b = find(id);
  if (b && !b->alive) {
    /* a joiner took the outcome: others waiting for it are told now */
    queue_close(b->outcome, QW_CLOSED);
    drop(b);
  }
  pthread_mutex_unlock(&tl);
}

int threads_is_alive(int64_t id) {
  pthread_mutex_lock(&tl);
  struct bt *b = find(id);
  int alive = b && b->alive;
  pthread_mutex_unlock(&tl);
  return alive;
}

int threads_active(void) {
  pthread_mutex_lock(&tl);
  int n = active;
  pthread_mutex_unlock(&tl);
  return n;
}

int threads_max(void) { return cfg.max_threads; }

int threads_cancel(int64_t id) {
  pthread_mutex_lock(&tl);
  struct bt *b = find(id);
  int alive = b && b->alive;
  if (alive) atomic_store(&b->cancel, 1);
  pthread_mutex_unlock(&tl);
  if (alive) task_poke_all();   /* its wait, if any, ends now */
  return alive;
}

void threads_shutdown(void) {
  pthread_mutex_lock(&tl);
  shutting_down = 1;
  while (spares) {   /* off the list, then woken with no job: they end */
    struct spare *sp = spares;
    spares = sp->next;
    nspares--;
    sem_post(&sp->go);
  }
  pthread_cond_signal(&replenish_cond);
  pthread_cond_broadcast(&spare_cond);   /* starts waiting for a spare go on */
  pthread_mutex_unlock(&tl);
}

int threads_wait_idle(uint64_t timeout_ns) {
  struct timespec ts = sync_deadline(timeout_ns == UINT64_MAX ? 0 : timeout_ns);
  pthread_mutex_lock(&tl);
  while (active > 0) {
    if (timeout_ns == UINT64_MAX) pthread_cond_wait(&idle_cond, &tl);
    else if (pthread_cond_timedwait(&idle_cond, &tl, &ts) == ETIMEDOUT) break;
  }
  int left = active;
  pthread_mutex_unlock(&tl);
  return left ? -1 : 0;
}

void threads_log_running(void) {
  pthread_mutex_lock(&tl);
  FOR_EACH_RECORD(b)
    if (b->alive) {
      char tid[24];
      snprintf(tid, sizeof tid, "%lld", (long long)b->id);
      log_msg(LOG_WARNING, "thread_id", tid, "background thread %s%s still running after "
              "the shutdown grace", tid, b->is_hook ? " (shutdown hook)" : "");
    }
  pthread_mutex_unlock(&tl);
}

void threads_set_hook(struct value *target, struct value *prev) {
  pthread_mutex_lock(&tl);
  *prev = hook;
  memset(&hook, 0, sizeof hook);
  if (target) {
    hook = *target;
    memset(target, 0, sizeof *target);
  }
  pthread_mutex_unlock(&tl);
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
  pthread_mutex_lock(&tl);
  FOR_EACH_RECORD(b)   /* only finished records are freed; running threads own theirs */
    if (!b->alive) drop(b);
  value_free(&hook);
  pthread_mutex_unlock(&tl);
}
