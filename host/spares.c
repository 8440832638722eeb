/* spares: threads kept ready with a fresh state. */
#include "spares.h"

#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>

#include "base/sync.h"
#include "vm/state.h"

struct spare {
  sem_t go;                     /* posted once, by whoever took the spare off
                                   the list (a taker, or spares_shutdown);
                                   destroyed by the spare */
  void *job;                    /* set under pool.lock while on the list; read
                                   by the spare after the post (NULL: shutdown) */
  struct spare *next;           /* (pool.lock) idle spares */
};

/* The pool.  Fields marked (lock) are guarded by pool.lock; wanted and ops
 * are set by spares_init before any spare exists and read-only after. */
static struct {
  pthread_mutex_t lock;
  struct spare *idle;           /* (lock) ready spares */
  int nidle, making;            /* (lock) ready, and being made */
  int shutting_down;            /* (lock) */
  pthread_cond_t replenish;     /* (lock) the replenisher: make more */
  pthread_cond_t ready;         /* (lock) a spare is ready, or one in the making failed */
  int wanted;
  struct spares_ops ops;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* (lock) A spare counted as making is ready or failed.  Every taker
 * waiting for one is woken: with none left in the making, they go on to
 * make their own rather than wait for a spare that never comes. */
static void made_spare(void) {
  pool.making--;
  pthread_cond_broadcast(&pool.ready);
}

/* A spare's state, or NULL (the spare then ends).  Not inlined: its
 * buffers are off the stack while the spare waits and runs.  Host modules
 * load on require, as in any state (measured: loading `runtime` ahead
 * cost 4 KiB per idle thread and a tenth of the starts per second, for no
 * gain in latency). */
static __attribute__((noinline)) lua_State *spare_state(void) { return pool.ops.make_state(); }

static void *spare_main(void *arg) {
  struct spare sp;
  lua_State *L = spare_state();
  sem_init(&sp.go, 0, 0);
  sp.job = NULL;
  pthread_mutex_lock(&pool.lock);
  made_spare();
  if (!L || pool.shutting_down) {   /* cannot serve: leave the start path alone */
    pthread_mutex_unlock(&pool.lock);
    sem_destroy(&sp.go);
    if (L) vm_close(L);
    return NULL;
  }
  sp.next = pool.idle;
  pool.idle = &sp;
  pool.nidle++;
  pthread_mutex_unlock(&pool.lock);
  /* A semaphore, not a condition variable: the post (made after whoever
   * took us off the list set job) wakes us without our having to take
   * the lock back before running the job. */
  while (sem_wait(&sp.go) != 0) {}
  void *job = sp.job;   /* NULL: shutdown */
  sem_destroy(&sp.go);
  if (job) pool.ops.run(job, L);
  else vm_close(L);
  return NULL;
}

/* (lock) 1 when a spare is to be made (then counted as making). */
static int reserve_spare(void) {
  if (!pool.wanted || pool.shutting_down || pool.nidle + pool.making >= pool.wanted) return 0;
  pool.making++;
  return 1;
}

/* Starts the spare reserve_spare counted, outside the lock: 0, or -1 when
 * no thread could be made (then no longer counted; the replenisher retries
 * later). */
static int start_spare(void) {
  if (sync_spawn_detached(spare_main, NULL) == 0) return 0;
  pthread_mutex_lock(&pool.lock);
  made_spare();
  pthread_cond_signal(&pool.replenish);
  pthread_mutex_unlock(&pool.lock);
  return -1;
}

/* Keeps `wanted` spares ready: fills in when the last spare is taken
 * (threads that run long) or a start fails. */
static void *replenisher_main(void *arg) {
  pthread_mutex_lock(&pool.lock);
  while (!pool.shutting_down) {
    if (reserve_spare()) {
      pthread_mutex_unlock(&pool.lock);
      int rc = start_spare();
      pthread_mutex_lock(&pool.lock);
      if (rc != 0) {
        struct timespec ts = sync_deadline(100000000u);   /* retry later */
        pthread_cond_timedwait(&pool.replenish, &pool.lock, &ts);
      }
      continue;
    }
    pthread_cond_wait(&pool.replenish, &pool.lock);
  }
  pthread_mutex_unlock(&pool.lock);
  return NULL;
}

void spares_init(int wanted, const struct spares_ops *ops) {
  pool.ops = *ops;
  pthread_cond_init(&pool.replenish, NULL);
  pthread_cond_init(&pool.ready, NULL);
  pool.wanted = wanted;
  if (wanted > 0 && sync_spawn_detached(replenisher_main, NULL) != 0) pool.wanted = 0;
}

int spares_take(void *job) {
  if (!pool.wanted) return 0;
  pthread_mutex_lock(&pool.lock);
  /* None ready but some in the making (starts outrun their replacement):
   * wait for the first, which is less work than a thread and a state of
   * our own and comes sooner. */
  while (!pool.idle && pool.making > 0 && !pool.shutting_down)
    pthread_cond_wait(&pool.ready, &pool.lock);
  struct spare *sp = pool.idle;
  if (!sp) {
    pthread_cond_signal(&pool.replenish);   /* none ready: make more */
    pthread_mutex_unlock(&pool.lock);
    return 0;
  }
  pool.idle = sp->next;
  pool.nidle--;
  sp->job = job;
  if (pool.nidle + pool.making == 0) pthread_cond_signal(&pool.replenish);
  pthread_mutex_unlock(&pool.lock);
  sem_post(&sp->go);   /* off the list: reached by no one else until now */
  return 1;
}

void spares_replace(void) {
  if (!pool.wanted) return;
  pthread_mutex_lock(&pool.lock);
  int make = reserve_spare();
  pthread_mutex_unlock(&pool.lock);
  if (make) start_spare();
}

void spares_shutdown(void) {
  pthread_mutex_lock(&pool.lock);
  pool.shutting_down = 1;
  while (pool.idle) {   /* off the list, then woken with no job: they end */
    struct spare *sp = pool.idle;
    pool.idle = sp->next;
    pool.nidle--;
    sem_post(&sp->go);
  }
  pthread_cond_signal(&pool.replenish);
  pthread_cond_broadcast(&pool.ready);   /* takers waiting for a spare go on */
  pthread_mutex_unlock(&pool.lock);
}
