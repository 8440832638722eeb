/* lifecycle: /_ah/ paths, lifecycle requests, shutdown's first steps. */
#include "lifecycle.h"

#include <string.h>

#include <uv.h>

#include "base/log.h"
#include "dispatch.h"
#include "store/queue.h"
#include "task.h"
#include "threads.h"

int lifecycle_reserved(const struct http_request *r, int internal, int *status,
                       const char **body) {
  if (r->path_len < 5 || memcmp(r->path, "/_ah/", 5) != 0) return 0;
  const char *p = r->path + 5;
  size_t n = r->path_len - 5;
  if (n == 6 && !memcmp(p, "health", 6)) { *status = 200; *body = "ok\n"; return 1; }
  int lifecycle = (n == 5 && !memcmp(p, "start", 5)) || (n == 4 && !memcmp(p, "stop", 4)) ||
                  (n == 6 && !memcmp(p, "warmup", 6));
  if (lifecycle && internal) return 0;
  *status = lifecycle ? 403 : 404;
  *body = lifecycle ? "forbidden: /_ah/ lifecycle paths come only from the host\n"
                    : "not found\n";
  return 1;
}

struct internal_job {
  struct run_job rj;
  int answered, released;
  int status;
};

static void on_released(struct task *t) { ((struct internal_job *)t)->released = 1; }

static void on_done(struct run_job *j) {
  struct internal_job *ij = (struct internal_job *)j;
  ij->status = j->status;
  ij->answered = 1;
  run_finish(j);
  task_release(&j->task, on_released);
}

int lifecycle_request(struct app_state *s, struct task_loop *tl, const char *path) {
  struct http_request r;
  struct internal_job ij;
  memset(&ij, 0, sizeof ij);
  ij.rj.done = on_done;
  dispatch_internal_request(&r, path);
  run_start(s, &ij.rj, &r, 1, tl);
  while (!ij.released) uv_run(tl->uv, UV_RUN_ONCE);
  log_msg(ij.status >= 500 ? LOG_WARNING : LOG_INFO, "request_id", r.request_id,
          "%s answered %d", path, ij.status);
  return ij.status;
}

int lifecycle_start_ok(int status) {
  return (status >= 200 && status < 300) || status == 404;
}

void lifecycle_begin_shutdown(void) {
  task_shutdown();        /* is_shutting_down; sleepers and waits end */
  queue_shutdown_all();   /* waiting pops and pushes return "shutting down" */
  threads_shutdown();     /* no new threads */
  threads_run_hook();
}
