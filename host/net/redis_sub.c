/* redis_sub: a subscription (SUBSCRIBE, PSUBSCRIBE) on a connection of
 * its own, whose replies stream to a callback (the contract is in
 * net/redis.h).  The connection is a busy one of the client's blocking
 * list that never goes back to the pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/redis.h"
#include "net/redis_int.h"

struct redis_sub {
  struct rconn *k;              /* NULL once the connection ended */
  redis_sub_cb cb;              /* NULL after redis_sub_close */
  void *ud;
  char *pend;                   /* formatted commands not yet written */
  size_t pend_len, pend_cap;
};

static const char *const allowed[] = {
  "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "PING", NULL};

int redis_sub_open(struct redis_client *c, redis_sub_cb cb, void *ud, struct redis_sub **out) {
  if (c->closing) return REDIS_E_CLOSED;
  if (!c->shared) return REDIS_E_UNAVAILABLE;   /* backing off: c->err says why */
  if (c->bbusy >= c->o.max_blocking) return REDIS_E_BUSY;
  struct redis_sub *s = calloc(1, sizeof *s);
  if (!s) return REDIS_E_NOMEM;
  struct rconn *k = rconn_open(c, 1);
  if (!k) { free(s); return REDIS_E_NOMEM; }
  if (k->state == C_CLOSED) { free(s); return REDIS_E_UNAVAILABLE; }   /* failed at once */
  k->busy = 1;                  /* never idle: not for the pool */
  c->bbusy++;
  k->sub = s;
  s->k = k;
  s->cb = cb;
  s->ud = ud;
  *out = s;
  return 0;
}

int redis_sub_command(struct redis_sub *s, int argc, const char *const *argv,
                      const size_t *argvlen) {
  if (argc < 1 || !argv) return REDIS_E_INVAL;
  if (!s->k) return REDIS_E_CONN;
  size_t nl = argvlen ? argvlen[0] : strlen(argv[0]);
  int ok = 0;
  for (int i = 0; allowed[i] && !ok; i++)
    ok = strlen(allowed[i]) == nl && strncasecmp(argv[0], allowed[i], nl) == 0;
  if (!ok) return REDIS_E_REFUSED;
  char *cmd = NULL;
  long long len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, argvlen);
  if (len < 0) return REDIS_E_NOMEM;
  if (s->pend_len + (size_t)len > s->pend_cap) {
    size_t cap = s->pend_cap ? s->pend_cap : 256;
    while (cap < s->pend_len + (size_t)len) cap *= 2;
    char *p = realloc(s->pend, cap);
    if (!p) { free(cmd); return REDIS_E_NOMEM; }
    s->pend = p;
    s->pend_cap = cap;
  }
  memcpy(s->pend + s->pend_len, cmd, (size_t)len);
  s->pend_len += (size_t)len;
  free(cmd);   /* hiredis 0.14 formats with malloc */
  struct redis_client *c = s->k->c;
  if (s->k->state == C_READY && !uv_is_active((uv_handle_t *)&c->flush))
    uv_prepare_start(&c->flush, rclient_on_flush);   /* written later: no callback in here */
  return 0;
}

void redis_sub_close(struct redis_sub *s) {
  if (!s) return;
  s->cb = NULL;
  if (s->k) rconn_fail(s->k, REDIS_E_CLOSED, "subscription closed");   /* silent */
  free(s->pend);
  free(s);
}

/* ---- for redis_conn.c ---------------------------------------------------- */

void rsub_flush(struct rconn *k) {
  struct redis_sub *s = k->sub;
  if (!s->pend_len) return;
  char *buf = s->pend;
  size_t len = s->pend_len;
  s->pend = NULL;
  s->pend_len = s->pend_cap = 0;
  int rc = rconn_write(k, &buf, &len, 1);
  if (rc < 0) rconn_fail(k, REDIS_E_CONN, "write to %s: %s", k->c->where, uv_strerror(rc));
}

void rsub_reply(struct rconn *k, redisReply *r) {
  struct redis_sub *s = k->sub;
  if (s->cb) s->cb(s->ud, 0, NULL, r);
  else freeReplyObject(r);
}

void rsub_ended(struct rconn *k, int err, const char *msg) {
  struct redis_sub *s = k->sub;
  k->sub = NULL;
  s->k = NULL;
  if (s->cb) s->cb(s->ud, err, msg, NULL);
}
