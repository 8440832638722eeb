/*
 * net/redis: a Redis client on a libuv loop.  Knows no Lua.
 *
 * hiredis (Debian 0.14.1, RESP2) is used only to format commands
 * (redisFormatCommandArgv) and to parse replies (redisReader); the
 * connections, name resolution (uv_getaddrinfo), timers and reconnects
 * are ours.  hiredis abort()s when malloc fails inside its reader; we
 * accept that (as for any other allocation failure we cannot report).
 *
 * Connections.  A client (one per loop per named server) keeps ONE shared
 * connection that carries every ordinary command of every caller,
 * pipelined: a command is written without waiting for earlier replies,
 * and commands issued in one loop iteration leave in one write.  A
 * blocking command (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
 * BZPOPMAX, BZMPOP, XREAD/XREADGROUP with BLOCK, WAIT, WAITAOF) takes a
 * connection of its own: an idle one from a small pool, or a new one (at
 * most opts.max_blocking busy at once); after its reply the connection
 * goes back to the pool, after a cancel or a timeout it is closed.  Every
 * connection logs in as the URL says (AUTH, SELECT; a PING when neither)
 * before it carries commands.
 *
 * Commands that would change the shared connection's state for everyone
 * are refused (REDIS_E_REFUSED): SELECT, AUTH, HELLO, QUIT, RESET,
 * MONITOR, SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE and their UN- forms (pub/sub
 * has its own API: redis_sub_*, below), SYNC, PSYNC, REPLCONF, CLIENT
 * REPLY, and MULTI, EXEC, DISCARD, WATCH outside a batch.  A batch (redis_batch_*) is
 * written contiguously, so MULTI ... EXEC inside ONE batch is fine (a
 * MULTI or WATCH must be closed by an EXEC or DISCARD of the same batch).
 *
 * Completion.  redis_send returns 0 and later calls its callback exactly
 * once on the loop thread, or returns a negative REDIS_E_* and never calls
 * it.  A callback never runs inside redis_send.  After redis_cancel there
 * is no callback at all.  Errors a callback can see:
 *   REDIS_E_CONN      the connection failed (refused, reset, closed by the
 *                     server, connect or login timed out) before all the
 *                     replies came; the command may or may not have run.
 *   REDIS_E_AUTH      AUTH/SELECT/PING at login was refused (wrong password,
 *                     db out of range, NOAUTH, LOADING); retried with backoff.
 *   REDIS_E_PROTOCOL  the server sent bytes that are not RESP2, or more
 *                     replies than commands; the connection is dropped.
 *   REDIS_E_TIMEOUT   no reply within timeout_ms (see "Timeouts").
 *   REDIS_E_CLOSED    redis_client_close came first.
 * A Redis error reply ("-ERR ...") is not an error here: err is 0 and the
 * reply has type REDIS_REPLY_ERROR.
 *
 * Redis unavailable.  The shared connection is opened by redis_client_new
 * and reopened whenever it drops: at once after a drop, then with backoff
 * (opts.backoff_min_ms doubling to opts.backoff_max_ms) while attempts
 * fail; a successful login resets the backoff.  Commands issued while an
 * attempt is under way wait for it (within their timeouts); when the
 * attempt fails they complete with its error.  Commands issued while the
 * client waits out a backoff fail at once: redis_send returns
 * REDIS_E_UNAVAILABLE and redis_client_error says why ("connect
 * 127.0.0.1:6379/0: connection refused").  So a dead Redis answers fast,
 * and a restarted one is found again by itself within backoff_max_ms.
 * Unwritten commands of a dropped connection move to the next attempt;
 * written ones fail with REDIS_E_CONN (never retried: they may have run).
 *
 * Timeouts (timeout_ms > 0; 0 waits for ever).  On the shared connection a
 * command that times out completes with REDIS_E_TIMEOUT; its reply, when
 * it comes, is read and dropped, so the pipeline stays in step.  If no
 * byte at all arrives for opts.stall_ms after such a timeout (a paused or
 * wedged Redis), the connection is reset: the commands still on it fail
 * with REDIS_E_CONN and a new attempt starts (its login times out too, so
 * a paused Redis soon answers REDIS_E_UNAVAILABLE fast).  On a blocking
 * command's own connection, a timeout closes that connection.  Pass the
 * server-side timeout inside a blocking command (BLPOP k 5) and a
 * timeout_ms a little longer, so Redis answers first; if timeout_ms fires
 * first, an element Redis popped in that instant is lost with the closed
 * connection.
 *
 * Addresses: a host name is resolved with uv_getaddrinfo at each attempt
 * and the first IPv4 address is used (else the first one); numeric
 * addresses and unix sockets skip the lookup.
 *
 * Threads: everything but redis_strerror and the batch builder runs on the
 * loop thread of the client's loop.  The batch builder touches no client
 * and may be used on any thread (one thread per batch).
 *
 * Limits: replies nest at most 7 arrays deep (hiredis 0.14's reader);
 * bulk strings are as long as Redis allows (512 MB).  The peer is trusted
 * for memory: a hostile server can make the reader allocate what it
 * announces.
 */
#ifndef LUAHOST_REDIS_H
#define LUAHOST_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/redis_url.h"

enum {
  /* 0: success (REDIS_OK in hiredis) */
  REDIS_E_NOMEM = -1,
  REDIS_E_INVAL = -2,        /* argc < 1, an empty batch */
  REDIS_E_REFUSED = -3,      /* a command that would break the shared connection */
  REDIS_E_UNAVAILABLE = -4,  /* Redis down: backing off (redis_client_error says why) */
  REDIS_E_CONN = -5,
  REDIS_E_AUTH = -6,
  REDIS_E_PROTOCOL = -7,
  REDIS_E_TIMEOUT = -8,
  REDIS_E_CLOSED = -9,
  REDIS_E_BUSY = -10,        /* opts.max_blocking blocking commands in flight already */
};

/* A fixed sentence for a code ("connection error", "timeout", ...). */
const char *redis_strerror(int err);

struct redis_options {
  unsigned connect_timeout_ms;  /* resolve + connect + login; default 2000 */
  unsigned stall_ms;            /* reset after a timeout and this long silent; default 1000 */
  unsigned backoff_min_ms;      /* default 50 */
  unsigned backoff_max_ms;      /* default 2000 */
  unsigned max_blocking;        /* blocking commands in flight; default 64 */
  unsigned max_idle_blocking;   /* idle blocking connections kept; default 4 */
};

struct redis_client;
struct redis_batch;
struct redis_cmd;

/* What a callback receives.  replies[0..n) are valid during the callback
 * only; a callback that wants to keep one sets replies[i] = NULL and frees
 * it later with freeReplyObject.  msg is a sentence naming the cause and
 * the server ("connect 127.0.0.1:6379/0: connection refused"). */
struct redis_done {
  int err;                 /* 0, or REDIS_E_* (then n is 0) */
  const char *msg;         /* err != 0: valid during the callback */
  size_t n;                /* err == 0: one reply per command, in order */
  redisReply **replies;
};
typedef void (*redis_cb)(void *ud, struct redis_done *d);

/* Starts connecting at once.  opts may be NULL (defaults; a 0 field takes
 * its default too).  The URL is copied.  Like any libuv handle, the
 * client keeps its loop alive until it is closed.  NULL: no memory. */
struct redis_client *redis_client_new(uv_loop_t *loop, const struct redis_url *url,
                                      const struct redis_options *opts);

/* Ends the client: every command still pending completes with
 * REDIS_E_CLOSED before this returns (cancelled ones stay silent); then
 * the handles close and closed_cb(ud) runs from the loop once the client's
 * memory is freed (closed_cb may be NULL; a name lookup under way may keep
 * the loop busy a moment longer).  Later calls on c are misuse;
 * redis_send on a closing client (say, from a callback) returns
 * REDIS_E_CLOSED.  May be called from a callback. */
void redis_client_close(struct redis_client *c, void (*closed_cb)(void *ud), void *ud);

/* Why the client is unavailable (or what failed last); "" if nothing
 * failed.  Valid until the next loop iteration. */
const char *redis_client_error(const struct redis_client *c);

/* One command: argv[0..argc) with lengths (argvlen NULL: NUL-terminated
 * strings).  Sends it as a batch of one (redis_batch_add then redis_send,
 * with their results). */
int redis_command(struct redis_client *c, int argc, const char *const *argv,
                  const size_t *argvlen, unsigned timeout_ms, redis_cb cb, void *ud,
                  struct redis_cmd **out);

/* A batch: commands formatted now, written later back to back in one
 * piece, answered by one callback with one reply per command.  A batch
 * that holds a blocking command goes, whole, to a blocking connection.
 * The caller owns the batch and frees it with redis_batch_free, sent or
 * not (redis_send moves the commands out of it). */
struct redis_batch *redis_batch_new(void);              /* NULL: no memory */
/* 0; REDIS_E_REFUSED (the command is not added; redis_batch_error says
 * why), REDIS_E_INVAL (argc < 1), REDIS_E_NOMEM. */
int redis_batch_add(struct redis_batch *b, int argc, const char *const *argv,
                    const size_t *argvlen);
size_t redis_batch_count(const struct redis_batch *b);
/* 1 when b holds a blocking command (it will wait on its own connection:
 * the kind of wait that shutdown ends early, see SPEC §9). */
int redis_batch_blocking(const struct redis_batch *b);
/* Why the last add or send of b was refused: a sentence, or "". */
const char *redis_batch_error(const struct redis_batch *b);
void redis_batch_free(struct redis_batch *b);

/* Sends the commands of b with one deadline for all of their replies.
 * 0: b is empty again, cb runs later, exactly once unless cancelled, and
 * *out (if out) names the command for redis_cancel until then.  <0, no
 * callback, b unchanged: REDIS_E_INVAL (empty batch), REDIS_E_REFUSED
 * (MULTI or WATCH not closed by a final EXEC/DISCARD, EXEC or DISCARD
 * without MULTI: redis_batch_error says so), REDIS_E_UNAVAILABLE
 * (redis_client_error says why), REDIS_E_BUSY (redis_batch_error),
 * REDIS_E_CLOSED, REDIS_E_NOMEM. */
int redis_send(struct redis_client *c, struct redis_batch *b, unsigned timeout_ms,
               redis_cb cb, void *ud, struct redis_cmd **out);

/* The waiter is gone: no callback will run.  An unwritten command is
 * dropped; a written one on the shared connection has its replies read
 * and discarded; a blocking one's connection is closed.  Only between a
 * successful send and its callback. */
void redis_cancel(struct redis_cmd *cmd);

/* Subscriptions (pub/sub).  redis_sub_open opens a connection of the
 * client's own for one subscriber (counted with the blocking commands in
 * opts.max_blocking, never pooled); redis_sub_command queues SUBSCRIBE,
 * PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE or PING on it (written once it is
 * logged in, in the loop's next iteration; anything else: REDIS_E_REFUSED).
 * Every reply the server pushes on it (the confirmations "subscribe",
 * "psubscribe", "unsubscribe", "punsubscribe", the messages "message" and
 * "pmessage", PING's "pong") reaches cb(ud, 0, NULL, reply) in order, on
 * the loop thread; cb owns the reply (freeReplyObject).  When the
 * connection ends (connect or login failure, reset, server closed it,
 * redis_client_close) cb(ud, err, msg, NULL) comes once, and nothing
 * after: the subscription is dead (no reconnect: subscribe again).
 * redis_sub_close(s) frees s, closing its connection if it is still up; no
 * callback after it (not even the end).  Call it exactly once, also for a
 * dead subscription, also after the client is closed.  cb may call
 * redis_sub_command, but not redis_sub_close on its own s.
 * redis_sub_open: 0 and *out; REDIS_E_CLOSED, REDIS_E_UNAVAILABLE
 * (redis_client_error says why), REDIS_E_BUSY, REDIS_E_NOMEM.
 * redis_sub_command: 0; REDIS_E_REFUSED, REDIS_E_INVAL, REDIS_E_NOMEM,
 * REDIS_E_CONN (the subscription is dead). */
struct redis_sub;
typedef void (*redis_sub_cb)(void *ud, int err, const char *msg, redisReply *reply);
int redis_sub_open(struct redis_client *c, redis_sub_cb cb, void *ud, struct redis_sub **out);
int redis_sub_command(struct redis_sub *s, int argc, const char *const *argv,
                      const size_t *argvlen);
void redis_sub_close(struct redis_sub *s);

struct redis_stats {
  int connected;            /* the shared connection is logged in */
  size_t queued;            /* commands not yet written */
  size_t in_flight;         /* written, replies awaited (dropped ones too) */
  size_t blocking_busy;     /* blocking connections carrying a command */
  size_t blocking_idle;     /* pooled blocking connections */
  uint64_t connects;        /* successful logins, shared and blocking */
};
void redis_client_stats(const struct redis_client *c, struct redis_stats *st);

#endif
