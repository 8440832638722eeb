/*
 * net/redis_int: what redis.c, redis_conn.c and redis_batch.c share
 * (private to net/redis*).  redis.c: the client, sending, deadlines,
 * cancels; redis_conn.c: connections; redis_batch.c: formatting commands.
 */
#ifndef LUAHOST_REDIS_INT_H
#define LUAHOST_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/redis.h"

struct redis_batch {
  char *buf;          /* the formatted commands back to back (malloc) */
  size_t len, cap;
  size_t n;           /* commands in buf */
  int blocking;       /* holds a command that blocks its connection */
  int txn_open;       /* a MULTI or WATCH not yet closed by EXEC/DISCARD */
  int txn_bad;        /* EXEC or DISCARD without MULTI */
  char why[160];      /* the last refusal */
};

/* 0 when b may be sent; REDIS_E_INVAL or REDIS_E_REFUSED (reason in b->why). */
int redis_batch_check(struct redis_batch *b);

/* Everything below belongs to the loop thread of its client. */

enum { C_CONNECTING, C_LOGIN, C_READY, C_CLOSED };     /* rconn.state */
enum { W_NONE, W_OUT, W_FIFO };                        /* redis_cmd.where */
struct cmd_list { struct redis_cmd *head, *tail; size_t n; };

struct redis_cmd {
  struct redis_client *c;
  struct rconn *conn;           /* the connection whose list holds it */
  struct redis_cmd *prev, *next;
  int where;                    /* W_OUT: unwritten; W_FIFO: replies awaited */
  redis_cb cb;                  /* NULL once completed, timed out or cancelled */
  void *ud;
  int timed_out;                /* replies still to drop after a timeout */
  char *buf;                    /* the commands until written */
  size_t len;
  size_t n, got;                /* replies expected, received */
  redisReply **replies;
  uint64_t deadline;            /* uv_now ms; 0: none */
  size_t heap_idx;
  unsigned timeout_ms;
};

/* One physical connection: the shared one or a blocking one. */
struct rconn {
  struct redis_client *c;
  union { uv_handle_t h; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } io;
  uv_timer_t timer;             /* connect/login deadline, then the stall watch */
  uv_connect_t connect_req;
  struct resolve *resolve;      /* a uv_getaddrinfo under way */
  redisReader *reader;
  int state;
  int blocking, busy;           /* a blocking-pool connection; carrying a command */
  int login_left;
  const char *login_step[3];    /* which login command each reply answers */
  struct cmd_list out, fifo;
  size_t overdue;               /* timed-out commands still in fifo */
  int handles;                  /* handles not yet closed */
  struct rconn *prev, *next;    /* in the client's blocking list */
  struct redis_sub *sub;        /* a subscription's connection: replies stream to it */
};

struct redis_client {
  uv_loop_t *loop;
  struct redis_url url;
  struct redis_options o;
  char where[300];              /* the URL without credentials */
  char err[512];                /* the last failure */
  struct rconn *shared;         /* NULL while backing off */
  struct rconn *bconns;         /* blocking connections, busy and idle */
  size_t bbusy, bidle;
  unsigned backoff;             /* the last delay; 0 after a login */
  uv_timer_t backoff_timer, deadline_timer;
  uv_prepare_t flush;           /* writes the shared queue once per iteration */
  struct redis_cmd **heap;      /* commands by deadline */
  size_t heap_n, heap_cap;
  uint64_t armed;               /* deadline the timer is set for; 0: none */
  uint64_t connects;
  int closing, live;            /* live: own handles + connections not yet freed */
  void (*closed_cb)(void *);
  void *closed_ud;
  char rbuf[65536];
};

/* redis.c */
void rlist_push(struct cmd_list *l, struct redis_cmd *m);
void rlist_remove(struct cmd_list *l, struct redis_cmd *m);
void rcmd_free(struct redis_cmd *m);
/* Detaches m (out of the heap, its cb cleared) and tells its waiter. */
void rcmd_finish(struct redis_cmd *m, int err, const char *msg);
void rcmd_fail_list(struct cmd_list *l, int err, const char *msg);

/* redis.c: writes what was sent since the last iteration (c->flush). */
void rclient_on_flush(uv_prepare_t *p);

/* redis_sub.c: a subscription's side of its connection. */
void rsub_flush(struct rconn *k);                    /* write its pending commands */
void rsub_reply(struct rconn *k, redisReply *r);     /* a reply (taken) */
void rsub_ended(struct rconn *k, int err, const char *msg);   /* the connection ended */

/* redis_conn.c */
/* Writes bufs[0..n) (taken) in one uv_write; a uv error code. */
int rconn_write(struct rconn *k, char **bufs, const size_t *lens, size_t n);
/* A new connection, connecting; the shared one is set as c->shared (and
 * unset again if it fails at once).  NULL: no memory. */
struct rconn *rconn_open(struct redis_client *c, int blocking);
void rconn_fail(struct rconn *k, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rconn_flush(struct rconn *k);
void rconn_overdue(struct rconn *k);
void rclient_back_off(struct redis_client *c);
void rclient_unlive(struct redis_client *c);

#endif
