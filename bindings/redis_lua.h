/*
 * redis_lua: what the redis binding's files share (bindings/redis.c: the
 * module, clients, calls, pipelines; bindings/redis_sub.c: pub/sub
 * subscriptions).  Private to them.
 */
#ifndef LUAHOST_REDIS_LUA_H
#define LUAHOST_REDIS_LUA_H

#include <lua.h>

#define REDIS_CLIENT_MT "luahost.redis.Client"
#define REDIS_CLASS_ERROR "redis.Error"
#define REDIS_CLASS_REPLY "redis.ReplyError"
#define REDIS_CLASS_CONN "redis.ConnectionError"

/* A redis.client(...) userdata. */
struct redis_lclient { int server; unsigned timeout_ms; };

/* Pushes a redis.ConnectionError "redis '<name>': <msg>". */
void redis_push_conn_error(lua_State *L, int server, const char *msg);

/* r:subscribe(channel, ...) and r:psubscribe(pattern, ...) (redis_sub.c). */
int redis_lsub_subscribe(lua_State *L);
int redis_lsub_psubscribe(lua_State *L);

#endif
