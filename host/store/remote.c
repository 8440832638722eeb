/* store/remote: shared dicts on Redis, and what the queues share with them
 * (configuration, keys, operations and their replies); queues are in
 * remote_queue.c. */
#include "store/remote.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/remote_int.h"

/* Set by the main thread before any client exists; read-only after. */
char remote_prefix[256] = "luahost";
unsigned remote_timeout_ms = 2000;
struct store_caps remote_queue_caps = {PTHREAD_MUTEX_INITIALIZER, NULL};

#define SCAN_COUNT "1000"

/* incr: KEYS[1] the key; ARGV[1] n, ARGV[2] init ("" for none), both
 * encoded.  Integer + integer is INCRBY (Redis's 64-bit arithmetic; the
 * result read back as text, never through a Lua number); anything else
 * is a float sum in Lua, stored tagged, the TTL kept. */
static const char incr_script[] =
  "local k, n, init = KEYS[1], ARGV[1], ARGV[2]\n"
  "local v = redis.call('GET', k)\n"
  "local fresh = false\n"
  "if not v then\n"
  "  if init == '' then return {'nf'} end\n"
  "  v = init; fresh = true\n"
  "end\n"
  "local function isint(s) return string.find(s, '^%-?%d+$') ~= nil end\n"
  "local function isnum(s) return isint(s) or string.sub(s, 1, 1) == 'f' end\n"
  "if not isnum(v) then return {'nn'} end\n"
  "if isint(v) and isint(n) then\n"
  "  if fresh then redis.call('SET', k, v) end\n"
  "  local r = redis.pcall('INCRBY', k, n)\n"
  "  if type(r) == 'table' and r.err then\n"
  "    if fresh then redis.call('DEL', k) end\n"
  "    if string.find(r.err, 'overflow') then return {'of'} end\n"
  "    return {'nn'}\n"
  "  end\n"
  "  return {'ok', redis.call('GET', k)}\n"
  "end\n"
  "local function num(s)\n"
  "  if string.sub(s, 1, 1) == 'f' then return tonumber(string.sub(s, 2)) end\n"
  "  return tonumber(s)\n"
  "end\n"
  "local s = 'f' .. string.format('%.17g', num(v) + num(n))\n"
  "if fresh then redis.call('SET', k, s) else redis.call('SET', k, s, 'KEEPTTL') end\n"
  "return {'ok', s}\n";

int remote_configure(const char *p, unsigned timeout_ms) {
  if (strlen(p) >= sizeof remote_prefix) return -1;
  snprintf(remote_prefix, sizeof remote_prefix, "%s", p);
  if (timeout_ms) remote_timeout_ms = timeout_ms;
  return 0;
}

int remote_configure_queue(const char *name, size_t capacity) {
  return store_caps_set(&remote_queue_caps, name, capacity);
}

const char *remote_error(struct redis_client *c, int rc) {
  const char *why = rc == REDIS_E_UNAVAILABLE ? redis_client_error(c) : "";
  return why && *why ? why : redis_strerror(rc);
}

/* ---- keys and values ---------------------------------------------------- */

/* "P:<kind>:<len>:<name>:" + key into a new string (*len set). */
char *remote_make_key(char kind, const char *name, size_t nl, const char *k, size_t kl,
                      int colon, size_t *len) {
  char head[300];
  int hl = snprintf(head, sizeof head, "%s:%c:%zu:", remote_prefix, kind, nl);
  size_t n = (size_t)hl + nl + (colon ? 1 : 0) + kl;
  char *s = malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, head, (size_t)hl);
  memcpy(s + hl, name, nl);
  if (colon) s[hl + nl] = ':';
  if (kl) memcpy(s + hl + nl + (colon ? 1 : 0), k, kl);
  s[n] = '\0';
  *len = n;
  return s;
}

/* The glob-escaped namespace of a dict followed by "*", for SCAN MATCH. */
static char *make_match(const char *dict, size_t dl, size_t *ns_len) {
  size_t n;
  char *ns = remote_make_key('d', dict, dl, "", 0, 1, &n);
  if (!ns) return NULL;
  char *m = malloc(2 * n + 2);
  if (m) {
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
      if (strchr("*?[]\\^", ns[i]) && ns[i]) m[j++] = '\\';
      m[j++] = ns[i];
    }
    m[j++] = '*';
    m[j] = '\0';
  }
  free(ns);
  *ns_len = n;
  return m;
}

/* Encodes v into buf (at least 40 bytes, or a string's own bytes). */
static const char *encode_val(const struct dict_val *v, char *buf, size_t cap, size_t *len,
                              char **heap) {
  *heap = NULL;
  switch (v->type) {
    case DV_INT: *len = (size_t)snprintf(buf, cap, "%" PRId64, v->i); return buf;
    case DV_FLOAT: *len = (size_t)snprintf(buf, cap, "f%.17g", v->f); return buf;
    case DV_BOOL: *len = 2; buf[0] = 'b'; buf[1] = v->b ? '1' : '0'; return buf;
    default:
      if (!(*heap = malloc(v->len + 1))) return NULL;
      (*heap)[0] = 's';
      memcpy(*heap + 1, v->s, v->len);
      *len = v->len + 1;
      return *heap;
  }
}

static int is_int_text(const char *s, size_t n) {
  size_t i = n > 0 && s[0] == '-' ? 1 : 0;
  if (i == n || n > 20) return 0;
  for (; i < n; i++) if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

/* A stored value (the reply's text) as a dict value; strings point into s. */
static void decode_val(const char *s, size_t n, struct dict_val *v) {
  memset(v, 0, sizeof *v);
  char tmp[64];
  if (is_int_text(s, n)) {
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    v->type = DV_INT;
    v->i = (int64_t)strtoll(tmp, &end, 10);
    return;
  }
  if (n >= 2 && s[0] == 'f' && n < sizeof tmp) {
    memcpy(tmp, s + 1, n - 1);
    tmp[n - 1] = '\0';
    v->type = DV_FLOAT;
    v->f = strtod(tmp, NULL);
    return;
  }
  if (n == 2 && s[0] == 'b' && (s[1] == '0' || s[1] == '1')) {
    v->type = DV_BOOL;
    v->b = s[1] == '1';
    return;
  }
  v->type = DV_STR;
  if (n >= 1 && s[0] == 's') { v->s = s + 1; v->len = n - 1; }
  else { v->s = s; v->len = n; }
}

/* ---- ops ---------------------------------------------------------------- */

struct remote_op *remote_op_new(struct redis_client *c, int kind, remote_cb cb, void *ud) {
  struct remote_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->c = c;
  op->kind = kind;
  op->cb = cb;
  op->ud = ud;
  return op;
}

void remote_op_free(struct remote_op *op) {
  for (size_t i = 0; i < op->nkeys; i++) free(op->keys[i]);
  free(op->keys);
  free(op->klens);
  free(op->match);
  free(op->qkey);
  free(op->data);
  free(op->wake);
  free(op);
}

void remote_op_unref(struct remote_op *op) {
  if (--op->refs == 0) remote_op_free(op);
}

void remote_deliver(struct remote_op *op, struct remote_result *r) {
  if (op->delivered) return;
  op->delivered = 1;
  if (op->cb) op->cb(op->ud, r);
}

void remote_deliver_status(struct remote_op *op, int status, const char *msg) {
  struct remote_result r;
  memset(&r, 0, sizeof r);
  r.status = status;
  r.msg = msg;
  remote_deliver(op, &r);
}

/* A reply that is not what the command answers: an -OOM is "no memory",
 * any other error or shape makes the store unavailable, saying why. */
void remote_deliver_bad(struct remote_op *op, const redisReply *rep) {
  if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "OOM", 3)) {
    remote_deliver_status(op, REMOTE_NOMEM, NULL);
    return;
  }
  char msg[300];
  if (rep && rep->type == REDIS_REPLY_ERROR) snprintf(msg, sizeof msg, "%s", rep->str);
  else snprintf(msg, sizeof msg, "unexpected reply from redis");
  remote_deliver_status(op, REMOTE_UNAVAILABLE, msg);
}

static void on_reply(void *ud, struct redis_done *d);

/* Sends argv as op's command (one reference). */
int remote_send_cmd(struct remote_op *op, int argc, const char **argv, const size_t *lens,
                    unsigned timeout_ms) {
  int rc = redis_command(op->c, argc, argv, lens, timeout_ms, on_reply, op, &op->cmd);
  if (rc == 0) op->refs++;
  return rc;
}

/* Starts op with argv; on failure frees it.  The call's return value. */
int remote_start(struct remote_op *op, int argc, const char **argv, const size_t *lens,
                 unsigned timeout_ms, struct remote_op **out) {
  int rc = remote_send_cmd(op, argc, argv, lens, timeout_ms);
  if (rc < 0) { remote_op_free(op); return rc; }
  if (out) *out = op;
  return 0;
}

static int add_key(struct remote_op *op, const char *k, size_t kl) {
  if (op->nkeys == op->kcap) {
    size_t cap = op->kcap ? op->kcap * 2 : 64;
    char **keys = realloc(op->keys, cap * sizeof *keys);
    if (!keys) return -1;
    op->keys = keys;
    size_t *lens = realloc(op->klens, cap * sizeof *lens);
    if (!lens) return -1;
    op->klens = lens;
    op->kcap = cap;
  }
  char *s = malloc(kl + 1);
  if (!s) return -1;
  memcpy(s, k, kl);
  s[kl] = '\0';
  op->keys[op->nkeys] = s;
  op->klens[op->nkeys++] = kl;
  return 0;
}

static int scan_next(struct remote_op *op) {
  const char *argv[6] = {"SCAN", op->cursor, "MATCH", op->match, "COUNT", SCAN_COUNT};
  return remote_send_cmd(op, 6, argv, NULL, remote_timeout_ms);
}

/* keys and flush: one SCAN page. 1: send the next page (or UNLINK). */
static void scan_page(struct remote_op *op, const redisReply *rep) {
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
      rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
    remote_deliver_bad(op, rep);
    return;
  }
  snprintf(op->cursor, sizeof op->cursor, "%s", rep->element[0]->str);
  const redisReply *ks = rep->element[1];
  int rc = 0;
  if (op->kind == OP_KEYS) {
    for (size_t i = 0; i < ks->elements && rc == 0; i++) {
      const redisReply *k = ks->element[i];
      if (op->max && op->nkeys >= op->max) break;
      if (k->type == REDIS_REPLY_STRING && (size_t)k->len >= op->ns_len)
        rc = add_key(op, k->str + op->ns_len, (size_t)k->len - op->ns_len);
    }
    if (rc < 0) { remote_deliver_status(op, REMOTE_UNAVAILABLE, "out of memory"); return; }
    if (!strcmp(op->cursor, "0") || (op->max && op->nkeys >= op->max)) {
      struct remote_result r;
      memset(&r, 0, sizeof r);
      r.keys = (const char *const *)op->keys;
      r.klens = op->klens;
      r.nkeys = op->nkeys;
      remote_deliver(op, &r);
      return;
    }
    rc = scan_next(op);
  } else if (ks->elements > 0) {
    /* flush: UNLINK this page, then the next page */
    const char **argv = malloc((ks->elements + 1) * sizeof *argv);
    size_t *lens = malloc((ks->elements + 1) * sizeof *lens);
    if (!argv || !lens) rc = REDIS_E_NOMEM;
    else {
      argv[0] = "UNLINK";
      lens[0] = 6;
      for (size_t i = 0; i < ks->elements; i++) {
        argv[i + 1] = ks->element[i]->str;
        lens[i + 1] = (size_t)ks->element[i]->len;
      }
      op->unlinking = 1;
      rc = remote_send_cmd(op, (int)ks->elements + 1, argv, lens, remote_timeout_ms);
    }
    free(argv);
    free(lens);
  } else if (!strcmp(op->cursor, "0")) {
    remote_deliver_status(op, REMOTE_OK, NULL);
    return;
  } else {
    rc = scan_next(op);
  }
  if (rc < 0) remote_deliver_status(op, REMOTE_UNAVAILABLE, remote_error(op->c, rc));
}

static void on_reply(void *ud, struct redis_done *d) {
  struct remote_op *op = ud;
  op->cmd = NULL;
  if (op->delivered) { remote_stop_timer(op); remote_op_unref(op); return; }
  if (d->err) {
    if (op->kind == OP_POP && op->abandoned) remote_deliver_status(op, REMOTE_ABANDONED, NULL);
    else remote_deliver_status(op, REMOTE_UNAVAILABLE, d->msg ? d->msg : redis_strerror(d->err));
    remote_stop_timer(op);
    remote_op_unref(op);
    return;
  }
  const redisReply *rep = d->replies[0];
  struct remote_result r;
  memset(&r, 0, sizeof r);
  switch (op->kind) {
    case OP_GET:
      if (rep->type == REDIS_REPLY_NIL) r.val.type = DV_NIL;
      else if (rep->type == REDIS_REPLY_STRING) decode_val(rep->str, (size_t)rep->len, &r.val);
      else { remote_deliver_bad(op, rep); break; }
      remote_deliver(op, &r);
      break;
    case OP_SET:   /* OK, or nil for SET NX on a present key */
      if (rep->type == REDIS_REPLY_STATUS) remote_deliver(op, &r);
      else if (rep->type == REDIS_REPLY_NIL) remote_deliver_status(op, REMOTE_EXISTS, NULL);
      else remote_deliver_bad(op, rep);
      break;
    case OP_ADD_NIL:   /* EXISTS */
      if (rep->type == REDIS_REPLY_INTEGER)
        remote_deliver_status(op, rep->integer ? REMOTE_EXISTS : REMOTE_OK, NULL);
      else remote_deliver_bad(op, rep);
      break;
    case OP_DELETE:
      if (rep->type == REDIS_REPLY_INTEGER) remote_deliver(op, &r);
      else remote_deliver_bad(op, rep);
      break;
    case OP_INCR:
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
          rep->element[0]->type != REDIS_REPLY_STRING) {
        remote_deliver_bad(op, rep);
        break;
      }
      {
        const char *st = rep->element[0]->str;
        if (!strcmp(st, "nf")) r.status = REMOTE_NOTFOUND;
        else if (!strcmp(st, "nn")) r.status = REMOTE_NOTNUM;
        else if (!strcmp(st, "of")) r.status = REMOTE_OVERFLOW;
        else if (rep->elements == 2 && rep->element[1]->type == REDIS_REPLY_STRING)
          decode_val(rep->element[1]->str, (size_t)rep->element[1]->len, &r.val);
        else { remote_deliver_bad(op, rep); break; }
      }
      remote_deliver(op, &r);
      break;
    case OP_KEYS:
      scan_page(op, rep);
      break;
    case OP_FLUSH:
      if (op->unlinking) {   /* an UNLINK's reply */
        op->unlinking = 0;
        if (rep->type != REDIS_REPLY_INTEGER) { remote_deliver_bad(op, rep); break; }
        if (!strcmp(op->cursor, "0")) { remote_deliver_status(op, REMOTE_OK, NULL); break; }
        int rc = scan_next(op);
        if (rc < 0) remote_deliver_status(op, REMOTE_UNAVAILABLE, remote_error(op->c, rc));
      } else {
        scan_page(op, rep);
      }
      break;
    default:   /* OP_PUSH, OP_POP, OP_LEN */
      remote_queue_reply(op, rep);
      break;
  }
  if (op->delivered) remote_stop_timer(op);
  remote_op_unref(op);
}

/* ---- dicts -------------------------------------------------------------- */

int remote_dict_get(struct redis_client *c, const char *dict, size_t dl, const char *k,
                    size_t kl, remote_cb cb, void *ud, struct remote_op **out) {
  struct remote_op *op = remote_op_new(c, OP_GET, cb, ud);
  size_t n;
  char *key = op ? remote_make_key('d', dict, dl, k, kl, 1, &n) : NULL;
  if (!key) { free(op); return REDIS_E_NOMEM; }
  const char *argv[2] = {"GET", key};
  size_t lens[2] = {3, n};
  int rc = remote_start(op, 2, argv, lens, remote_timeout_ms, out);
  free(key);
  return rc;
}

int remote_dict_set(struct redis_client *c, const char *dict, size_t dl, const char *k,
                    size_t kl, const struct dict_val *v, uint64_t ttl_ms, int only_new,
                    remote_cb cb, void *ud, struct remote_op **out) {
  int kind = v->type == DV_NIL ? (only_new ? OP_ADD_NIL : OP_DELETE) : OP_SET;
  struct remote_op *op = remote_op_new(c, kind, cb, ud);
  size_t n, vl = 0;
  char *key = op ? remote_make_key('d', dict, dl, k, kl, 1, &n) : NULL;
  if (!key) { free(op); return REDIS_E_NOMEM; }
  char vbuf[64], ttl[32], *heap = NULL;
  const char *argv[6];
  size_t lens[6];
  int argc = 0;
  if (kind == OP_SET) {
    const char *val = encode_val(v, vbuf, sizeof vbuf, &vl, &heap);
    if (!val) { free(key); free(op); return REDIS_E_NOMEM; }
    argv[argc] = "SET"; lens[argc++] = 3;
    argv[argc] = key; lens[argc++] = n;
    argv[argc] = val; lens[argc++] = vl;
    if (only_new) { argv[argc] = "NX"; lens[argc++] = 2; }
    if (ttl_ms) {   /* PX 0 is an error: no PX when there is no expiry */
      argv[argc] = "PX"; lens[argc++] = 2;
      argv[argc] = ttl; lens[argc++] = (size_t)snprintf(ttl, sizeof ttl, "%" PRIu64, ttl_ms);
    }
  } else {
    argv[argc] = kind == OP_DELETE ? "DEL" : "EXISTS"; lens[argc] = strlen(argv[argc]); argc++;
    argv[argc] = key; lens[argc++] = n;
  }
  int rc = remote_start(op, argc, argv, lens, remote_timeout_ms, out);
  free(key);
  free(heap);
  return rc;
}

int remote_dict_incr(struct redis_client *c, const char *dict, size_t dl, const char *k,
                     size_t kl, const struct dict_val *n, const struct dict_val *init,
                     remote_cb cb, void *ud, struct remote_op **out) {
  struct remote_op *op = remote_op_new(c, OP_INCR, cb, ud);
  size_t klen, nl, il = 0;
  char *key = op ? remote_make_key('d', dict, dl, k, kl, 1, &klen) : NULL;
  if (!key) { free(op); return REDIS_E_NOMEM; }
  char nbuf[64], ibuf[64], *h1, *h2;
  const char *ns = encode_val(n, nbuf, sizeof nbuf, &nl, &h1);
  h2 = NULL;
  const char *is = init ? encode_val(init, ibuf, sizeof ibuf, &il, &h2) : "";
  int rc = REDIS_E_NOMEM;
  if (ns && is) {
    const char *argv[6] = {"EVAL", incr_script, "1", key, ns, is};
    size_t lens[6] = {4, sizeof incr_script - 1, 1, klen, nl, il};
    rc = remote_start(op, 6, argv, lens, remote_timeout_ms, out);
  } else {
    free(op);
  }
  free(key);
  free(h1);
  free(h2);
  return rc;
}

int remote_dict_delete(struct redis_client *c, const char *dict, size_t dl, const char *k,
                       size_t kl, remote_cb cb, void *ud, struct remote_op **out) {
  struct dict_val nil;
  memset(&nil, 0, sizeof nil);
  nil.type = DV_NIL;
  return remote_dict_set(c, dict, dl, k, kl, &nil, 0, 0, cb, ud, out);
}

static int scan_start(struct redis_client *c, int kind, const char *dict, size_t dl,
                      size_t max, remote_cb cb, void *ud, struct remote_op **out) {
  struct remote_op *op = remote_op_new(c, kind, cb, ud);
  if (!op || !(op->match = make_match(dict, dl, &op->ns_len))) {
    free(op);
    return REDIS_E_NOMEM;
  }
  op->max = max;
  snprintf(op->cursor, sizeof op->cursor, "0");
  int rc = scan_next(op);
  if (rc < 0) { remote_op_free(op); return rc; }
  if (out) *out = op;
  return 0;
}

int remote_dict_keys(struct redis_client *c, const char *dict, size_t dl, size_t max,
                     remote_cb cb, void *ud, struct remote_op **out) {
  return scan_start(c, OP_KEYS, dict, dl, max, cb, ud, out);
}

int remote_dict_flush(struct redis_client *c, const char *dict, size_t dl, remote_cb cb,
                      void *ud, struct remote_op **out) {
  return scan_start(c, OP_FLUSH, dict, dl, 0, cb, ud, out);
}

/* ---- giving up ---------------------------------------------------------- */

void remote_cancel(struct remote_op *op) {
  op->cb = NULL;   /* whatever happens next, nobody is told */
  if (op->kind == OP_POP && op->wake) { remote_pop_abandon(op); return; }
  if (op->kind == OP_PUSH && op->wait) { remote_push_abandon(op); return; }
  op->delivered = 1;
  if (op->cmd) {
    redis_cancel(op->cmd);
    op->cmd = NULL;
    remote_op_unref(op);
  }
}

