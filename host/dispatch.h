/*
 * dispatch: the one request runner, used by `serve` (worker.c) and by
 * `apptest.request` alike, so a test takes exactly the path a served
 * request takes.  A request goes: reserved /_ah/ paths (lifecycle) ->
 * the app's routes -> a static file, or the handler in a coroutine of an
 * app state (a task on a task_loop: its waits yield to that loop) -> a
 * response (status, headers, body).  Knows Lua and the request struct; no
 * sockets.
 *
 * Threads: a struct app_state and its jobs belong to the thread that runs
 * the state's loop (one worker, or the test thread).
 */
#ifndef LUAHOST_DISPATCH_H
#define LUAHOST_DISPATCH_H

#include <lua.h>

#include "config.h"
#include "http/http.h"
#include "task.h"
#include "vm/state.h"

/* A Lua state with the app's handler modules loaded. */
struct app_state {
  lua_State *L;
  const struct config *cfg;
  int handlers_ref;          /* registry: route index -> handler function */
  lua_State **pool;          /* finished coroutines kept for reuse */
  int *pool_refs;            /* their registry references */
  int npool;
  int inflight;              /* jobs started and not yet finished */
  /* Called around each stretch of a request's Lua code with its
   * sequence number, then 0 (the worker's busy marks); NULL: none. */
  void (*busy)(void *ud, uint64_t seq);
  void *busy_ud;
};

/* One request.  Owned by the caller; lives until run_finish (and the
 * release of its task). */
struct run_job {
  struct task task;          /* the request's task; task.vt.co its coroutine */
  struct app_state *st;
  const struct http_request *req;
  int internal;              /* the host's own lifecycle request */
  void (*done)(struct run_job *j);   /* the response is ready (loop thread) */
  int co_ref;
  /* the response, valid from done until run_finish */
  int status;
  struct http_header *headers; int nheaders;
  struct http_header hbuf[16];
  const char *body; size_t body_len;
  char *file;                /* a static file's bytes (malloc'd), or NULL */
  const struct route *static_route;   /* the route matched a static_dir */
  size_t static_rest;                 /* the path after the route's match */
  int route;                 /* index of the route that took it, or -1 */
  int out_of_memory;         /* ended by the memory limit */
  int failed;                /* ended by an error */
};

/* Fills r as the host's own lifecycle request: GET path, no headers. */
void dispatch_internal_request(struct http_request *r, const char *path);

/* Loads every handler module of cfg into L.  0, or -1 with err. */
int app_state_init(struct app_state *s, lua_State *L, const struct config *cfg,
                   char *err, size_t errlen);
void app_state_free(struct app_state *s);
/* Strict load of every handler module of cfg into L (a scratch state, as
 * a reload's check): 0, or -1 with the first module's error in err. */
int app_state_check(lua_State *L, const struct config *cfg, char *err, size_t errlen);

/* Runs req as job j on loop tl (internal: the host's own request, which
 * may reach /_ah/ lifecycle paths).  j->done is called once, when the
 * response is ready, possibly before run_start returns (then run_start
 * touches j no more). */
void run_start(struct app_state *s, struct run_job *j, const struct http_request *req,
               int internal, struct task_loop *tl);
/* Releases the coroutine; the response fields become invalid.  Returns 1
 * when the job ran out of memory and the state, collected, still holds
 * over 3/4 of its limit (module state filled it: the owner should replace
 * the state), else 0.  Then release j->task (task_release) before reusing
 * or freeing j. */
int run_finish(struct run_job *j);

#endif
