/* redis_calls: named Redis servers and their per-loop clients. */
#include "redis_calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct server {
  char name[64];
  char where[300];
  struct redis_url url;
};

/* Written by the main thread before workers start; read-only after. */
static struct server servers[REDIS_CALLS_MAX];
static int nservers;

int redis_calls_configure(const char *const *names, const char *const *urls, int n) {
  char err[256];
  nservers = 0;
  if (n > REDIS_CALLS_MAX) return -1;
  for (int i = 0; i < n; i++) {
    struct server *s = &servers[i];
    if (redis_url_parse(urls[i], &s->url, err, sizeof err) < 0) return -1;
    snprintf(s->name, sizeof s->name, "%s", names[i]);
    redis_url_describe(&s->url, s->where, sizeof s->where);
  }
  nservers = n;
  return 0;
}

int redis_calls_find(const char *name) {
  for (int i = 0; i < nservers; i++)
    if (!strcmp(servers[i].name, name)) return i;
  return -1;
}

const char *redis_calls_name(int server) { return servers[server].name; }
const char *redis_calls_where(int server) { return servers[server].where; }

/* A loop's clients: the TASK_CLIENT_REDIS slot. */
struct clients {
  uv_loop_t *uv;
  struct redis_client *c[REDIS_CALLS_MAX];
};

static void *clients_make(uv_loop_t *uv) {
  struct clients *cs = calloc(1, sizeof *cs);
  if (cs) cs->uv = uv;
  return cs;
}

static void clients_close(void *p) {
  struct clients *cs = p;
  for (int i = 0; i < REDIS_CALLS_MAX; i++)
    if (cs->c[i]) redis_client_close(cs->c[i], NULL, NULL);
  free(cs);
}

struct redis_client *redis_calls_client(struct task_loop *tl, int server) {
  struct clients *cs = task_loop_client(tl, TASK_CLIENT_REDIS, clients_make, clients_close);
  if (!cs || server < 0 || server >= nservers) return NULL;
  if (!cs->c[server]) {
    /* every waiting pop of the shared store holds a blocking connection */
    struct redis_options o = {.max_blocking = REDIS_CALLS_MAX_BLOCKING};
    cs->c[server] = redis_client_new(cs->uv, &servers[server].url, &o);
  }
  return cs->c[server];
}
