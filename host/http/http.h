/*
 * http: the HTTP/1.1 layer.  Turns bytes into struct http_request, calls
 * one dispatcher callback, turns a response back into bytes.  Enforces the
 * HTTP limits (header block, body, timeouts, connection cap).  Knows no Lua.
 *
 * Threads: a struct http_server and all its connections belong to one
 * worker thread (its libuv loop); every function here must be called on
 * that thread.  The connection counter shared by all servers is atomic.
 */
#ifndef LUAHOST_HTTP_H
#define LUAHOST_HTTP_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "base/list.h"

#include "base/instance.h"

#define HTTP_MAX_HEADER_BLOCK (64 * 1024)

struct http_header {
  const char *name; size_t name_len;    /* request: lower-cased */
  const char *value; size_t value_len;
};

/* The default Content-Type of the host's own and the handlers' text. */
#define HTTP_TEXT_PLAIN "text/plain; charset=utf-8"
#define HTTP_HEADER_TEXT_PLAIN {"Content-Type", 12, HTTP_TEXT_PLAIN, sizeof HTTP_TEXT_PLAIN - 1}

/* ASCII lower case of n bytes of src into dst (which may be src): the
 * one place header names are lower-cased. */
static inline void http_lower(char *dst, const char *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ch = src[i];
    dst[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
}

/* A parsed request.  Every pointer stays valid until http_respond(). */
struct http_request {
  const char *method;
  const char *target; size_t target_len;     /* raw request target */
  const char *path; size_t path_len;         /* target before '?' */
  const char *query; size_t query_len;       /* after '?', raw */
  int http_major, http_minor;
  const struct http_header *headers; int nheaders;
  const char *body; size_t body_len;
  const char *remote;                        /* peer address, text */
  char request_id[INSTANCE_RID_LEN + 1];
  uint64_t seq;                              /* the request ID's number */
  int is_head;
  uint64_t start_ns;
};

struct http_conn;

/* Called once per complete request.  The callee must eventually call
 * http_respond(c, ...) exactly once, now or later on the same thread. */
typedef void (*http_dispatch_fn)(void *ud, struct http_conn *c,
                                 const struct http_request *req);

struct http_limits {
  size_t max_body;
  uint32_t header_timeout_ms;   /* from the first byte to the end of headers */
  uint32_t body_timeout_ms;     /* between two reads of a body */
  uint32_t idle_timeout_ms;     /* keep-alive wait for the next request */
  int access_log;               /* HTTP_ACCESS_LOG_*: config's access_log */
};

/* access_log: off; a line in the host log's format; a JSON line always.
 * The values are config.c's (app.lua false / true / "json"). */
enum { HTTP_ACCESS_LOG_OFF = 0, HTTP_ACCESS_LOG_ON = 1, HTTP_ACCESS_LOG_JSON = 2 };

/* One per worker loop.  Owner: that worker's thread. */
struct http_server {
  uv_loop_t *loop;
  struct http_limits lim;
  http_dispatch_fn dispatch;
  void *ud;
  struct list conns;    /* open connections (http_conn.node) */
  atomic_int nconns;    /* connections open on this loop (plus those another
                           worker is handing over); read by other workers
                           when they balance new connections */
  int ninflight;        /* requests dispatched but not yet answered */
  int draining;         /* shutting down: close idle, no keep-alive */
  int close_each;       /* every response carries Connection: close (the
                           instance drains; idle connections stay) */
  /* Optional: told of each request the HTTP layer answers itself (400,
   * 413, 431, 505), just before the answer, on the owner thread. */
  void (*refused)(void *ud, const struct http_request *r, int status);
};

void http_server_init(struct http_server *s, uv_loop_t *loop,
                      const struct http_limits *lim, http_dispatch_fn fn,
                      void *ud);
/* Takes ownership of an accepted, connected socket. 0 or -errno. */
int http_conn_open(struct http_server *s, int fd);
/* Stop keep-alive: idle connections close now, busy ones after their
 * response.  Returns when nothing is left to do after in-flight ones. */
void http_server_drain(struct http_server *s);
/* Close every connection at once (after the grace period). */
void http_server_close_all(struct http_server *s);

/* Answer the request in flight on c.  Headers are copied; the caller keeps
 * ownership of h and body.  Content-Length, Date and x-request-id are added;
 * Content-Length/Transfer-Encoding in h are ignored. */
void http_respond(struct http_conn *c, int status, const struct http_header *h,
                  int nh, const char *body, size_t len);

/* Process-wide cap on open connections (all workers). */
void http_set_max_conns(int n);
/* Connections open now, all workers (a relaxed read; any thread). */
int http_open_connections(void);
/* 1 when m (upper case) is a method the request parser accepts (llhttp's
 * HTTP list: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, PURGE, ...);
 * a request with another method is answered 400.  Any thread. */
int http_method_known(const char *m);

#endif
