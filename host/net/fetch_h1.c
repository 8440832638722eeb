/*
 * net/fetch over plain http: luahost's own keep-alive HTTP/1.1 client on
 * libuv and llhttp.  This file has the fetches: where a request goes (the
 * URL as curl wrote it back, cut into host, port and target), how its
 * origin is reached (an idle connection, an IP literal, a name resolved
 * by uv_getaddrinfo and kept 60 s per client; a name's addresses tried in
 * order), redirects, deadlines and how a fetch ends.  fetch_h1_conn.c has
 * the connections and the wire.  Loop thread only.
 *
 * Deadlines: one lazy timer per client fires at the earliest deadline of
 * its h1 fetches (whole fetch, redirects included) and re-arms for the
 * next; a failure found inside fetch_start (which never calls back) is
 * delivered by it too, at once.
 *
 * Redirects (3xx with Location, when followed) are resolved against the
 * current URL with curl_url; 301/302 turn POST into GET, 303 anything but
 * HEAD, without the body; to http they go on here (the kept connection
 * reused when the origin is the same), to https (or to a URL with
 * credentials) the fetch is handed over to curl with what is left of its
 * redirects and time.  Host,
 * Authorization and Cookie given by the caller go to the first origin
 * only.
 *
 * Ownership: the fetch owns its copy of the URL parts and its address
 * list; its connection is lent (f->conn) and closed when the fetch fails,
 * times out or is cancelled.  A name lookup in flight is counted in
 * c->nhandles and outlives its fetch (d->f cleared), so the client is
 * freed only after it calls back.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/fetch_impl.h"

#define H1_DNS_TTL_MS 60000
#define H1_DNS_ENTRIES 32

struct h1_dns {
  uv_getaddrinfo_t req;
  struct fetch_client *c;
  struct fetch *f;                  /* NULL once the fetch has gone */
  char host[];
};

struct h1_host {
  struct h1_host *next;
  uint64_t expires;
  char *name;
  int n;
  union fetch_h1_addr addrs[];
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

/* ---- the deadline timer ----------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* Makes the timer fire by `due` (loop-independent ms); it is lazy: when it
 * fires it ends what is due and re-arms for the earliest deadline left. */
static void arm(struct fetch_client *c, uint64_t due) {
  if (c->closing || (c->h1_due && c->h1_due <= due)) return;
  uint64_t now = now_ms();
  c->h1_due = due;
  uv_timer_start(&c->h1_timer, on_timer, due > now ? due - now : 0, 0);
}

/* ---- ending a fetch --------------------------------------------------- */

static void detach(struct fetch *f) {
  if (f->dns) {
    f->dns->f = NULL;
    uv_cancel((uv_req_t *)&f->dns->req);   /* if it has not started */
    f->dns = NULL;
  }
  if (f->conn) fetch_h1_conn_close(f->conn);
}

void fetch_h1_stop(struct fetch *f) { detach(f); }

/* Unlinks f, builds its result (f->err, or the collected response), calls
 * back and frees it. */
void fetch_h1_finish(struct fetch *f) {
  fetch_unlink(f);
  detach(f);
  fetch_deliver(f, 0, f->status, f->url_str, NULL);
  fetch_free(f);
}

/* Ends f with err: at once, or from the timer when inside fetch_start
 * (which never calls back). */
void fetch_h1_fail(struct fetch *f, int err, const char *fmt, ...) {
  char msg[sizeof f->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fetch_fail(f, err, "%s", msg);
  if (f->starting) {
    detach(f);
    f->failed = 1;
    arm(f->c, 1);
    return;
  }
  fetch_h1_finish(f);
}

static void timed_out(struct fetch *f) {
  fetch_fail(f, FETCH_ETIMEDOUT, "Operation timed out after %ld milliseconds with %zu bytes received",
             f->timeout_ms, f->body_len);
  fetch_h1_finish(f);
}

/* Ends the first fetch that is due, one at a time (a callback may cancel
 * others or close the client), then re-arms for the earliest left. */
static void on_timer(uv_timer_t *t) {
  struct fetch_client *c = t->data;
  c->h1_due = 0;
  while (!c->closing) {
    uint64_t now = now_ms(), next = 0;
    struct fetch *due = NULL;
    for (struct fetch *f = c->head; f; f = f->next) {
      if (f->via != FETCH_VIA_H1) continue;
      if (f->failed || (f->deadline && f->deadline <= now)) {
        due = f;
        break;
      }
      if (f->deadline && (!next || f->deadline < next)) next = f->deadline;
    }
    if (!due) {
      if (next) arm(c, next);
      return;
    }
    if (due->failed) fetch_h1_finish(due);
    else timed_out(due);
  }
}

/* ---- names ------------------------------------------------------------ */

static int use_addrs(struct fetch *f, const union fetch_h1_addr *a, int n) {
  free(f->addrs);
  f->addrs = NULL;
  f->naddrs = f->ai = 0;
  union fetch_h1_addr *copy = malloc((size_t)n * sizeof *copy);
  if (!copy) return FETCH_ENOMEM;
  memcpy(copy, a, (size_t)n * sizeof *copy);
  for (int i = 0; i < n; i++) {
    if (copy[i].sa.sa_family == AF_INET) copy[i].in.sin_port = htons((uint16_t)f->port);
    else copy[i].in6.sin6_port = htons((uint16_t)f->port);
  }
  f->addrs = copy;
  f->naddrs = n;
  return 0;
}

static struct h1_host *host_find(struct fetch_client *c, const char *name) {
  uint64_t now = now_ms();
  for (struct h1_host **p = &c->hosts, *h; (h = *p);) {
    if (h->expires <= now) {   /* stale: dropped on the way */
      *p = h->next;
      free(h->name);
      free(h);
      continue;
    }
    if (strcmp(h->name, name) == 0) return h;
    p = &h->next;
  }
  return NULL;
}

/* Keeps the TCP addresses of res for H1_DNS_TTL_MS (newest first; the
 * oldest dropped past H1_DNS_ENTRIES). */
static struct h1_host *host_add(struct fetch_client *c, const char *name,
                                const struct addrinfo *res) {
  int n = 0, k = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) n++;
  if (n == 0) return NULL;
  struct h1_host *h = malloc(sizeof *h + (size_t)n * sizeof h->addrs[0]);
  if (!h || !(h->name = strdup(name))) {
    free(h);
    return NULL;
  }
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    memset(&h->addrs[k], 0, sizeof h->addrs[k]);
    memcpy(&h->addrs[k++], ai->ai_addr, ai->ai_addrlen);
  }
  h->n = n;
  h->expires = now_ms() + H1_DNS_TTL_MS;
  h->next = c->hosts;
  c->hosts = h;
  int count = 0;
  for (struct h1_host **p = &c->hosts; *p; p = &(*p)->next) {
    if (++count > H1_DNS_ENTRIES) {
      struct h1_host *old = *p;
      *p = NULL;
      free(old->name);
      free(old);
      break;
    }
  }
  return h;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct h1_dns *d = req->data;
  struct fetch_client *c = d->c;
  struct fetch *f = d->f;
  if (f) {
    f->dns = NULL;
    struct h1_host *h = status == 0 ? host_add(c, d->host, res) : NULL;
    if (!h) fetch_h1_fail(f, FETCH_EDOWNLOAD, "Could not resolve host: %s", d->host);
    else if (use_addrs(f, h->addrs, h->n) != 0) fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    else fetch_h1_connect_next(f);
  }
  uv_freeaddrinfo(res);
  free(d);
  fetch_handle_closed(c);
}

/* Where f's current URL points: host (for connecting: no brackets, a
 * zone as "%eth0"), port, target ("/path?query").  From f->url_str, as
 * curl wrote it: "http://host[:port]/path[?query][#fragment]". */
static int target(struct fetch *f) {
  const char *a = f->url_str + 7, *end = a + strcspn(a, "/?#"), *h = a, *he, *p;
  free(f->host);
  free(f->target);
  f->host = f->target = NULL;
  if (*h == '[') {
    h++;
    he = memchr(h, ']', (size_t)(end - h));
    if (!he) he = end;
    p = he + 1;
  } else {
    he = memchr(h, ':', (size_t)(end - h));
    if (!he) he = end;
    p = he;
  }
  f->port = p < end && *p == ':' ? atoi(p + 1) : 80;
  size_t hl = (size_t)(he - h), tl = strcspn(end, "#");
  if (!(f->host = malloc(hl + 1)) || !(f->target = malloc(tl + 2))) return FETCH_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < hl; i++) {   /* "%25" of a zone id */
    f->host[k++] = h[i];
    if (h[i] == '%' && i + 2 < hl && h[i + 1] == '2' && h[i + 2] == '5') i += 2;
  }
  f->host[k] = '\0';
  size_t n = 0;
  if (*end != '/') f->target[n++] = '/';
  memcpy(f->target + n, end, tl);
  f->target[n + tl] = '\0';
  return 0;
}

/* One request of f (the first, a redirect's, a retry): an idle connection
 * to its origin, or a new one. */
void fetch_h1_hop(struct fetch *f) {
  struct fetch_client *c = f->c;
  if (!f->fresh_only && fetch_h1_reuse(f)) return;
  union fetch_h1_addr a;
  memset(&a, 0, sizeof a);
  if (uv_ip4_addr(f->host, f->port, &a.in) == 0 || uv_ip6_addr(f->host, f->port, &a.in6) == 0) {
    if (use_addrs(f, &a, 1) != 0) fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    else fetch_h1_connect_next(f);
    return;
  }
  struct h1_host *h = host_find(c, f->host);
  if (h) {
    if (use_addrs(f, h->addrs, h->n) != 0) fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    else fetch_h1_connect_next(f);
    return;
  }
  size_t hl = strlen(f->host);
  struct h1_dns *d = malloc(sizeof *d + hl + 1);
  if (!d) {
    fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    return;
  }
  memcpy(d->host, f->host, hl + 1);
  d->c = c;
  d->f = f;
  d->req.data = d;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_ADDRCONFIG};
  int r = uv_getaddrinfo(c->loop, &d->req, on_resolved, d->host, NULL, &hints);
  if (r != 0) {
    free(d);
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "Could not resolve host: %s (%s)", f->host, uv_strerror(r));
    return;
  }
  c->nhandles++;
  f->dns = d;
}

/* ---- redirects -------------------------------------------------------- */

static const char *header_value(struct fetch *f, const char *name) {
  const char *p = f->hbuf;
  for (size_t i = 0; i < f->nh; i++) {
    const char *v = p + strlen(p) + 1;
    if (strcmp(p, name) == 0) return v;
    p = v + strlen(v) + 1;
  }
  return NULL;
}

void fetch_h1_redirect(struct fetch *f) {
  const char *loc = header_value(f, "location");
  char *us = NULL;
  if (f->redirects >= f->max_redirects) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "Maximum (%d) redirects followed", f->max_redirects);
    return;
  }
  CURLU *nu = fetch_url_handle(f) == 0 ? curl_url_dup(f->url) : NULL;
  if (!nu) {
    fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    return;
  }
  if (curl_url_set(nu, CURLUPART_URL, loc, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
      curl_url_get(nu, CURLUPART_URL, &us, 0) != CURLUE_OK) {
    curl_url_cleanup(nu);
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "invalid redirect location: %.200s", loc);
    return;
  }
  int https = strncmp(us, "https://", 8) == 0;
  if (!https && strncmp(us, "http://", 7) != 0) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "Protocol \"%.*s\" not supported or disabled (redirect)",
         (int)strcspn(us, ":"), us);
    curl_free(us);
    curl_url_cleanup(nu);
    return;
  }
  free(f->url_str);
  f->url_str = strdup(us);
  curl_free(us);
  if (!f->url_str) {
    curl_url_cleanup(nu);
    fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    return;
  }
  curl_url_cleanup(f->url);
  f->url = nu;
  f->redirects++;
  long st = f->status;
  if (((st == 301 || st == 302) && strcmp(f->method, "POST") == 0) ||
      (st == 303 && strcmp(f->method, "HEAD") != 0)) {
    f->method = "GET";
    f->has_body = 0;
    f->rq_body_len = 0;
  }
  f->fresh_only = 0;
  if (https || fetch_url_has_userinfo(f->url_str)) {   /* the rest is curl's: TLS, Basic auth */
    if (f->deadline) {
      uint64_t now = now_ms();
      f->timeout_ms = f->deadline > now ? (long)(f->deadline - now) : 1;
    }
    fetch_response_reset(f, 0);
    int cross = 1;   /* another scheme: another origin */
    int rc = fetch_curl_start(f, cross);
    if (rc != 0) {
      f->via = FETCH_VIA_H1;
      fetch_h1_fail(f, rc, "not enough memory for the redirect");
    }
    return;
  }
  if (target(f) != 0) {
    fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory");
    return;
  }
  f->head = strcmp(f->method, "HEAD") == 0;
  fetch_h1_hop(f);
}

/* ---- the client ------------------------------------------------------- */

int fetch_h1_start(struct fetch *f) {
  f->via = FETCH_VIA_H1;
  if (target(f) != 0 || !(f->origin_host = strdup(f->host))) return FETCH_ENOMEM;
  if (!f->c->rbuf && !(f->c->rbuf = malloc(FETCH_H1_READ_BUF))) return FETCH_ENOMEM;
  f->origin_port = f->port;
  f->head = strcmp(f->method, "HEAD") == 0;
  if (f->timeout_ms) {
    f->deadline = now_ms() + (uint64_t)f->timeout_ms;
    arm(f->c, f->deadline);
  }
  f->starting = 1;
  fetch_h1_hop(f);
  f->starting = 0;
  return 0;
}

static void on_timer_closed(uv_handle_t *h) { fetch_handle_closed(h->data); }

int fetch_h1_client_init(struct fetch_client *c) {
  list_init(&c->conns);
  list_init(&c->idle);
  uv_timer_init(c->loop, &c->h1_timer);
  c->h1_timer.data = c;
  c->nhandles++;
  return 0;
}

/* After the fetches: every connection and the timer; a name lookup still
 * running calls back into nothing.  The memory goes in fetch_h1_client_free. */
void fetch_h1_client_close(struct fetch_client *c) {
  fetch_h1_conns_close(c);
  uv_timer_stop(&c->h1_timer);
  uv_close((uv_handle_t *)&c->h1_timer, on_timer_closed);
}

void fetch_h1_client_free(struct fetch_client *c) {
  while (c->hosts) {
    struct h1_host *h = c->hosts;
    c->hosts = h->next;
    free(h->name);
    free(h);
  }
  free(c->rbuf);
}
