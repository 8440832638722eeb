/* redis_batch: formats commands (hiredis) and sorts them: blocking ones go
 * to a connection of their own, state-changing ones are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/redis.h"
#include "net/redis_int.h"

static const char *const blocking_names[] = {
  "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
  "WAIT", "WAITAOF", NULL};

/* Commands that change a connection's state for everyone sharing it. */
static const char *const refused_names[] = {
  "SELECT", "AUTH", "HELLO", "QUIT", "RESET", "MONITOR", "SYNC", "PSYNC", "REPLCONF",
  "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
  NULL};
static const char *const sub_names[] = {
  "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", NULL};

static int arg_is(const char *a, size_t al, const char *name) {
  size_t nl = strlen(name);
  return al == nl && strncasecmp(a, name, nl) == 0;
}

static int in_list(const char *a, size_t al, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (arg_is(a, al, names[i])) return 1;
  return 0;
}

/* XREAD [COUNT n] [BLOCK ms] STREAMS ...: BLOCK among the options. */
static int xread_blocks(int argc, const char *const *argv, const size_t *len) {
  for (int i = 1; i < argc; i++) {
    if (arg_is(argv[i], len[i], "STREAMS")) return 0;
    if (arg_is(argv[i], len[i], "BLOCK")) return 1;
  }
  return 0;
}

struct redis_batch *redis_batch_new(void) { return calloc(1, sizeof(struct redis_batch)); }

void redis_batch_free(struct redis_batch *b) {
  if (!b) return;
  free(b->buf);
  free(b);
}

size_t redis_batch_count(const struct redis_batch *b) { return b->n; }

int redis_batch_blocking(const struct redis_batch *b) { return b->blocking; }

const char *redis_batch_error(const struct redis_batch *b) { return b->why; }

int redis_batch_add(struct redis_batch *b, int argc, const char *const *argv,
                    const size_t *argvlen) {
  if (argc < 1 || !argv) return REDIS_E_INVAL;
  size_t stack_len[16], *lens = stack_len;
  if (argc > 16 && !(lens = malloc(sizeof *lens * (size_t)argc))) return REDIS_E_NOMEM;
  for (int i = 0; i < argc; i++) lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
  int rc = REDIS_E_REFUSED;
  const char *name = argv[0];
  size_t nl = lens[0];
  int is_multi = arg_is(name, nl, "MULTI") || arg_is(name, nl, "WATCH");
  int is_exec = arg_is(name, nl, "EXEC") || arg_is(name, nl, "DISCARD");
  if (in_list(name, nl, refused_names)) {
    int sub = in_list(name, nl, sub_names);
    snprintf(b->why, sizeof b->why, "%.*s is refused: it would change the shared connection%s",
             (int)(nl > 20 ? 20 : nl), name,
             arg_is(name, nl, "SELECT") ? " (put the db in the URL)"
             : sub ? " (use r:subscribe or r:psubscribe, which open a connection of their own)"
                   : "");
    goto out;
  }
  if (arg_is(name, nl, "CLIENT") && argc > 1 && arg_is(argv[1], lens[1], "REPLY")) {
    snprintf(b->why, sizeof b->why, "CLIENT REPLY is refused: it would desynchronise replies");
    goto out;
  }
  char *cmd = NULL;
  long long len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
  if (len < 0) { rc = REDIS_E_NOMEM; goto out; }
  if (b->len + (size_t)len > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + (size_t)len) cap *= 2;
    char *nb = realloc(b->buf, cap);
    if (!nb) { redisFreeCommand(cmd); rc = REDIS_E_NOMEM; goto out; }
    b->buf = nb;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, cmd, (size_t)len);
  redisFreeCommand(cmd);
  b->len += (size_t)len;
  b->n++;
  if (in_list(name, nl, blocking_names) ||
      ((arg_is(name, nl, "XREAD") || arg_is(name, nl, "XREADGROUP")) &&
       xread_blocks(argc, argv, lens)))
    b->blocking = 1;
  if (is_multi) b->txn_open = 1;
  else if (is_exec && !b->txn_open) b->txn_bad = 1;
  else if (is_exec) b->txn_open = 0;
  b->why[0] = '\0';
  rc = 0;
out:
  if (lens != stack_len) free(lens);
  return rc;
}

int redis_batch_check(struct redis_batch *b) {
  if (b->n == 0) {
    snprintf(b->why, sizeof b->why, "no command to send");
    return REDIS_E_INVAL;
  }
  if (b->txn_bad) {
    snprintf(b->why, sizeof b->why, "EXEC or DISCARD without MULTI in the same batch");
    return REDIS_E_REFUSED;
  }
  if (b->txn_open) {
    snprintf(b->why, sizeof b->why,
             "MULTI or WATCH must be closed by EXEC or DISCARD in the same batch");
    return REDIS_E_REFUSED;
  }
  return 0;
}

const char *redis_strerror(int err) {
  switch (err) {
  case 0: return "ok";
  case REDIS_E_NOMEM: return "out of memory";
  case REDIS_E_INVAL: return "invalid argument";
  case REDIS_E_REFUSED: return "command refused";
  case REDIS_E_UNAVAILABLE: return "store unavailable";
  case REDIS_E_CONN: return "connection error";
  case REDIS_E_AUTH: return "login refused";
  case REDIS_E_PROTOCOL: return "protocol error";
  case REDIS_E_TIMEOUT: return "timeout";
  case REDIS_E_CLOSED: return "client closed";
  case REDIS_E_BUSY: return "too many blocking commands";
  default: return "unknown error";
  }
}
