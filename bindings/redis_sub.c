/*
 * redis pub/sub: r:subscribe / r:psubscribe (SPEC §14), thin over
 * net/redis's redis_sub_* (a connection of its own per subscription).
 *
 *   local sub, err = r:subscribe("news", "alerts")  -- confirmed by Redis
 *   local msg, err = sub:read(5)    -- {kind = "message", channel, data}
 *                                   -- or {kind = "pmessage", pattern, channel, data}
 *   sub:subscribe("more") / sub:unsubscribe("news") / sub:psubscribe("a.*")
 *   sub:close()                      -- also <close> and garbage collection
 *
 * Messages that arrive while nobody reads are kept in order, up to
 * SUB_MAX_QUEUED messages or SUB_MAX_BYTES bytes; past that the reader is
 * too slow and the subscription ends (as Redis's own pub/sub output
 * limit would end it): the kept messages are still read, then
 * nil, redis.ConnectionError.  A subscription lives on the loop that made
 * it (a worker's, or a background thread's own) and is read there: from
 * any request of that worker, or from that thread.  It does not reconnect:
 * after a connection error, subscribe again.
 *
 * Every command (the first subscribe, and sub:subscribe etc.) is sent
 * followed by a PING; its "pong" marks the point where Redis has applied
 * the command, so a call returns when the subscription is in effect (a
 * PUBLISH made after it is received), with the number of channels and
 * patterns subscribed.
 *
 * Waiting follows §9: read(timeout) gives nil, "timeout" (nil: no limit);
 * bt.cancel gives nil, "cancelled"; shutdown ends a read with nil,
 * "shutting down"; the deadline raises.  A second coroutine waiting on the
 * same subscription at once raises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings/redis_lua.h"
#include "metrics.h"
#include "redis_calls.h"
#include "task.h"
#include "vm/errors.h"

#define SUB_MT "luahost.redis.Subscription"
#define SUB_MAX_QUEUED 1024
#define SUB_MAX_BYTES ((size_t)16 << 20)

enum { W_IDLE, W_READ, W_CONFIRM };

/* A subscription: a userdata; everything on its loop's thread. */
struct lsub {
  struct task_wait tw;          /* first: the wait in progress (one at a time) */
  struct redis_sub *s;          /* NULL once closed */
  struct task_loop *tl;         /* the loop it lives on */
  int server;
  unsigned timeout_ms;          /* the client's: for confirmations */
  int waiting;                  /* W_*: what the wait in progress waits for */
  int completed;                /* task_complete sent for it */
  redisReply **q;               /* unread messages, a ring */
  size_t qhead, qn, qcap, qbytes;
  int dead;                     /* the connection ended (msg says why) */
  int closed;                   /* sub:close() (or <close>) ran */
  char msg[300];
  int pongs;                    /* PINGs sent whose pong has not come */
  long long count;              /* channels + patterns, per the last confirmation */
  char reply_err[200];          /* an error reply to the last command */
  int opening;                  /* the first confirmation: the subscription's
                                   stack index, to return it; else 0 */
};

static void wake(struct lsub *u, int kind) {
  if (u->waiting == kind && !u->completed) {
    u->completed = 1;
    task_complete(&u->tw);
  }
}

static void end_sub(struct lsub *u, const char *msg) {
  u->dead = 1;
  snprintf(u->msg, sizeof u->msg, "%s", msg);
  wake(u, W_READ);
  wake(u, W_CONFIRM);
}

static int is_kind(const redisReply *r, const char *kind) {
  return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
         r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, kind);
}

static size_t reply_bytes(const redisReply *r) {
  size_t n = sizeof *r + (r->type == REDIS_REPLY_STRING ? (size_t)r->len : 0);
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
    n += reply_bytes(r->element[i]);
  return n;
}

static int queue_push(struct lsub *u, redisReply *r) {
  size_t bytes = reply_bytes(r);
  if (u->qn == SUB_MAX_QUEUED || u->qbytes + bytes > SUB_MAX_BYTES) return -1;
  if (u->qn == u->qcap) {
    size_t cap = u->qcap ? u->qcap * 2 : 16;
    redisReply **q = malloc(cap * sizeof *q);
    if (!q) return -1;
    for (size_t i = 0; i < u->qn; i++) q[i] = u->q[(u->qhead + i) % u->qcap];
    free(u->q);
    u->q = q;
    u->qcap = cap;
    u->qhead = 0;
  }
  u->q[(u->qhead + u->qn++) % u->qcap] = r;
  u->qbytes += bytes;
  return 0;
}

static redisReply *queue_pop(struct lsub *u) {
  if (!u->qn) return NULL;
  redisReply *r = u->q[u->qhead];
  u->qhead = (u->qhead + 1) % u->qcap;
  u->qn--;
  u->qbytes -= reply_bytes(r);
  return r;
}

/* net/redis: a reply the server pushed, or the end of the connection. */
static void on_sub(void *ud, int err, const char *msg, redisReply *r) {
  struct lsub *u = ud;
  if (err) {
    metrics_count_any(METRIC_REDIS_ERRORS);
    end_sub(u, msg && *msg ? msg : redis_strerror(err));
    return;
  }
  if (u->dead) { freeReplyObject(r); return; }   /* overflowed: closed at the next call */
  if (is_kind(r, "message") || is_kind(r, "pmessage")) {
    if (queue_push(u, r) < 0) {
      freeReplyObject(r);
      char m[200];
      snprintf(m, sizeof m, "%s: more than %d unread messages or %zu MiB (the subscriber "
               "reads too slowly); subscription ended", redis_calls_where(u->server),
               SUB_MAX_QUEUED, SUB_MAX_BYTES >> 20);
      end_sub(u, m);
      return;
    }
    wake(u, W_READ);
    return;
  }
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
      r->element[2]->type == REDIS_REPLY_INTEGER)   /* (p)(un)subscribe confirmations */
    u->count = r->element[2]->integer;
  else if (r->type == REDIS_REPLY_ERROR)
    snprintf(u->reply_err, sizeof u->reply_err, "%s", r->str);
  else if ((is_kind(r, "pong") || r->type == REDIS_REPLY_STATUS) && u->pongs > 0 &&
           --u->pongs == 0)
    wake(u, W_CONFIRM);
  freeReplyObject(r);
}

/* ---- waits ------------------------------------------------------------------ */

static int sub_abandon(struct task_wait *tw, int why) {
  struct lsub *u = (struct lsub *)tw;
  (void)why;
  if (u->completed) return 0;   /* the completion is on its way */
  u->waiting = W_IDLE;
  return 1;
}

static int read_start(struct task_wait *tw) {
  struct lsub *u = (struct lsub *)tw;
  return u->qn > 0 || u->dead;
}

static int confirm_start(struct task_wait *tw) {
  struct lsub *u = (struct lsub *)tw;
  return u->pongs == 0 || u->dead;
}

static int push_end(lua_State *L, struct lsub *u) {
  lua_pushnil(L);
  lua_pushstring(L, u->tw.end == TASK_CANCELLED ? "cancelled"
                    : u->tw.end == TASK_SHUTDOWN ? "shutting down" : "timeout");
  return 2;
}

static void push_message(lua_State *L, redisReply *r) {
  int p = is_kind(r, "pmessage");
  lua_createtable(L, 0, 4);
  lua_pushstring(L, p ? "pmessage" : "message");
  lua_setfield(L, -2, "kind");
  static const char *const names[2][3] = {{"channel", "data", NULL},
                                          {"pattern", "channel", "data"}};
  for (size_t i = 1; i < r->elements && i <= 3; i++) {
    const char *name = names[p][i - 1];
    if (!name) break;
    if (r->element[i]->type == REDIS_REPLY_STRING)
      lua_pushlstring(L, r->element[i]->str, (size_t)r->element[i]->len);
    else
      lua_pushnil(L);
    lua_setfield(L, -2, name);
  }
}

static int read_result(lua_State *L, struct task_wait *tw) {
  struct lsub *u = (struct lsub *)tw;
  u->waiting = W_IDLE;
  redisReply *r = queue_pop(u);
  if (r) {   /* kept messages first, whatever ended the wait */
    push_message(L, r);
    freeReplyObject(r);
    return 1;
  }
  if (u->dead) {
    lua_pushnil(L);
    redis_push_conn_error(L, u->server, u->msg);
    return 2;
  }
  return push_end(L, u);
}

static void sub_free(struct lsub *u);

static int confirm_result(lua_State *L, struct task_wait *tw) {
  struct lsub *u = (struct lsub *)tw;
  int opening = u->opening;
  u->waiting = W_IDLE;
  u->opening = 0;
  if (opening && (u->dead || tw->end != TASK_DONE || u->reply_err[0]))
    sub_free(u);   /* no subscription to give: its connection goes now */
  if (u->dead) {
    lua_pushnil(L);
    redis_push_conn_error(L, u->server, u->msg);
    return 2;
  }
  if (tw->end != TASK_DONE) {   /* its state is unknown now: not to be trusted */
    if (u->s) redis_sub_close(u->s);
    u->s = NULL;
    u->dead = 1;
    if (tw->end != TASK_TIMEOUT) return push_end(L, u);
    snprintf(u->msg, sizeof u->msg, "%s: no confirmation within %u ms; subscription closed",
             redis_calls_where(u->server), u->timeout_ms);
    lua_pushnil(L);
    redis_push_conn_error(L, u->server, u->msg);
    return 2;
  }
  if (u->reply_err[0]) {
    lua_pushnil(L);
    vm_error_push(L, REDIS_CLASS_REPLY, REDIS_CLASS_ERROR, "%s", u->reply_err);
    return 2;
  }
  if (opening) lua_pushvalue(L, opening);
  else lua_pushinteger(L, (lua_Integer)u->count);
  return 1;
}

static void begin_wait(lua_State *L, struct lsub *u, int kind) {
  if (u->waiting != W_IDLE)
    luaL_error(L, "redis: another coroutine is already waiting on this subscription");
  if (task_io_loop(L) != u->tl)
    luaL_error(L, "redis: this subscription belongs to another loop (use it from the "
                  "worker's requests or the thread that made it)");
  memset(&u->tw, 0, sizeof u->tw);
  u->tw.abandon = sub_abandon;
  u->waiting = kind;
  u->completed = 0;
  if (kind == W_READ) {
    u->tw.start = read_start;
    u->tw.result = read_result;
    u->tw.flags = TASK_ENDS_AT_SHUTDOWN;
  } else {
    u->tw.start = confirm_start;
    u->tw.result = confirm_result;
  }
}

/* ---- commands ----------------------------------------------------------------- */

/* Sends `cmd` with L's values from..top (strings or numbers) and a PING,
 * then waits for the PING's answer.  u is at index `self`. */
static int send_and_confirm(lua_State *L, struct lsub *u, int self, const char *cmd,
                            int from, int need_args) {
  int n = lua_gettop(L) - from + 1;
  if (need_args) luaL_argcheck(L, n >= 1, from, "a channel or pattern expected");
  const char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * (sizeof(char *) + sizeof(size_t)),
                                        0);
  size_t *lens = (size_t *)(argv + n + 1);
  argv[0] = cmd;
  lens[0] = strlen(cmd);
  for (int i = 0; i < n; i++) {
    int idx = from + i;
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
      luaL_argerror(L, idx, lua_pushfstring(L, "string expected, got %s",
                                            luaL_typename(L, idx)));
    argv[i + 1] = lua_tolstring(L, idx, &lens[i + 1]);
  }
  begin_wait(L, u, W_CONFIRM);
  lua_pushvalue(L, self);   /* the wait's userdata on top while it waits */
  static const char *const ping[] = {"PING"};
  int rc = redis_sub_command(u->s, n + 1, argv, lens);
  if (rc == 0 && (rc = redis_sub_command(u->s, 1, ping, NULL)) == 0) u->pongs++;
  if (rc < 0) u->waiting = W_IDLE;
  if (rc == REDIS_E_NOMEM) luaL_error(L, "not enough memory");
  if (rc < 0) {
    lua_pushnil(L);
    redis_push_conn_error(L, u->server, u->dead ? u->msg : redis_strerror(rc));
    return 2;
  }
  u->reply_err[0] = '\0';
  metrics_count_any(METRIC_REDIS_COMMANDS);
  uint64_t t = u->timeout_ms ? (uint64_t)u->timeout_ms * 1000000u : TASK_NO_TIMEOUT;
  return task_wait(L, &u->tw, t);
}

static struct lsub *check_sub(lua_State *L) {
  struct lsub *u = luaL_checkudata(L, 1, SUB_MT);
  if (u->closed) luaL_error(L, "redis: the subscription is closed");
  return u;
}

static void sub_free(struct lsub *u) {
  if (u->s) redis_sub_close(u->s);
  u->s = NULL;
  redisReply *r;
  while ((r = queue_pop(u))) freeReplyObject(r);
  free(u->q);
  u->q = NULL;
  u->qcap = 0;
}

static int s_close(lua_State *L) {
  struct lsub *u = luaL_checkudata(L, 1, SUB_MT);
  int was_waiting = u->waiting;
  sub_free(u);
  u->closed = 1;   /* further use raises */
  if (was_waiting && !u->completed)   /* a coroutine waits on it: it gets the end */
    end_sub(u, "subscription closed");
  return 0;
}

static int s_read(lua_State *L) {
  struct lsub *u = check_sub(L);
  uint64_t t = task_check_timeout(L, 2);
  if (u->dead && u->s && u->qn == 0) {   /* ended by overflow: let go of the connection */
    redis_sub_close(u->s);
    u->s = NULL;
  }
  begin_wait(L, u, W_READ);
  lua_settop(L, 1);
  return task_wait(L, &u->tw, t);
}

static int sub_command(lua_State *L, const char *cmd, int need_args) {
  struct lsub *u = check_sub(L);
  if (u->dead) {
    lua_pushnil(L);
    redis_push_conn_error(L, u->server, u->msg);
    return 2;
  }
  return send_and_confirm(L, u, 1, cmd, 2, need_args);
}

static int s_subscribe(lua_State *L) { return sub_command(L, "SUBSCRIBE", 1); }
static int s_psubscribe(lua_State *L) { return sub_command(L, "PSUBSCRIBE", 1); }
static int s_unsubscribe(lua_State *L) { return sub_command(L, "UNSUBSCRIBE", 0); }
static int s_punsubscribe(lua_State *L) { return sub_command(L, "PUNSUBSCRIBE", 0); }

static int s_gc(lua_State *L) {
  sub_free(lua_touserdata(L, 1));
  return 0;
}

static int s_tostring(lua_State *L) {
  struct lsub *u = luaL_checkudata(L, 1, SUB_MT);
  lua_pushfstring(L, "redis.subscription(\"%s\", %s)", redis_calls_name(u->server),
                  u->closed ? "closed" : u->dead ? "ended" : "open");
  return 1;
}

static int open_sub(lua_State *L, const char *cmd) {
  struct redis_lclient *cl = luaL_checkudata(L, 1, REDIS_CLIENT_MT);
  luaL_argcheck(L, lua_gettop(L) >= 2, 2, "a channel or pattern expected");
  struct task_loop *tl = task_io_loop(L);
  struct redis_client *rc = tl ? redis_calls_client(tl, cl->server) : NULL;
  if (!rc) return luaL_error(L, "not enough memory");
  if (!luaL_getmetatable(L, SUB_MT)) {
    static const luaL_Reg methods[] = {
      {"read", s_read}, {"subscribe", s_subscribe}, {"psubscribe", s_psubscribe},
      {"unsubscribe", s_unsubscribe}, {"punsubscribe", s_punsubscribe}, {"close", s_close},
      {NULL, NULL}};
    lua_pop(L, 1);
    luaL_newmetatable(L, SUB_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, s_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, s_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, s_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  struct lsub *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  u->server = cl->server;
  u->timeout_ms = cl->timeout_ms;
  u->tl = tl;
  luaL_setmetatable(L, SUB_MT);
  int err = redis_sub_open(rc, on_sub, u, &u->s);
  if (err == REDIS_E_NOMEM) return luaL_error(L, "not enough memory");
  if (err < 0) {
    metrics_count_any(METRIC_REDIS_ERRORS);
    const char *why = err == REDIS_E_UNAVAILABLE ? redis_client_error(rc) : "";
    lua_pushnil(L);
    redis_push_conn_error(L, cl->server,
                          err == REDIS_E_BUSY ? "too many blocking commands and subscriptions "
                                                "in flight"
                          : why && *why ? why : redis_strerror(err));
    return 2;
  }
  lua_rotate(L, 2, 1);   /* stack: client sub args... */
  u->opening = 2;        /* the wait's result is the subscription, at index 2 */
  return send_and_confirm(L, u, 2, cmd, 3, 1);
}

int redis_lsub_subscribe(lua_State *L) { return open_sub(L, "SUBSCRIBE"); }
int redis_lsub_psubscribe(lua_State *L) { return open_sub(L, "PSUBSCRIBE"); }
