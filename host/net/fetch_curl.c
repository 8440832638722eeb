/*
 * net/fetch over curl: https (TLS, HTTP/2), and plain http when a proxy is
 * set in the environment.  One curl multi handle per client: curl tells us
 * which sockets to watch (socket callback) and when to call it back
 * (timer callback); a uv_poll per socket and one uv_timer drive
 * curl_multi_socket_action; finished transfers are collected from
 * curl_multi_info_read and handed to fetch_curl_finish.  A transfer's easy
 * handle is set up from the fetch's copy of the request (fetch.c), and its
 * header and body callbacks feed fetch.c's collection.  Loop thread.
 *
 * Sockets: the struct fetch_sock of a socket is stored in curl with
 * curl_multi_assign, so a socket never gets a second uv_poll.  On
 * CURL_POLL_REMOVE (which curl sends before it closes a socket) the poll
 * is stopped at once, so libuv never watches a closed descriptor, and
 * closed; the struct is freed in the close callback.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/fetch_impl.h"

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

static void on_sock_closed(uv_handle_t *h) {
  struct fetch_sock *s = h->data;
  struct fetch_client *c = s->c;
  free(s);
  fetch_handle_closed(c);
}

static void on_timer_closed(uv_handle_t *h) { fetch_handle_closed(h->data); }

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
    fetch_unlink(f);
    curl_multi_remove_handle(c->multi, f->easy);
    fetch_curl_finish(f, rc, 0);
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

/* The method and the body: GET and HEAD as curl knows them, POST so that a
 * 301/302/303 turns it into a GET, anything else (or a GET with a body)
 * as a custom request.  The body stays in the fetch's copy. */
static int set_method(CURL *e, const char *m, const char *body, size_t len) {
  int ok = 1;
  if (!body && strcmp(m, "GET") == 0) return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
  if (!body && strcmp(m, "HEAD") == 0) return curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
  if (strcmp(m, "POST") == 0) {
    ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
    if (!body) body = "";
  } else {
    ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m) == CURLE_OK;
  }
  if (body) {
    ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDS, body) == CURLE_OK;
  }
  return ok;
}

/* One header line of some response (redirects and 1xx included): a status
 * line starts the collection over, so what is left at the end belongs to
 * the final response.  Returning short stops the transfer. */
static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
  struct fetch *f = ud;
  size_t len = size * n, l = len;
  while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r')) l--;
  if (l >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    const char *sp = memchr(buf, ' ', l);
    long status = 0;
    for (const char *p = sp ? sp + 1 : buf + l; p < buf + l && isdigit((unsigned char)*p); p++)
      status = status * 10 + (*p - '0');
    fetch_response_reset(f, status);
    return len;
  }
  if (memchr(buf, '\0', l)) return len;   /* a NUL has no place in a header: dropped */
  if (l == 0) return fetch_headers_end(f) ? 0 : len;
  if (buf[0] == ' ' || buf[0] == '\t') {   /* obsolete line folding */
    const char *v = buf;
    size_t vl = l;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    if (f->nh == 0 || vl == 0) return len;
    f->hbuf_len--;                          /* reopen the last value */
    int empty = f->hbuf[f->hbuf_len - 1] == '\0';
    if ((!empty && fetch_hdr_append(f, " ", 1, 0) != 0) || fetch_hdr_append(f, v, vl, 1) != 0)
      goto nomem;
    return len;
  }
  const char *colon = memchr(buf, ':', l);
  if (!colon || colon == buf) return len;   /* not a header: ignored */
  const char *name = buf;
  size_t nl = (size_t)(colon - buf), at = f->hbuf_len;
  while (nl && (name[nl - 1] == ' ' || name[nl - 1] == '\t')) nl--;
  while (nl && (*name == ' ' || *name == '\t')) name++, nl--;
  if (fetch_hdr_append(f, name, nl, 1) != 0 ||
      fetch_hdr_append(f, colon + 1, l - (size_t)(colon + 1 - buf), 0) != 0)
    goto nomem;
  fetch_hdr_commit(f, at, nl);
  return len;
nomem:
  fetch_fail(f, FETCH_ENOMEM, "not enough memory for the response headers");
  return 0;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud) {
  return fetch_body_add(ud, buf, size * n) ? 0 : size * n;
}

int fetch_curl_start(struct fetch *f, int skip_private) {
  int rc;
  f->via = FETCH_VIA_CURL;
  if ((rc = fetch_url_handle(f)) != 0) return rc;
  if ((rc = fetch_curl_headers(f, skip_private, &f->hdrs)) != 0) return rc;
  if (!(f->easy = curl_easy_init())) return FETCH_ENOMEM;
  CURL *e = f->easy;
  int ok = 1;
  long left = f->max_redirects - f->redirects;
  ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, f) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_CURLU, f->url) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, (long)f->follow) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_MAXREDIRS, left > 0 ? left : 0L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, f->timeout_ms) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, f->validate ? 1L : 0L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, f->validate ? 2L : 0L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdrs) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, f) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, f) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf) == CURLE_OK;
  ok &= set_method(e, f->method, f->has_body ? f->rq + f->body_off : NULL, f->rq_body_len);
  /* a libcurl without HTTP/2 refuses these: HTTP/1.1 then.  PIPEWAIT:
   * a fetch to an https origin with a connection still being set up waits
   * to learn whether it speaks HTTP/2 and can carry this one too */
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  if (strncmp(f->url_str, "https://", 8) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  if (!ok) return FETCH_ENOMEM;
  if (curl_multi_add_handle(f->c->multi, e) != CURLM_OK) return FETCH_ENOMEM;
  return 0;
}

void fetch_curl_stop(struct fetch *f) {
  if (f->c->multi) curl_multi_remove_handle(f->c->multi, f->easy);
}

static int map_curl(CURLcode rc) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT: return FETCH_ETIMEDOUT;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_ISSUER_ERROR: return FETCH_ESSLCERT;
  case CURLE_OUT_OF_MEMORY: return FETCH_ENOMEM;
  case CURLE_FILESIZE_EXCEEDED: return FETCH_ETOOLARGE;
  default: return FETCH_EDOWNLOAD;
  }
}

void fetch_curl_finish(struct fetch *f, CURLcode rc, int err) {
  long status = 0;
  char *final_url = NULL;
  if (!err && !f->err && rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && f->truncated))
    err = map_curl(rc);
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(f->easy, CURLINFO_EFFECTIVE_URL, &final_url);
  fetch_deliver(f, err, status, final_url,
                f->errbuf[0] ? f->errbuf : rc != CURLE_OK ? curl_easy_strerror(rc) : NULL);
  fetch_free(f);
}

int fetch_curl_client_init(struct fetch_client *c) {
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) return FETCH_ENOMEM;
  if (!(c->multi = curl_multi_init())) return FETCH_ENOMEM;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)FETCH_MAX_IDLE_CONNECTIONS);
  uv_timer_init(c->loop, &c->timer);
  c->timer.data = c;
  c->nhandles++;
  return 0;
}

/* After the fetches: closes the cached connections (curl reports their
 * sockets removed), the polls and the timer. */
void fetch_curl_client_close(struct fetch_client *c) {
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->socks) sock_close(c->socks);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
