/*
 * net/fetch client: the public entry points.  A fetch_client owns both
 * paths of its loop: the HTTP/1.1 pool (fetch_h1.c) for http URLs and
 * curl's multi handle (fetch_curl.c) for https, and for http too when a
 * proxy is set in the environment.  fetch_start checks and copies the
 * request (fetch.c) and hands it to the path its scheme picks; fetch_cancel
 * and fetch_client_close reach the path each fetch is on.  Loop thread.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/fetch_impl.h"

void fetch_handle_closed(struct fetch_client *c) {
  if (--c->nhandles == 0 && c->closing) {
    fetch_closed_cb done = c->closed;
    void *ud = c->closed_ud;
    fetch_h1_client_free(c);
    fetch_url_memo_free(c);
    free(c);
    if (done) done(ud);
  }
}

/* Proxies are curl's business: one set in the environment (curl reads the
 * same variables) sends plain http through curl too. */
static int proxy_in_env(void) {
  static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return 1;
  }
  return 0;
}

/* Plain http without credentials in the URL (curl sends those as Basic
 * authentication), and no proxy. */
static int use_h1(const struct fetch_client *c, const char *url) {
  return !c->h1_off && strncmp(url, "http://", 7) == 0 && !fetch_url_has_userinfo(url);
}

struct fetch_client *fetch_client_new(uv_loop_t *loop) {
  struct fetch_client *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->h1_off = proxy_in_env();
  if (fetch_curl_client_init(c) != 0) {
    if (c->multi) curl_multi_cleanup(c->multi);
    free(c);
    return NULL;
  }
  fetch_h1_client_init(c);
  return c;
}

int fetch_start(struct fetch_client *c, const struct fetch_request *rq, fetch_done_cb cb,
                void *ud, struct fetch **out) {
  if (out) *out = NULL;
  if (c->closing) return FETCH_ECLOSED;
  if (!rq || !cb) return FETCH_EINVAL;
  struct fetch *f = calloc(1, sizeof *f);
  if (!f) return FETCH_ENOMEM;
  f->c = c;
  f->cb = cb;
  f->ud = ud;
  int rc = fetch_copy_request(f, rq);
  if (rc == 0) rc = use_h1(c, f->url_str) ? fetch_h1_start(f) : fetch_curl_start(f, 0);
  if (rc != 0) {
    if (f->via == FETCH_VIA_H1) fetch_h1_stop(f);
    else if (f->easy) fetch_curl_stop(f);
    fetch_free(f);
    return rc;
  }
  f->next = c->head;
  if (c->head) c->head->prev = f;
  c->head = f;
  c->active++;
  if (out) *out = f;
  return 0;
}

static void stop(struct fetch *f) {
  if (f->via == FETCH_VIA_H1) fetch_h1_stop(f);
  else fetch_curl_stop(f);
}

void fetch_cancel(struct fetch *f) {
  fetch_unlink(f);
  stop(f);
  fetch_free(f);
}

void fetch_client_close(struct fetch_client *c, fetch_closed_cb done, void *ud) {
  if (c->closing) return;
  c->closing = 1;
  c->closed = done;
  c->closed_ud = ud;
  while (c->head) {   /* a callback may cancel others: take the head each time */
    struct fetch *f = c->head;
    fetch_unlink(f);
    stop(f);
    if (f->via == FETCH_VIA_H1) {
      fetch_deliver(f, FETCH_ECANCELLED, f->status, NULL, NULL);
      fetch_free(f);
    } else {
      fetch_curl_finish(f, CURLE_OK, FETCH_ECANCELLED);
    }
  }
  fetch_h1_client_close(c);
  fetch_curl_client_close(c);
}

size_t fetch_client_active(const struct fetch_client *c) { return c->active; }
