/*
 * net/fetch client: one curl multi handle on one uv loop.  curl tells us
 * which sockets to watch (socket callback) and when to call it back
 * (timer callback); a uv_poll per socket and one uv_timer drive
 * curl_multi_socket_action; finished transfers are collected from
 * curl_multi_info_read and handed to fetch_finish.
 *
 * Sockets: the struct fetch_sock of a socket is stored in curl with
 * curl_multi_assign, so a socket never gets a second uv_poll.  On
 * CURL_POLL_REMOVE (which curl sends before it closes a socket) the poll
 * is stopped at once, so libuv never watches a closed descriptor, and
 * closed; the struct is freed in the close callback.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "net/fetch_impl.h"

/* Idle connections the multi handle keeps for reuse (curl's default is
 * four per transfer in progress, too few for bursts to one upstream). */
#define FETCH_MAX_IDLE_CONNECTIONS 64L

struct fetch_sock {
  uv_poll_t poll;
  struct fetch_client *c;
  curl_socket_t fd;
  int events;                       /* UV_READABLE | UV_WRITABLE, as curl asked */
  int closed;                       /* uv_close called */
  struct fetch_sock *prev, *next;   /* the client's watched sockets */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void handle_closed(struct fetch_client *c) {
  if (--c->nhandles == 0 && c->closing) {
    if (c->closed) c->closed(c->closed_ud);
    free(c);
  }
}

static void on_sock_closed(uv_handle_t *h) {
  struct fetch_sock *s = h->data;
  struct fetch_client *c = s->c;
  free(s);
  handle_closed(c);
}

static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }

/* Stops watching s now and frees it once libuv lets go of it. */
static void sock_close(struct fetch_sock *s) {
  struct fetch_client *c = s->c;
  if (s->prev) s->prev->next = s->next;
  else c->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  s->closed = 1;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* Hands every finished transfer to its callback.  A callback may cancel
 * other fetches (curl_multi_remove_handle drops their queued messages too)
 * or close the client: then the multi handle is gone and we stop. */
static void drain(struct fetch_client *c) {
  CURLMsg *m;
  int left;
  while (!c->closing && (m = curl_multi_info_read(c->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    char *p = NULL;
    CURLcode rc = m->data.result;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p);
    struct fetch *f = (struct fetch *)p;
    if (f->prev) f->prev->next = f->next;
    else c->head = f->next;
    if (f->next) f->next->prev = f->prev;
    c->active--;
    curl_multi_remove_handle(c->multi, f->easy);
    fetch_finish(f, rc, 0);
  }
}

/* An error on the socket (status < 0: POLLERR, e.g. a reset) is passed
 * as CURL_CSELECT_ERR together with the directions curl watches: with
 * CURL_CSELECT_ERR alone curl fails the transfer at once ("select/poll
 * returned error"), while reading the socket lets it see the reset and,
 * on a reused keep-alive connection the server had dropped, retry on a
 * fresh one.  libuv has stopped the handle then: re-armed if curl still
 * wants the socket. */
static void on_poll(uv_poll_t *h, int status, int events) {
  struct fetch_sock *s = h->data;
  struct fetch_client *c = s->c;
  int flags = 0, running;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
    events = s->events;
  }
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(c->multi, s->fd, flags, &running);
  if (status < 0 && !s->closed && !uv_is_active((uv_handle_t *)h))
    uv_poll_start(h, s->events, on_poll);
  drain(c);
}

static void on_timer(uv_timer_t *t) {
  struct fetch_client *c = t->data;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  drain(c);
}

/* curl: watch s for `what`, or stop (CURL_POLL_REMOVE).  Called from
 * inside curl: only curl_multi_assign may be called back. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp) {
  struct fetch_client *c = ud;
  struct fetch_sock *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(c->multi, fd, NULL);
      sock_close(s);
    }
    return 0;
  }
  if (!s) {
    if (!(s = calloc(1, sizeof *s))) return -1;
    if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
      free(s);   /* never registered with the loop */
      return -1;
    }
    s->poll.data = s;
    s->c = c;
    s->fd = fd;
    s->next = c->socks;
    if (c->socks) c->socks->prev = s;
    c->socks = s;
    c->nhandles++;
    curl_multi_assign(c->multi, fd, s);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  s->events = events;
  if (uv_poll_start(&s->poll, events, on_poll) != 0) return -1;
  return 0;
}

/* curl: call back after ms (0: as soon as the loop turns), or never (-1). */
static int on_timeout(CURLM *m, long ms, void *ud) {
  struct fetch_client *c = ud;
  if (ms < 0) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
  return 0;
}

struct fetch_client *fetch_client_new(uv_loop_t *loop) {
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) return NULL;
  struct fetch_client *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  if (!(c->multi = curl_multi_init())) {
    free(c);
    return NULL;
  }
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, FETCH_MAX_IDLE_CONNECTIONS);
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->nhandles = 1;
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
  int rc = fetch_setup(f, rq);
  if (rc == 0 && curl_multi_add_handle(c->multi, f->easy) != CURLM_OK) rc = FETCH_ENOMEM;
  if (rc != 0) {
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

void fetch_cancel(struct fetch *f) {
  struct fetch_client *c = f->c;
  if (f->prev) f->prev->next = f->next;
  else c->head = f->next;
  if (f->next) f->next->prev = f->prev;
  c->active--;
  curl_multi_remove_handle(c->multi, f->easy);
  fetch_free(f);
}

void fetch_client_close(struct fetch_client *c, fetch_closed_cb done, void *ud) {
  if (c->closing) return;
  c->closing = 1;
  c->closed = done;
  c->closed_ud = ud;
  while (c->head) {   /* a callback may cancel others: take the head each time */
    struct fetch *f = c->head;
    c->head = f->next;
    if (c->head) c->head->prev = NULL;
    c->active--;
    curl_multi_remove_handle(c->multi, f->easy);
    fetch_finish(f, CURLE_OK, FETCH_ECANCELLED);
  }
  /* closes the cached connections; curl reports their sockets removed */
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->socks) sock_close(c->socks);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

size_t fetch_client_active(const struct fetch_client *c) { return c->active; }
