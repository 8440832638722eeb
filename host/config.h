/*
 * config: the app's configuration: defaults, then app.lua, then the
 * command line, validated into a struct config.  Every error names the
 * key (or option) and what was expected.  Built once by the main thread;
 * read-only (and shared by every thread) afterwards.
 */
#ifndef LUAHOST_CONFIG_H
#define LUAHOST_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>

#include "base/lherror.h"
#include "http/cidr.h"

struct route {
  char *url;            /* Lua pattern */
  char *script;         /* module name, or NULL */
  char *static_dir;     /* realpath of the directory, or NULL */
  char *literal;        /* url's literal text when it is "^text" / "^text$" */
  size_t literal_len;
  int exact;            /* literal must match the whole path */
  char **methods;       /* upper-cased HTTP tokens, or NULL: every method
                           (see route.h: GET also takes HEAD) */
  int nmethods;
  int ncaptures;        /* captures in url (position captures included) */
  int metrics_id;       /* the route's label in /_ah/metrics (set by the server) */
};

struct config_cap { char *name; size_t size; };
struct config_redis { char *name; char *url; };   /* url checked by redis_url_parse */

#define CONFIG_DEFAULT_STORE_TIMEOUT 2.0

/* Command-line values (strings as typed); NULL when not given.  The
 * strings are borrowed (argv): they outlive every config. */
struct config_cli {
  const char *listen, *role, *workers, *max_background_threads, *memory_limit,
      *request_deadline, *shutdown_grace, *log_format;
  int reload;   /* serve --reload */
};

/* Defaults that hold without an app.lua too (luahost run, luahost test). */
#define CONFIG_DEFAULT_MAX_THREADS 10
#define CONFIG_DEFAULT_MEMORY_LIMIT ((size_t)128 << 20)

struct config {
  char *app_dir;               /* realpath */
  int role;                    /* VM_FRONTEND / VM_BACKEND */
  char *listen_host;
  int listen_port;
  int workers;
  int max_background_threads;
  size_t memory_limit;
  double request_deadline;
  double shutdown_grace;
  size_t max_body;
  int access_log;               /* 0 false, 1 true, 2 "json" (HTTP_ACCESS_LOG_*) */
  int log_json;
  struct route *routes; int nroutes;
  struct config_cap *dicts; int ndicts;     /* bytes */
  struct config_cap *queues; int nqueues;   /* items */
  struct config_redis *redis; int nredis;   /* app.lua key 'redis' */
  char *store_prefix;          /* Redis key prefix; default the app directory's base name */
  char *store;                 /* shared.store: a name in redis, or NULL (memory store) */
  double store_timeout;        /* shared.timeout: seconds per call on a Redis store */
  double drain;                /* seconds of draining before shutdown (0: none) */
  struct cidr *metrics_allow; int nmetrics_allow;   /* besides loopback */
  int reload;                  /* serve --reload: watch the app directory */
  struct config_cli cli;       /* the options it was loaded with (for a reload) */
  /* A config from config_load_new is shared by the states built from it
   * and freed by its last config_release; one from config_load is the
   * caller's, and retain/release leave it alone. */
  atomic_int refs;
  int on_heap;
};



/* 0 on success; LH_EINVAL with a message in err (a configuration error,
 * exit 2), or LH_ESYSTEM (the host could not build a state, exit 1). */
int config_load(struct config *c, const char *app_dir, const struct config_cli *cli,
                char *err, size_t errlen);
void config_free(struct config *c);
/* As config_load, into a new heap config with one reference (NULL with
 * *rc and err set on failure).  Any thread. */
struct config *config_load_new(const char *app_dir, const struct config_cli *cli,
                               int *rc, char *err, size_t errlen);
void config_retain(const struct config *c);
void config_release(const struct config *c);

#endif
