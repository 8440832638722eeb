/*
 * net/fetch over plain http: luahost's own keep-alive HTTP/1.1 client on
 * libuv and llhttp.  Per client: a pool of connections keyed by (host,
 * port), up to FETCH_MAX_IDLE_CONNECTIONS idle ones (most recently used
 * first); a small cache of resolved names (60 s); one read buffer all
 * connections share (libuv reads one stream at a time and every byte is
 * parsed or copied in the read callback); one lazy timer for the fetches'
 * deadlines.  Loop thread only.
 *
 * A fetch takes an idle connection to its origin or opens one (IP
 * literals at once, names through uv_getaddrinfo; addresses tried in
 * order), writes its request in one uv_write (head, body) and parses the
 * response with llhttp (1xx skipped, HEAD without a body, a body ending
 * at EOF).  The response's headers and body go to fetch.c's collection.
 * After the final response the connection goes back to the pool when the
 * peer keeps it alive and sent nothing more; otherwise it is closed, as
 * is the connection of a fetch that failed, timed out or was cancelled.
 * An idle connection keeps reading: EOF, an error or any byte closes it.
 * A request on a reused connection that fails before any response byte
 * (the peer closed an idle keep-alive) is sent once more on a new one.
 *
 * Redirects (3xx with Location, when followed) are resolved against the
 * current URL; 301/302 turn POST into GET, 303 anything but HEAD, without
 * the body; to http they go on here, to https the fetch is handed over to
 * curl with what is left of its redirects and time.  Host, Authorization
 * and Cookie given by the caller go to the first origin only.
 *
 * Ownership: a connection belongs to the client (c->conns) and is lent to
 * one fetch at a time (f->conn, conn->f); a name lookup in flight is
 * counted in c->nhandles and outlives its fetch (d->f cleared), so the
 * client is freed only after it calls back.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>

#include <llhttp.h>

#include "net/fetch_impl.h"

#define H1_READ_BUF (64 * 1024)
#define H1_MAX_HEADERS (64 * 1024)   /* bytes of a response's header block */
#define H1_DNS_TTL_MS 60000
#define H1_DNS_ENTRIES 32

union h1_addr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
};

struct h1_conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  struct fetch_client *c;
  struct list_node node;            /* c->conns */
  struct list_node inode;           /* c->idle, while idle */
  struct fetch *f;                  /* the fetch it serves; NULL idle */
  llhttp_t parser;
  char *host;                       /* the pool's key, with port */
  int port;
  char *wbuf;                       /* the request head being written */
  size_t wcap;
  const char *exec_end;             /* end of the bytes being parsed */
  unsigned reused : 1, writing : 1, closing : 1, got_bytes : 1, done : 1, split : 1;
};

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
  union h1_addr addrs[];
};

static void hop(struct fetch *f);
static void connect_next(struct fetch *f);
static void send_request(struct h1_conn *conn);
static void conn_close(struct h1_conn *conn);

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
  if (f->conn) conn_close(f->conn);
}

void fetch_h1_stop(struct fetch *f) { detach(f); }

/* Unlinks f, builds its result (f->err, or the collected response), calls
 * back and frees it. */
static void finish(struct fetch *f) {
  fetch_unlink(f);
  detach(f);
  fetch_deliver(f, 0, f->status, f->url_str, NULL);
  fetch_free(f);
}

static void fail(struct fetch *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends f with err: at once, or from the timer when inside fetch_start
 * (which never calls back). */
static void fail(struct fetch *f, int err, const char *fmt, ...) {
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
  finish(f);
}

static void timed_out(struct fetch *f) {
  fetch_fail(f, FETCH_ETIMEDOUT, "Operation timed out after %ld milliseconds with %zu bytes received",
             f->timeout_ms, f->body_len);
  finish(f);
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
    if (due->failed) finish(due);
    else timed_out(due);
  }
}

/* ---- connections ------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h) {
  struct h1_conn *conn = h->data;
  struct fetch_client *c = conn->c;
  free(conn->host);
  free(conn->wbuf);
  free(conn);
  fetch_handle_closed(c);
}

/* Closes conn now (never reused); its fetch, if any, lets go of it. */
static void conn_close(struct h1_conn *conn) {
  if (conn->closing) return;
  conn->closing = 1;
  list_remove(&conn->node);
  if (list_linked(&conn->inode)) {
    list_remove(&conn->inode);
    conn->c->nidle--;
  }
  if (conn->f) conn->f->conn = NULL;
  conn->f = NULL;
  uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
}

/* Takes conn from its fetch: back to the pool (keep) or closed. */
static void release(struct h1_conn *conn, int keep) {
  struct fetch_client *c = conn->c;
  if (!keep || c->closing || c->nidle >= FETCH_MAX_IDLE_CONNECTIONS) {
    conn_close(conn);
    return;
  }
  conn->f->conn = NULL;
  conn->f = NULL;
  list_push_front(&c->idle, &conn->inode);
  c->nidle++;
}

static struct h1_conn *pool_take(struct fetch_client *c, const char *host, int port) {
  list_each(&c->idle, it, tmp) {
    struct h1_conn *conn = list_entry(it, struct h1_conn, inode);
    if (conn->port == port && strcmp(conn->host, host) == 0) {
      list_remove(&conn->inode);
      c->nidle--;
      return conn;
    }
  }
  return NULL;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct h1_conn *conn = h->data;
  *buf = uv_buf_init(conn->c->rbuf, H1_READ_BUF);
}

/* A reused connection that failed before any response byte: the peer had
 * closed it while idle.  Once per fetch, on a new connection. */
static int retry(struct h1_conn *conn) {
  struct fetch *f = conn->f;
  if (!conn->reused || conn->got_bytes || f->retried) return 0;
  conn_close(conn);
  f->retried = 1;
  f->fresh_only = 1;
  hop(f);
  return 1;
}

static void io_error(struct h1_conn *conn, int status, int writing) {
  struct fetch *f = conn->f;
  if ((status == UV_EOF || status == UV_ECONNRESET || status == UV_EPIPE) && retry(conn)) return;
  if (status == UV_EOF && !conn->got_bytes) {
    fail(f, FETCH_EDOWNLOAD, "Empty reply from server");
  } else if (status == UV_EOF) {
    fail(f, FETCH_EDOWNLOAD, "transfer closed with outstanding read data remaining");
  } else if (status == UV_ECONNRESET) {
    fail(f, FETCH_EDOWNLOAD, "%s failure: Connection reset by peer", writing ? "Send" : "Recv");
  } else {
    fail(f, FETCH_EDOWNLOAD, "%s failure: %s", writing ? "Send" : "Recv", uv_strerror(status));
  }
}

/* The final response is in: the connection goes back to the pool or is
 * closed, then the fetch follows a redirect or ends. */
static void redirect(struct fetch *f);

static void complete(struct h1_conn *conn, int extra) {
  struct fetch *f = conn->f;
  int keep = !extra && !f->truncated && !conn->writing &&
             llhttp_should_keep_alive(&conn->parser) && !(f->hflags & FETCH_HDR_CLOSE);
  release(conn, keep);
  if (f->redirecting) redirect(f);
  else finish(f);
}

static void parse(struct h1_conn *conn, const char *data, size_t n) {
  struct fetch *f = conn->f;
  conn->got_bytes = 1;
  conn->exec_end = data + n;
  llhttp_errno_t e = llhttp_execute(&conn->parser, data, n);
  if (e == HPE_OK) return;
  if (f->err) {
    finish(f);
  } else if (e == HPE_PAUSED && conn->done) {
    complete(conn, llhttp_get_error_pos(&conn->parser) < data + n);
  } else if (e == HPE_USER && f->truncated) {
    complete(conn, 1);   /* the rest of the body is not read */
  } else if (e == HPE_PAUSED_UPGRADE) {
    fail(f, FETCH_EDOWNLOAD, "unexpected protocol switch (status %ld)", f->status);
  } else {
    fail(f, FETCH_EDOWNLOAD, "invalid HTTP response: %s", llhttp_get_error_reason(&conn->parser));
  }
}

/* EOF: a body that runs to the end of the connection is complete. */
static void on_eof(struct h1_conn *conn) {
  struct fetch *f = conn->f;
  if (conn->got_bytes && !conn->done) {
    llhttp_errno_t e = llhttp_finish(&conn->parser);
    if (f->err) {
      finish(f);
      return;
    }
    if (conn->done && (e == HPE_OK || e == HPE_PAUSED)) {
      complete(conn, 1);
      return;
    }
  }
  io_error(conn, UV_EOF, 0);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct h1_conn *conn = s->data;
  if (nread == 0 || conn->closing) return;
  if (!conn->f) {   /* idle: the peer closed, failed, or said what nobody asked */
    conn_close(conn);
    return;
  }
  if (nread == UV_EOF) on_eof(conn);
  else if (nread < 0) io_error(conn, (int)nread, 0);
  else parse(conn, buf->base, (size_t)nread);
}

static void on_write(uv_write_t *req, int status) {
  struct h1_conn *conn = req->data;
  conn->writing = 0;
  if (status == 0 || conn->closing) return;
  if (!conn->f) conn_close(conn);
  else io_error(conn, status, 1);
}

static void on_connect(uv_connect_t *req, int status) {
  struct h1_conn *conn = req->data;
  if (conn->closing) return;
  struct fetch *f = conn->f;
  if (status < 0) {
    f->last_err = status;
    conn_close(conn);
    connect_next(f);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  if ((status = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read)) < 0) {
    fail(f, FETCH_EDOWNLOAD, "Recv failure: %s", uv_strerror(status));
    return;
  }
  send_request(conn);
}

/* Opens a connection to the next address of f; when none is left, the
 * fetch fails with the last connect error. */
static void connect_next(struct fetch *f) {
  struct fetch_client *c = f->c;
  union h1_addr *addrs = f->addrs;
  while (f->ai < f->naddrs) {
    union h1_addr *a = &addrs[f->ai++];
    struct h1_conn *conn = calloc(1, sizeof *conn);
    if (!conn || !(conn->host = strdup(f->host))) {
      free(conn);
      fail(f, FETCH_ENOMEM, "not enough memory for a connection");
      return;
    }
    conn->c = c;
    conn->port = f->port;
    uv_tcp_init(c->loop, &conn->tcp);
    conn->tcp.data = conn->connect.data = conn->write.data = conn;
    list_push_back(&c->conns, &conn->node);
    c->nhandles++;
    conn->f = f;
    f->conn = conn;
    int r = uv_tcp_connect(&conn->connect, &conn->tcp, &a->sa, on_connect);
    if (r == 0) return;
    f->last_err = r;
    conn_close(conn);
  }
  fail(f, FETCH_EDOWNLOAD, "Failed to connect to %s port %d: %s", f->host, f->port,
       uv_strerror(f->last_err ? f->last_err : UV_EADDRNOTAVAIL));
}

/* ---- names ------------------------------------------------------------ */

static int use_addrs(struct fetch *f, const union h1_addr *a, int n) {
  free(f->addrs);
  f->addrs = NULL;
  f->naddrs = f->ai = 0;
  union h1_addr *copy = malloc((size_t)n * sizeof *copy);
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
    if (!h) fail(f, FETCH_EDOWNLOAD, "Could not resolve host: %s", d->host);
    else if (use_addrs(f, h->addrs, h->n) != 0) fail(f, FETCH_ENOMEM, "not enough memory");
    else connect_next(f);
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
static void hop(struct fetch *f) {
  struct fetch_client *c = f->c;
  struct h1_conn *conn = f->fresh_only ? NULL : pool_take(c, f->host, f->port);
  if (conn) {
    conn->f = f;
    f->conn = conn;
    conn->reused = 1;
    send_request(conn);
    return;
  }
  union h1_addr a;
  memset(&a, 0, sizeof a);
  if (uv_ip4_addr(f->host, f->port, &a.in) == 0 || uv_ip6_addr(f->host, f->port, &a.in6) == 0) {
    if (use_addrs(f, &a, 1) != 0) fail(f, FETCH_ENOMEM, "not enough memory");
    else connect_next(f);
    return;
  }
  struct h1_host *h = host_find(c, f->host);
  if (h) {
    if (use_addrs(f, h->addrs, h->n) != 0) fail(f, FETCH_ENOMEM, "not enough memory");
    else connect_next(f);
    return;
  }
  size_t hl = strlen(f->host);
  struct h1_dns *d = malloc(sizeof *d + hl + 1);
  if (!d) {
    fail(f, FETCH_ENOMEM, "not enough memory");
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
    fail(f, FETCH_EDOWNLOAD, "Could not resolve host: %s (%s)", f->host, uv_strerror(r));
    return;
  }
  c->nhandles++;
  f->dns = d;
}

/* ---- the request ------------------------------------------------------ */

static int is_post_like(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static char *put(char *w, const char *s, size_t n) {
  memcpy(w, s, n);
  return w + n;
}

static char *put_num(char *w, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10));
  while (n) *w++ = tmp[--n];
  return w;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

/* The request head in conn->wbuf: request line, Host (the caller's on the
 * first origin), Accept, the caller's headers but their Content-Length or
 * Transfer-Encoding (the body is framed here: Content-Length), "\r\n". */
static long build_head(struct h1_conn *conn, struct fetch *f) {
  int cross = f->port != f->origin_port || strcmp(f->host, f->origin_host) != 0;
  int own_host = cross || !(f->hflags & FETCH_HDR_HOST);
  size_t ml = strlen(f->method), tl = strlen(f->target), hl = strcspn(f->host, "%");
  size_t need = ml + tl + hl + f->hlines_len + 128;
  for (size_t i = 0; i < tl; i++)   /* a redirect's target goes on the wire */
    if ((unsigned char)f->target[i] <= 0x20 || f->target[i] == 0x7f) return FETCH_EDOWNLOAD;
  if (need > conn->wcap) {
    char *nw = realloc(conn->wbuf, need);
    if (!nw) return FETCH_ENOMEM;
    conn->wbuf = nw;
    conn->wcap = need;
  }
  char *w = put(conn->wbuf, f->method, ml);
  *w++ = ' ';
  w = put(w, f->target, tl);
  w = PUT_LIT(w, " HTTP/1.1\r\n");
  if (own_host) {
    int v6 = memchr(f->host, ':', hl) != NULL;
    w = PUT_LIT(w, "Host: ");
    if (v6) *w++ = '[';
    w = put(w, f->host, hl);
    if (v6) *w++ = ']';
    if (f->port != 80) {
      *w++ = ':';
      w = put_num(w, (unsigned)f->port);
    }
    w = PUT_LIT(w, "\r\n");
  }
  if (!(f->hflags & FETCH_HDR_ACCEPT)) w = PUT_LIT(w, "Accept: */*\r\n");
  const char *p = f->rq + f->hlines_off, *end = p + f->hlines_len;
  while (p < end) {
    const char *eol = (const char *)memchr(p, '\n', (size_t)(end - p)) + 1;
    size_t n = (size_t)(eol - p);
    if (!fetch_line_framing(p, n) && !(cross && fetch_line_private(p, n))) w = put(w, p, n);
    p = eol;
  }
  if (f->has_body || is_post_like(f->method)) {
    w = PUT_LIT(w, "Content-Length: ");
    w = put_num(w, f->has_body ? f->rq_body_len : 0);
    w = PUT_LIT(w, "\r\n");
  }
  w = PUT_LIT(w, "\r\n");
  return (long)(w - conn->wbuf);
}

static int on_message_begin(llhttp_t *p);
static int on_status(llhttp_t *p, const char *at, size_t n);
static int on_header_field(llhttp_t *p, const char *at, size_t n);
static int on_header_value(llhttp_t *p, const char *at, size_t n);
static int on_header_value_complete(llhttp_t *p);
static int on_headers_complete(llhttp_t *p);
static int on_body(llhttp_t *p, const char *at, size_t n);
static int on_message_complete(llhttp_t *p);

static const llhttp_settings_t settings = {
  .on_message_begin = on_message_begin,
  .on_status = on_status,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

static void send_request(struct h1_conn *conn) {
  struct fetch *f = conn->f;
  long n = build_head(conn, f);
  if (n < 0) {
    if (n == FETCH_ENOMEM) fail(f, FETCH_ENOMEM, "not enough memory for the request");
    else fail(f, FETCH_EDOWNLOAD, "invalid characters in the URL: %s", f->target);
    return;
  }
  uv_buf_t bufs[2] = {uv_buf_init(conn->wbuf, (unsigned)n),
                      uv_buf_init(f->rq + f->body_off, (unsigned)f->rq_body_len)};
  llhttp_init(&conn->parser, HTTP_RESPONSE, &settings);
  conn->parser.data = conn;
  conn->got_bytes = conn->done = conn->split = 0;
  fetch_response_reset(f, 0);
  unsigned nbufs = f->rq_body_len ? 2 : 1;
  size_t total = (size_t)n + (nbufs == 2 ? f->rq_body_len : 0);
  /* mostly all at once, with no request to call back; the rest queued */
  int r = uv_try_write((uv_stream_t *)&conn->tcp, bufs, nbufs);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) {
    io_error(conn, r, 1);
    return;
  }
  if ((size_t)r == total) return;
  for (unsigned i = 0; i < nbufs; i++) {
    size_t k = (size_t)r < bufs[i].len ? (size_t)r : bufs[i].len;
    bufs[i].base += k;
    bufs[i].len -= k;
    r -= (int)k;
  }
  uv_buf_t *rest = bufs[0].len ? bufs : bufs + 1;
  r = uv_write(&conn->write, (uv_stream_t *)&conn->tcp, rest, bufs[0].len ? nbufs : 1, on_write);
  if (r < 0) io_error(conn, r, 1);
  else conn->writing = 1;
}

/* ---- the response (llhttp callbacks; errors set f->err) ---------------- */

static int too_big(struct fetch *f, size_t n) {
  f->hsize += n;
  if (f->hsize <= H1_MAX_HEADERS) return 0;
  fetch_fail(f, FETCH_EDOWNLOAD, "response headers larger than %d bytes", H1_MAX_HEADERS);
  return 1;
}

static int nomem(struct fetch *f) {
  fetch_fail(f, FETCH_ENOMEM, "not enough memory for the response headers");
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  struct h1_conn *conn = p->data;
  struct fetch *f = conn->f;
  fetch_response_reset(f, 0);
  f->hstate = 0;
  f->hsize = 0;
  f->redirecting = 0;
  return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n) {
  struct h1_conn *conn = p->data;
  return too_big(conn->f, n) ? HPE_USER : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct h1_conn *conn = p->data;
  struct fetch *f = conn->f;
  if (too_big(f, n + (f->hstate != 1 ? 4 : 0))) return HPE_USER;
  if (f->hstate != 1) {
    f->hstart = f->hbuf_len;
    f->hname = 0;
    f->hstate = 1;
  }
  if (fetch_hdr_append(f, at, n, 0) != 0) return nomem(f);
  f->hname += n;
  return 0;
}

/* A value comes in pieces: split by the read (appended as is) or folded
 * over lines (obsolete; joined with one space as curl does). */
static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct h1_conn *conn = p->data;
  struct fetch *f = conn->f;
  if (too_big(f, n)) return HPE_USER;
  int fold = f->hstate == 2 && !conn->split;
  conn->split = at + n == conn->exec_end;
  if (f->hstate == 1) {
    if (fetch_hdr_append(f, "", 0, 1) != 0) return nomem(f);
    f->hstate = 2;
  } else if (fold) {
    while (n && (*at == ' ' || *at == '\t')) at++, n--;
    if (n == 0) return 0;
    if (f->hbuf_len > f->hstart + f->hname + 1 && fetch_hdr_append(f, " ", 1, 0) != 0)
      return nomem(f);
  }
  return fetch_hdr_append(f, at, n, 0) != 0 ? nomem(f) : 0;
}

static int on_header_value_complete(llhttp_t *p) {
  struct h1_conn *conn = p->data;
  struct fetch *f = conn->f;
  if (f->hstate == 1 && fetch_hdr_append(f, "", 0, 1) != 0) return nomem(f);
  if (fetch_hdr_append(f, "", 0, 0) != 0) return nomem(f);   /* room for the NUL */
  fetch_hdr_commit(f, f->hstart, f->hname);
  f->hstate = 0;
  conn->split = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct h1_conn *conn = p->data;
  struct fetch *f = conn->f;
  f->status = llhttp_get_status_code(p);
  if (p->http_major != 1) {
    fetch_fail(f, FETCH_EDOWNLOAD, "unsupported HTTP version %d.%d in the response",
               p->http_major, p->http_minor);
    return -1;
  }
  if (f->status < 200) return 0;   /* 1xx: no body, the answer follows */
  f->redirecting = fetch_is_redirect(f);
  if (!f->redirecting && fetch_headers_end(f)) return -1;
  return f->head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct h1_conn *conn = p->data;
  struct fetch *f = conn->f;
  if (f->redirecting) return 0;   /* a followed redirect's body is dropped */
  return fetch_body_add(f, at, n) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p) {
  struct h1_conn *conn = p->data;
  if (conn->f->status < 200) return 0;   /* 1xx: go on parsing */
  conn->done = 1;
  return HPE_PAUSED;
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

static void redirect(struct fetch *f) {
  const char *loc = header_value(f, "location");
  char *us = NULL;
  if (f->redirects >= f->max_redirects) {
    fail(f, FETCH_EDOWNLOAD, "Maximum (%d) redirects followed", f->max_redirects);
    return;
  }
  CURLU *nu = fetch_url_handle(f) == 0 ? curl_url_dup(f->url) : NULL;
  if (!nu) {
    fail(f, FETCH_ENOMEM, "not enough memory");
    return;
  }
  if (curl_url_set(nu, CURLUPART_URL, loc, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
      curl_url_get(nu, CURLUPART_URL, &us, 0) != CURLUE_OK) {
    curl_url_cleanup(nu);
    fail(f, FETCH_EDOWNLOAD, "invalid redirect location: %.200s", loc);
    return;
  }
  int https = strncmp(us, "https://", 8) == 0;
  if (!https && strncmp(us, "http://", 7) != 0) {
    fail(f, FETCH_EDOWNLOAD, "Protocol \"%.*s\" not supported or disabled (redirect)",
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
    fail(f, FETCH_ENOMEM, "not enough memory");
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
  if (https) {   /* the rest is curl's: TLS */
    if (f->deadline) {
      uint64_t now = now_ms();
      f->timeout_ms = f->deadline > now ? (long)(f->deadline - now) : 1;
    }
    fetch_response_reset(f, 0);
    int cross = 1;   /* another scheme: another origin */
    int rc = fetch_curl_start(f, cross);
    if (rc != 0) {
      f->via = FETCH_VIA_H1;
      fail(f, rc, "not enough memory for the redirect");
    }
    return;
  }
  if (target(f) != 0) {
    fail(f, FETCH_ENOMEM, "not enough memory");
    return;
  }
  f->head = strcmp(f->method, "HEAD") == 0;
  hop(f);
}

/* ---- the client ------------------------------------------------------- */

int fetch_h1_start(struct fetch *f) {
  f->via = FETCH_VIA_H1;
  if (target(f) != 0 || !(f->origin_host = strdup(f->host))) return FETCH_ENOMEM;
  if (!f->c->rbuf && !(f->c->rbuf = malloc(H1_READ_BUF))) return FETCH_ENOMEM;
  f->origin_port = f->port;
  f->head = strcmp(f->method, "HEAD") == 0;
  if (f->timeout_ms) {
    f->deadline = now_ms() + (uint64_t)f->timeout_ms;
    arm(f->c, f->deadline);
  }
  f->starting = 1;
  hop(f);
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
  list_each(&c->conns, it, tmp) conn_close(list_entry(it, struct h1_conn, node));
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
