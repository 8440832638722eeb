/*
 * net/fetch internals shared by fetch.c (one transfer: checks, curl easy
 * setup, response collection, result) and fetch_client.c (the client: the
 * multi handle driven by uv_poll and uv_timer, completion, close).  Not for
 * other modules.  Everything here belongs to the client's loop thread.
 */
#ifndef LUAHOST_NET_FETCH_IMPL_H
#define LUAHOST_NET_FETCH_IMPL_H

#include <curl/curl.h>

#include "net/fetch.h"

struct fetch_sock;

struct fetch_client {
  uv_loop_t *loop;
  CURLM *multi;                 /* NULL once closed */
  uv_timer_t timer;             /* curl's timeout */
  struct fetch *head;           /* started, callback not yet run */
  size_t active;
  struct fetch_sock *socks;     /* watched sockets (closing ones are not listed) */
  size_t nhandles;              /* uv handles not yet closed: timer + sockets */
  int closing;
  fetch_closed_cb closed;
  void *closed_ud;
};

struct fetch {
  struct fetch_client *c;
  struct fetch *prev, *next;    /* the client's list */
  CURL *easy;
  CURLU *url;
  struct curl_slist *hdrs;
  fetch_done_cb cb;
  void *ud;
  fetch_alloc_fn alloc;
  void *alloc_ud;
  size_t max;
  int allow_truncated, follow;
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
  char errbuf[CURL_ERROR_SIZE]; /* curl's words */
  char msg[CURL_ERROR_SIZE];    /* ours */
};

/* fetch.c */
int fetch_setup(struct fetch *f, const struct fetch_request *rq);
/* Builds the result of a transfer that ended with rc (removed from the
 * multi handle), calls the callback, frees f. */
void fetch_finish(struct fetch *f, CURLcode rc, int err);
void fetch_free(struct fetch *f);

#endif
