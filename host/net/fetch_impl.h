/*
 * net/fetch internals shared by fetch.c (one fetch: checks, the copy of
 * the request, response collection, result), fetch_curl.c (a transfer on
 * curl's multi handle, driven by uv_poll and uv_timer: https, proxies) and
 * fetch_h1.c (plain http on our own keep-alive HTTP/1.1 client: libuv
 * sockets, llhttp).  Not for other modules.  Everything here belongs to the
 * client's loop thread.
 */
#ifndef LUAHOST_NET_FETCH_IMPL_H
#define LUAHOST_NET_FETCH_IMPL_H

#include <curl/curl.h>
#include <netinet/in.h>

#include "base/list.h"
#include "net/fetch.h"

struct fetch_sock;
struct h1_conn;
struct h1_dns;
struct h1_host;

/* Idle keep-alive connections kept per client (curl's multi handle and
 * the HTTP/1.1 pool each). */
#define FETCH_MAX_IDLE_CONNECTIONS 64

#define FETCH_URL_MEMO 8

struct fetch_url_memo {
  char *raw;                    /* as the caller gave it; the one allocation */
  char *norm;                   /* as curl wrote it back (inside raw's) */
};

struct fetch_client {
  uv_loop_t *loop;
  struct fetch *head;           /* started, callback not yet run (both paths) */
  size_t active;
  size_t nhandles;              /* uv handles and requests not yet closed or called back */
  int closing;
  fetch_closed_cb closed;
  void *closed_ud;
  struct fetch_url_memo urls[FETCH_URL_MEMO];   /* the last URLs checked */
  unsigned urls_next;
  /* curl (fetch_curl.c) */
  CURLM *multi;                 /* NULL once closed */
  uv_timer_t timer;             /* curl's timeout */
  struct fetch_sock *socks;     /* watched sockets (closing ones are not listed) */
  /* HTTP/1.1 (fetch_h1.c) */
  int h1_off;                   /* a proxy is set in the environment: http via curl */
  uv_timer_t h1_timer;          /* the earliest deadline of an h1 fetch (lazy) */
  uint64_t h1_due;              /* when h1_timer fires (ms of uv_hrtime); 0: stopped */
  struct list conns;            /* every open connection */
  struct list idle;             /* idle ones, most recently used first */
  size_t nidle;
  char *rbuf;                   /* the read buffer all connections share */
  struct h1_host *hosts;        /* resolved names (60 s) */
};

/* Where a fetch runs. */
enum { FETCH_VIA_CURL, FETCH_VIA_H1 };

/* The caller's headers, as fetch_copy_request found them. */
enum {
  FETCH_HDR_HOST = 1,           /* a Host header */
  FETCH_HDR_ACCEPT = 2,
  FETCH_HDR_EXPECT = 4,
  FETCH_HDR_CLOSE = 8,          /* "Connection: close" */
};

struct fetch {
  struct fetch_client *c;
  struct fetch *prev, *next;    /* the client's list */
  int via;                      /* FETCH_VIA_* */
  CURLU *url;                   /* the current URL (after redirects, on the h1 path);
                                 * NULL until needed when the URL memo knew it */
  char *url_str;                /* it as curl writes it */
  fetch_done_cb cb;
  void *ud;
  fetch_alloc_fn alloc;
  void *alloc_ud;
  size_t max;
  int allow_truncated, follow, max_redirects, validate;
  long timeout_ms;
  /* the request, copied: method, then the caller's headers as
   * "Name: value\r\n" lines, then the body (one allocation) */
  char *rq;
  const char *method;           /* in rq, or "GET" after a redirect turned it */
  size_t method_len, hlines_off, hlines_len, body_off, rq_body_len;
  int has_body;                 /* a body was given (maybe empty) */
  unsigned hflags;              /* FETCH_HDR_* */
  /* the response being received (reset at each status line) */
  long status;                  /* from the status line */
  int has_location;
  long long clen;               /* content-length; -1: none */
  char *body;
  size_t body_len, body_cap;
  char *hbuf;                   /* records "name\0value\0", in order */
  size_t hbuf_len, hbuf_cap, nh;
  int err;                      /* FETCH_E* decided by a callback */
  int truncated;
  char msg[CURL_ERROR_SIZE];    /* our words for err */
  /* curl path */
  CURL *easy;
  struct curl_slist *hdrs;
  char errbuf[CURL_ERROR_SIZE]; /* curl's words */
  /* h1 path (fetch_h1.c) */
  struct h1_conn *conn;         /* the connection it uses or opens */
  struct h1_dns *dns;           /* its name being resolved */
  uint64_t deadline;            /* ms of uv_hrtime; 0: none */
  char *host;                   /* for connecting: no brackets ("::1") */
  char *target;                 /* "/path?query" */
  int port, redirects, retried, fresh_only;
  int starting;                 /* inside fetch_start: failures wait for the timer */
  int failed;                   /* err set, to be delivered by the timer */
  int last_err;                 /* the last connect's uv error */
  char *origin_host;            /* of the first URL: where the caller's Host goes */
  int origin_port;
  void *addrs;                  /* the addresses being tried, and which */
  int naddrs, ai;
  size_t hstart, hname;         /* the header being parsed: record start, name length */
  int hstate;                   /* 0, 1 in a name, 2 in a value */
  size_t hsize;                 /* header bytes of this response so far */
  int head;                     /* method HEAD: responses have no body */
  int redirecting;              /* this response is a redirect that is followed */
};

/* fetch.c: the request */
/* Checks rq and fills in f's copy of it (method, header lines, body,
 * options, allocator), f->url_str and maybe f->url. */
int fetch_copy_request(struct fetch *f, const struct fetch_request *rq);
int fetch_url_handle(struct fetch *f);   /* makes f->url from f->url_str if needed */
int fetch_url_has_userinfo(const char *url);   /* "scheme://user[:pass]@..." */
void fetch_url_memo_free(struct fetch_client *c);
/* The copied header lines as a curl list; skip_private leaves out Host,
 * Authorization and Cookie (after a redirect to another host). */
int fetch_curl_headers(const struct fetch *f, int skip_private, struct curl_slist **out);
/* Whether a header line "Name: ..." at s is one skip_private leaves out. */
int fetch_line_private(const char *s, size_t n);
/* Content-Length or Transfer-Encoding: the HTTP/1.1 client frames the body. */
int fetch_line_framing(const char *s, size_t n);

/* fetch.c: the response, for both paths */
void fetch_response_reset(struct fetch *f, long status);
/* Appends n bytes of a header record to hbuf (nul: and a NUL). */
int fetch_hdr_append(struct fetch *f, const char *s, size_t n, int nul);
/* The record at `at` ("name\0value", the value ending at hbuf_len) is
 * whole: trims and NUL-terminates the value, lower-cases the name, notes
 * Location and Content-Length. */
void fetch_hdr_commit(struct fetch *f, size_t at, size_t name_len);
/* A 3xx with a Location, followed. */
int fetch_is_redirect(const struct fetch *f);
/* The end of a header block: 0, or err set (body over the limit by its
 * Content-Length).  Then body bytes: 0 to go on, 1 to stop (err set, or
 * the body truncated). */
int fetch_headers_end(struct fetch *f);
int fetch_body_add(struct fetch *f, const char *buf, size_t len);
/* Sets f->err and f->msg (printf-style); returns 1. */
int fetch_fail(struct fetch *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Builds the result (err 0: f->err, or the collected response; fallback:
 * the message when f->msg is empty) and calls the callback; the caller
 * has unlinked f and frees it afterwards. */
void fetch_deliver(struct fetch *f, int err, long status, const char *final_url,
                   const char *fallback);
void fetch_unlink(struct fetch *f);
void fetch_free(struct fetch *f);

/* fetch_curl.c */
int fetch_curl_client_init(struct fetch_client *c);
/* Sets up and adds f's transfer (f->url, the copied request; at most
 * max_redirects more redirects within timeout_ms). */
int fetch_curl_start(struct fetch *f, int skip_private);
void fetch_curl_stop(struct fetch *f);    /* removes it from the multi handle */
/* Ends a removed transfer with rc: the result, the callback, free. */
void fetch_curl_finish(struct fetch *f, CURLcode rc, int err);
void fetch_curl_client_close(struct fetch_client *c);
void fetch_handle_closed(struct fetch_client *c);

/* fetch_h1.c: the fetches of the HTTP/1.1 client */
#define FETCH_H1_READ_BUF (64 * 1024)   /* c->rbuf */

union fetch_h1_addr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
};

int fetch_h1_client_init(struct fetch_client *c);
int fetch_h1_start(struct fetch *f);
void fetch_h1_stop(struct fetch *f);      /* lets go of its connection (closed) and name lookup */
void fetch_h1_client_close(struct fetch_client *c);
void fetch_h1_client_free(struct fetch_client *c);   /* memory, once every handle is closed */
/* One request of f (the first, a redirect's, a retry): an idle connection
 * to its origin, or a new one. */
void fetch_h1_hop(struct fetch *f);
/* The final response is in (its connection let go of): follow its
 * Location, or end. */
void fetch_h1_redirect(struct fetch *f);
void fetch_h1_finish(struct fetch *f);    /* unlink, result, callback, free */
/* Ends f with err: at once, or from the timer inside fetch_start. */
void fetch_h1_fail(struct fetch *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fetch_h1_conn.c: its connections */
int fetch_h1_reuse(struct fetch *f);      /* 1: f's request went on an idle connection */
void fetch_h1_connect_next(struct fetch *f);   /* a connection to f's next address */
void fetch_h1_conn_close(struct h1_conn *conn);
void fetch_h1_conns_close(struct fetch_client *c);

#endif
