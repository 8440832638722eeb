/*
 * dispatch: a request through the app's routes into a handler coroutine.
 * Matches routes, builds `req`, calls the handler in a coroutine of the
 * worker's state, and turns what it returns (or raises) into a response.
 * A handler that waits in a host call yields; the owner resumes it later
 * with dispatch_resume.  Used by worker loops and by apptest (without a
 * loop: waits there block).  Knows Lua and the request struct, not libuv.
 *
 * Threads: a struct dispatch and its jobs belong to the thread that owns
 * the state (one worker, or the test thread).
 */
#ifndef LUAHOST_DISPATCH_H
#define LUAHOST_DISPATCH_H

#include <lua.h>

#include "config.h"
#include "http/http.h"
#include "vm/state.h"

struct dispatch {
  lua_State *L;
  const struct config *cfg;
  int handlers_ref;          /* registry: route index -> handler function */
  lua_State **pool;          /* finished coroutines kept for reuse */
  int *pool_refs;            /* their registry references */
  int npool;
  int inflight;              /* jobs started and not yet finished */
};

enum dispatch_status { DISPATCH_DONE, DISPATCH_YIELD };

/* One request in a coroutine.  Owned by the caller; lives until finish. */
struct dispatch_job {
  struct vm_task task;       /* task.co is the coroutine */
  struct dispatch *d;
  const struct http_request *req;
  int co_ref;
  /* the response, valid after DISPATCH_DONE until dispatch_finish */
  int status;
  struct http_header *headers; int nheaders;
  struct http_header hbuf[16];
  const char *body; size_t body_len;
  const struct route *static_route;   /* set: serve rest from a static_dir */
  size_t static_rest;                 /* offset into the path */
  int out_of_memory;                  /* ended by the memory limit */
  int failed;                         /* ended by an error */
};

/* Paths under /_ah/ that the host answers itself: 1 with *status and
 * *body set, 0 when the request goes to the routes.  internal: the host
 * itself sends it (lifecycle requests). */
int dispatch_reserved(const struct http_request *r, int internal, int *status,
                      const char **body);

/* Fills r as the host's own lifecycle request: GET path, no headers. */
void dispatch_internal_request(struct http_request *r, const char *path);

/* Loads every handler module of cfg into L.  0, or -1 with err. */
int dispatch_init(struct dispatch *d, lua_State *L, const struct config *cfg,
                  char *err, size_t errlen);
void dispatch_free(struct dispatch *d);

/* Starts req in a coroutine.  j->task.waiter/owner must be set (or NULL). */
int dispatch_start(struct dispatch *d, struct dispatch_job *j,
                   const struct http_request *req);
/* Resumes a job that yielded; nargs values are on j->task.co's stack. */
int dispatch_resume(struct dispatch_job *j, int nargs);
/* Releases the coroutine; the response fields become invalid.  Returns 1
 * when the job ran out of memory and the state, collected, still holds
 * over 3/4 of its limit (module state filled it: the owner should replace
 * the state), else 0. */
int dispatch_finish(struct dispatch_job *j);

#endif
