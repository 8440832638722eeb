/*
 * redis: Redis servers named in app.lua (SPEC §14), thin over net/redis
 * (through host/redis_calls for the per-loop clients).
 *
 *   local redis = require("redis")
 *   local r = redis.client("main" [, {timeout = seconds}])
 *   r:call("SET", "k", "v")            --> "OK"
 *   r:pipeline(function(p) p:call("INCR", "a") p:call("GET", "a") end)
 *                                      --> {1, "1"}
 *
 * Replies: status and bulk strings are strings, integers integers, arrays
 * tables (a nil bulk inside one is redis.null), a nil bulk nil.  An error
 * reply returns nil, err (a redis.ReplyError); a connection failure or a
 * timeout returns nil, err (a redis.ConnectionError).  In a pipeline's
 * array an error reply is a redis.ReplyError in its slot.  Both classes
 * are children of redis.Error (tostring: "redis.ReplyError: <message>").
 *
 * Timeout: each call (a pipeline is one call) has the client's timeout,
 * 5 s unless client() is given {timeout = seconds} (0: none).  A blocking
 * command (BLPOP k 10) should get a client whose timeout is longer than
 * the server-side one.  Waiting follows §9: a blocking command ends at
 * shutdown with nil, "shutting down"; an ordinary one runs on; bt.cancel
 * gives nil, "cancelled"; the deadline raises.  A call given up is
 * cancelled in the net layer (a blocking one's connection is closed).
 *
 * Misuse raises: an unknown server name, arguments that are not strings
 * or numbers, commands the shared connection refuses (SELECT, MULTI outside
 * a pipeline, SUBSCRIBE: see net/redis.h).  Pub/sub has its own calls,
 * r:subscribe and r:psubscribe (bindings/redis_sub.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/dtoa.h"
#include "bindings/bindings.h"
#include "metrics.h"
#include "redis_calls.h"
#include "bindings/redis_lua.h"
#include "task.h"
#include "vm/errors.h"
#include "vm/state.h"

#define PIPELINE_MT "luahost.redis.Pipeline"
#define WAIT_MT "luahost.redis.Wait"
#define NULL_KEY "luahost.redis.null"
#define DEFAULT_TIMEOUT_MS 5000u

struct pipeline { struct redis_batch *b; int server; int sent; };

/* A call in flight: a userdata on the waiting coroutine's stack. */
struct rcall {
  struct task_wait tw;
  struct redis_cmd *cmd;      /* until the callback or a cancel */
  int done;
  int err;
  char msg[300];
  size_t n;
  redisReply **replies;       /* owned once done */
  int server;
  int pipeline;               /* answer with an array of replies */
};

/* ---- replies to Lua ------------------------------------------------------ */

static void push_null(lua_State *L) { lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY); }

static void push_reply(lua_State *L, const redisReply *r, int in_array) {
  luaL_checkstack(L, 4, "reply too deep");
  switch (r->type) {
    case REDIS_REPLY_STATUS: case REDIS_REPLY_STRING:
      lua_pushlstring(L, r->str, (size_t)r->len);
      break;
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case REDIS_REPLY_NIL: if (in_array) push_null(L); else lua_pushnil(L); break;
    case REDIS_REPLY_ERROR: vm_error_push(L, REDIS_CLASS_REPLY, REDIS_CLASS_ERROR, "%s", r->str); break;
    case REDIS_REPLY_ARRAY:
      lua_createtable(L, (int)r->elements, 0);
      for (size_t i = 0; i < r->elements; i++) {
        push_reply(L, r->element[i], 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      break;
    default: lua_pushnil(L);
  }
}

void redis_push_conn_error(lua_State *L, int server, const char *msg) {
  vm_error_push(L, REDIS_CLASS_CONN, REDIS_CLASS_ERROR, "redis '%s': %s", redis_calls_name(server), msg);
}

static int call_result(lua_State *L, struct task_wait *tw) {
  struct rcall *c = (struct rcall *)tw;
  if (tw->end != TASK_DONE) {
    lua_pushnil(L);
    lua_pushstring(L, tw->end == TASK_CANCELLED ? "cancelled" : tw->end == TASK_SHUTDOWN
                                                                ? "shutting down" : "timeout");
    return 2;
  }
  if (c->err) {
    lua_pushnil(L);
    redis_push_conn_error(L, c->server, c->msg);
    return 2;
  }
  if (c->pipeline) {
    lua_createtable(L, (int)c->n, 0);
    for (size_t i = 0; i < c->n; i++) {
      push_reply(L, c->replies[i], 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
  }
  if (c->replies[0]->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    push_reply(L, c->replies[0], 0);
    return 2;
  }
  push_reply(L, c->replies[0], 0);
  return 1;
}

/* ---- a call as a §9 wait -------------------------------------------------- */

static void free_replies(struct rcall *c) {
  for (size_t i = 0; i < c->n; i++)
    if (c->replies[i]) freeReplyObject(c->replies[i]);
  free(c->replies);
  c->replies = NULL;
  c->n = 0;
}

static int rcall_gc(lua_State *L) {
  struct rcall *c = lua_touserdata(L, 1);
  if (c->cmd && !c->done) redis_cancel(c->cmd);
  c->cmd = NULL;
  free_replies(c);
  return 0;
}

static void on_reply(void *ud, struct redis_done *d) {
  struct rcall *c = ud;
  c->cmd = NULL;
  c->done = 1;
  c->err = d->err;
  if (d->err) metrics_count_any(METRIC_REDIS_ERRORS);
  if (d->err) {
    snprintf(c->msg, sizeof c->msg, "%s", d->msg && *d->msg ? d->msg : redis_strerror(d->err));
  } else if (!(c->replies = calloc(d->n ? d->n : 1, sizeof *c->replies))) {
    c->err = REDIS_E_NOMEM;
    snprintf(c->msg, sizeof c->msg, "%s", redis_strerror(REDIS_E_NOMEM));
  } else {
    for (size_t i = 0; i < d->n; i++) {
      c->replies[i] = d->replies[i];
      d->replies[i] = NULL;   /* ours now */
    }
    c->n = d->n;
  }
  task_complete(&c->tw);
}

static int rcall_abandon(struct task_wait *tw, int why) {
  struct rcall *c = (struct rcall *)tw;
  if (c->done) return 0;   /* the completion is on its way */
  redis_cancel(c->cmd);
  c->cmd = NULL;
  return 1;
}

/* Sends b on the server's client of this task's loop and waits. */
static int send_and_wait(lua_State *L, struct redis_batch *b, int server, unsigned timeout_ms,
                         int pipeline) {
  struct task_loop *tl = task_io_loop(L);
  struct redis_client *rc = tl ? redis_calls_client(tl, server) : NULL;
  if (!rc) return luaL_error(L, "not enough memory");
  struct rcall *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->server = server;
  c->pipeline = pipeline;
  c->tw.abandon = rcall_abandon;
  c->tw.result = call_result;
  if (redis_batch_blocking(b)) c->tw.flags = TASK_ENDS_AT_SHUTDOWN;
  if (luaL_newmetatable(L, WAIT_MT)) {
    lua_pushcfunction(L, rcall_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  metrics_count_any(METRIC_REDIS_COMMANDS);   /* /_ah/metrics: a call (a pipeline is one) */
  int err = redis_send(rc, b, timeout_ms, on_reply, c, &c->cmd);
  if (err < 0) metrics_count_any(METRIC_REDIS_ERRORS);
  if (err == REDIS_E_REFUSED || err == REDIS_E_INVAL)
    return luaL_error(L, "redis: %s", *redis_batch_error(b) ? redis_batch_error(b)
                                                             : redis_strerror(err));
  if (err == REDIS_E_NOMEM) return luaL_error(L, "not enough memory");
  if (err < 0) {
    const char *why = err == REDIS_E_UNAVAILABLE ? redis_client_error(rc)
                      : err == REDIS_E_BUSY ? redis_batch_error(b) : "";
    lua_pushnil(L);
    redis_push_conn_error(L, server, why && *why ? why : redis_strerror(err));
    return 2;
  }
  return task_wait(L, &c->tw, TASK_NO_TIMEOUT);
}

/* ---- arguments ------------------------------------------------------------ */

/* Adds the command made of L's values first..top to b (numbers as their
 * exact decimal text), raising for other types and refused commands. */
/* A number argument as Redis reads it: an integer, or a float with an
 * integral value below 2^63, in decimal (EXPIRE k 60.0 works); another
 * finite float as the shortest text that reads back to it (0.1, not
 * 0.10000000000000001); inf and nan as "inf", "-inf", "nan". */
static void format_arg(lua_State *L, int idx, char num[DTOA_BUFSIZE]) {
  lua_Integer n;
  lua_Number d = lua_tonumber(L, idx);
  if (lua_isinteger(L, idx)) n = lua_tointeger(L, idx);
  else if (!(d == floor(d) && lua_numbertointeger(d, &n))) {
    if (isfinite(d)) dtoa_format(d, num);
    else snprintf(num, DTOA_BUFSIZE, "%s", isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
    return;
  }
  num[dtoa_format_int(n, num)] = '\0';
}

static void add_command(lua_State *L, struct redis_batch *b, int first) {
  int top = lua_gettop(L);
  int argc = top - first + 1;
  luaL_argcheck(L, argc >= 1, first, "a command name expected");
  const char **argv = lua_newuserdatauv(L, (size_t)argc * (sizeof(char *) + sizeof(size_t)), 0);
  size_t *lens = (size_t *)(argv + argc);
  for (int i = 0; i < argc; i++) {
    int idx = first + i;
    char num[DTOA_BUFSIZE];
    switch (lua_type(L, idx)) {
      case LUA_TSTRING: break;
      case LUA_TNUMBER:
        format_arg(L, idx, num);
        lua_pushstring(L, num);
        lua_replace(L, idx);
        break;
      default:
        luaL_argerror(L, idx, lua_pushfstring(L, "string or number expected, got %s",
                                              luaL_typename(L, idx)));
    }
    argv[i] = lua_tolstring(L, idx, &lens[i]);
  }
  int rc = redis_batch_add(b, argc, argv, lens);
  if (rc == REDIS_E_NOMEM) luaL_error(L, "not enough memory");
  if (rc < 0) luaL_error(L, "redis: %s", redis_batch_error(b));
  lua_pop(L, 1);
}

/* ---- client ---------------------------------------------------------------- */

static struct redis_lclient *check_client(lua_State *L) {
  return luaL_checkudata(L, 1, REDIS_CLIENT_MT);
}

static int batch_gc(lua_State *L) {
  struct redis_batch **bp = lua_touserdata(L, 1);
  if (*bp) redis_batch_free(*bp);
  *bp = NULL;
  return 0;
}

/* A batch owned by a userdata pushed on L (freed by its __gc). */
static struct redis_batch *new_batch(lua_State *L) {
  struct redis_batch **bp = lua_newuserdatauv(L, sizeof *bp, 0);
  *bp = NULL;
  if (luaL_newmetatable(L, "luahost.redis.Batch")) {
    lua_pushcfunction(L, batch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (!(*bp = redis_batch_new())) luaL_error(L, "not enough memory");
  return *bp;
}

static int c_call(lua_State *L) {
  struct redis_lclient *cl = check_client(L);
  struct redis_batch *b = new_batch(L);
  lua_rotate(L, 2, 1);   /* stack: client batch args... */
  add_command(L, b, 3);
  return send_and_wait(L, b, cl->server, cl->timeout_ms, 0);
}

static int p_call(lua_State *L) {
  struct pipeline *p = luaL_checkudata(L, 1, PIPELINE_MT);
  if (p->sent) return luaL_error(L, "redis: this pipeline was sent already");
  add_command(L, p->b, 2);
  return 0;
}

static int pipeline_gc(lua_State *L) {
  struct pipeline *p = luaL_checkudata(L, 1, PIPELINE_MT);
  if (p->b) redis_batch_free(p->b);
  p->b = NULL;
  return 0;
}

static int pipeline_send(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct redis_lclient *cl = lua_touserdata(L, 1);
  struct pipeline *p = lua_touserdata(L, 3);
  p->sent = 1;
  if (redis_batch_count(p->b) == 0) {
    lua_newtable(L);
    return 1;
  }
  return send_and_wait(L, p->b, cl->server, cl->timeout_ms, 1);
}

static int c_pipeline(lua_State *L) {
  struct redis_lclient *cl = check_client(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  struct pipeline *p = lua_newuserdatauv(L, sizeof *p, 0);   /* index 3 */
  memset(p, 0, sizeof *p);
  p->server = cl->server;
  luaL_setmetatable(L, PIPELINE_MT);
  if (!(p->b = redis_batch_new())) return luaL_error(L, "not enough memory");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_callk(L, 1, 0, 0, pipeline_send);   /* fn(p) may wait: it may yield */
  return pipeline_send(L, LUA_OK, 0);
}

static int c_tostring(lua_State *L) {
  struct redis_lclient *cl = check_client(L);
  lua_pushfstring(L, "redis.client(\"%s\")", redis_calls_name(cl->server));
  return 1;
}

static int client_new(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int server = redis_calls_find(name);
  if (server < 0)
    return luaL_error(L, "redis.client: no server '%s' in app.lua's 'redis' table", name);
  unsigned timeout_ms = DEFAULT_TIMEOUT_MS;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "timeout");
    if (!lua_isnil(L, -1)) {
      lua_Number t = luaL_checknumber(L, -1);
      luaL_argcheck(L, t >= 0 && t <= 86400 * 30, 2, "timeout must be seconds >= 0 (0: none)");
      timeout_ms = t == 0 ? 0 : (unsigned)ceil(t * 1000.0);
      if (timeout_ms == 0 && t > 0) timeout_ms = 1;
    }
    lua_pop(L, 1);
  }
  struct redis_lclient *cl = lua_newuserdatauv(L, sizeof *cl, 0);
  cl->server = server;
  cl->timeout_ms = timeout_ms;
  luaL_setmetatable(L, REDIS_CLIENT_MT);
  return 1;
}

static int null_tostring(lua_State *L) {
  lua_pushliteral(L, "redis.null");
  return 1;
}

int luaopen_redis(lua_State *L) {
  static const luaL_Reg client_methods[] = {
    {"call", c_call}, {"pipeline", c_pipeline}, {"subscribe", redis_lsub_subscribe},
    {"psubscribe", redis_lsub_psubscribe}, {NULL, NULL}};
  static const luaL_Reg pipeline_methods[] = {{"call", p_call}, {NULL, NULL}};
  if (luaL_newmetatable(L, REDIS_CLIENT_MT)) {
    luaL_newlib(L, client_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, c_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, PIPELINE_MT)) {
    luaL_newlib(L, pipeline_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, pipeline_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  /* redis.null: one frozen table per state */
  if (lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "redis.null");
    lua_setfield(L, -2, "__metatable");
    lua_pushliteral(L, "redis.null");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, NULL_KEY);
  }
  lua_newtable(L);   /* the module */
  lua_insert(L, -2);
  lua_setfield(L, -2, "null");
  lua_pushcfunction(L, client_new);
  lua_setfield(L, -2, "client");
  vm_error_class(L, REDIS_CLASS_ERROR, NULL);
  lua_setfield(L, -2, "Error");
  vm_error_class(L, REDIS_CLASS_REPLY, REDIS_CLASS_ERROR);
  lua_setfield(L, -2, "ReplyError");
  vm_error_class(L, REDIS_CLASS_CONN, REDIS_CLASS_ERROR);
  lua_setfield(L, -2, "ConnectionError");
  return 1;
}
