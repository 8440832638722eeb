/*
 * net/fetch over plain http, the wire: the connections of the HTTP/1.1
 * client (fetch_h1.c has the fetches).  A connection is opened to one
 * address (fetch_h1_connect_next tries the fetch's addresses in turn),
 * lent to one fetch at a time, writes the request (head built here, body
 * from the fetch's copy) with one uv_try_write, or uv_write for what the
 * socket did not take, and parses the response with llhttp into fetch.c's
 * collection.  Reads go to the client's one buffer: every byte is parsed
 * or copied in the read callback.  Loop thread only.
 *
 * After the final response the connection goes back to the pool
 * (c->idle, most recently used first, at most FETCH_MAX_IDLE_CONNECTIONS)
 * when the peer keeps it alive, sent nothing more and our write is done;
 * otherwise it is closed.  An idle connection keeps reading: EOF, an error
 * or any byte closes it; one idle for H1_MAX_IDLE_MS is not used again.  A request on a reused connection that fails
 * before any response byte (EOF, reset, EPIPE: the peer had closed it) is
 * sent once more on a new connection.  A response header block over
 * H1_MAX_HEADERS bytes is refused; 1xx responses are skipped; a HEAD
 * response has no body; a body without length runs to EOF.
 *
 * Ownership: the client owns its connections (c->conns); conn->f and
 * f->conn link a connection and the fetch it serves, both cleared by
 * fetch_h1_conn_close, which closes it for good (freed in the close
 * callback, counted in c->nhandles).
 */
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "net/fetch_impl.h"

#define H1_MAX_HEADERS (64 * 1024)   /* bytes of a response's header block */
/* An idle connection older than this is not used again (curl's default
 * CURLOPT_MAXAGE_CONN): a peer or middlebox may have dropped it silently. */
#define H1_MAX_IDLE_MS 118000

struct h1_conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;                 /* what uv_try_write left, if anything */
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
  uint64_t idle_since;              /* uv_now when it went idle */
  unsigned reused : 1, writing : 1, closing : 1, got_bytes : 1, done : 1, split : 1;
};

static void send_request(struct h1_conn *conn);

static void on_conn_closed(uv_handle_t *h) {
  struct h1_conn *conn = h->data;
  struct fetch_client *c = conn->c;
  free(conn->host);
  free(conn->wbuf);
  free(conn);
  fetch_handle_closed(c);
}

/* Closes conn now (never reused); its fetch, if any, lets go of it. */
void fetch_h1_conn_close(struct h1_conn *conn) {
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
    fetch_h1_conn_close(conn);
    return;
  }
  conn->f->conn = NULL;
  conn->f = NULL;
  conn->idle_since = uv_now(c->loop);
  list_push_front(&c->idle, &conn->inode);
  c->nidle++;
}

/* An idle connection to f's origin, most recently used first: f's
 * request goes on it.  0 when there is none.  Stale ones are closed on
 * the way. */
int fetch_h1_reuse(struct fetch *f) {
  struct fetch_client *c = f->c;
  uint64_t now = uv_now(c->loop);
  list_each(&c->idle, it, tmp) {
    struct h1_conn *conn = list_entry(it, struct h1_conn, inode);
    if (now - conn->idle_since > H1_MAX_IDLE_MS) {
      fetch_h1_conn_close(conn);   /* the list is newest first: the rest are older */
      continue;
    }
    if (conn->port == f->port && strcmp(conn->host, f->host) == 0) {
      list_remove(&conn->inode);
      c->nidle--;
      conn->f = f;
      f->conn = conn;
      conn->reused = 1;
      send_request(conn);
      return 1;
    }
  }
  return 0;
}

void fetch_h1_conns_close(struct fetch_client *c) {
  list_each(&c->conns, it, tmp) fetch_h1_conn_close(list_entry(it, struct h1_conn, node));
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct h1_conn *conn = h->data;
  *buf = uv_buf_init(conn->c->rbuf, FETCH_H1_READ_BUF);
}

/* A reused connection that failed before any response byte: the peer had
 * closed it while idle.  Once per fetch, on a new connection. */
static int retry(struct h1_conn *conn) {
  struct fetch *f = conn->f;
  if (!conn->reused || conn->got_bytes || f->retried) return 0;
  fetch_h1_conn_close(conn);
  f->retried = 1;
  f->fresh_only = 1;
  fetch_h1_hop(f);
  return 1;
}

static void io_error(struct h1_conn *conn, int status, int writing) {
  struct fetch *f = conn->f;
  if ((status == UV_EOF || status == UV_ECONNRESET || status == UV_EPIPE) && retry(conn)) return;
  if (status == UV_EOF && !conn->got_bytes) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "Empty reply from server");
  } else if (status == UV_EOF) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "transfer closed with outstanding read data remaining");
  } else if (status == UV_ECONNRESET) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "%s failure: Connection reset by peer", writing ? "Send" : "Recv");
  } else {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "%s failure: %s", writing ? "Send" : "Recv", uv_strerror(status));
  }
}

/* The final response is in: the connection goes back to the pool or is
 * closed, then the fetch follows a redirect or ends. */
static void complete(struct h1_conn *conn, int extra) {
  struct fetch *f = conn->f;
  int keep = !extra && !f->truncated && !conn->writing &&
             llhttp_should_keep_alive(&conn->parser) && !(f->hflags & FETCH_HDR_CLOSE);
  release(conn, keep);
  if (f->redirecting) fetch_h1_redirect(f);
  else fetch_h1_finish(f);
}

static void parse(struct h1_conn *conn, const char *data, size_t n) {
  struct fetch *f = conn->f;
  conn->got_bytes = 1;
  conn->exec_end = data + n;
  llhttp_errno_t e = llhttp_execute(&conn->parser, data, n);
  if (e == HPE_OK) return;
  if (f->err) {
    fetch_h1_finish(f);
  } else if (e == HPE_PAUSED && conn->done) {
    complete(conn, llhttp_get_error_pos(&conn->parser) < data + n);
  } else if (e == HPE_USER && f->truncated) {
    complete(conn, 1);   /* the rest of the body is not read */
  } else if (e == HPE_PAUSED_UPGRADE) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "unexpected protocol switch (status %ld)", f->status);
  } else {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "invalid HTTP response: %s", llhttp_get_error_reason(&conn->parser));
  }
}

/* EOF: a body that runs to the end of the connection is complete. */
static void on_eof(struct h1_conn *conn) {
  struct fetch *f = conn->f;
  if (conn->got_bytes && !conn->done) {
    llhttp_errno_t e = llhttp_finish(&conn->parser);
    if (f->err) {
      fetch_h1_finish(f);
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
    fetch_h1_conn_close(conn);
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
  if (!conn->f) fetch_h1_conn_close(conn);
  else io_error(conn, status, 1);
}

static void on_connect(uv_connect_t *req, int status) {
  struct h1_conn *conn = req->data;
  if (conn->closing) return;
  struct fetch *f = conn->f;
  if (status < 0) {
    f->last_err = status;
    fetch_h1_conn_close(conn);
    fetch_h1_connect_next(f);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  if ((status = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read)) < 0) {
    fetch_h1_fail(f, FETCH_EDOWNLOAD, "Recv failure: %s", uv_strerror(status));
    return;
  }
  send_request(conn);
}

/* Opens a connection to the next address of f; when none is left, the
 * fetch fails with the last connect error. */
void fetch_h1_connect_next(struct fetch *f) {
  struct fetch_client *c = f->c;
  union fetch_h1_addr *addrs = f->addrs;
  while (f->ai < f->naddrs) {
    union fetch_h1_addr *a = &addrs[f->ai++];
    struct h1_conn *conn = calloc(1, sizeof *conn);
    if (!conn || !(conn->host = strdup(f->host))) {
      free(conn);
      fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory for a connection");
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
    fetch_h1_conn_close(conn);
  }
  fetch_h1_fail(f, FETCH_EDOWNLOAD, "Failed to connect to %s port %d: %s", f->host, f->port,
       uv_strerror(f->last_err ? f->last_err : UV_EADDRNOTAVAIL));
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
    if (n == FETCH_ENOMEM) fetch_h1_fail(f, FETCH_ENOMEM, "not enough memory for the request");
    else fetch_h1_fail(f, FETCH_EDOWNLOAD, "invalid characters in the URL: %s", f->target);
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
  if (f->hstate == 0) {   /* a value without a name: recorded, then dropped */
    f->hstart = f->hbuf_len;
    f->hname = 0;
    f->hstate = 1;
  }
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
  int open = f->hstate != 0;
  f->hstate = 0;
  conn->split = 0;
  if (!open) return 0;
  if (f->hname == 0) {
    f->hbuf_len = f->hstart;
    return 0;
  }
  if (f->hbuf_len == f->hstart + f->hname && fetch_hdr_append(f, "", 0, 1) != 0)
    return nomem(f);   /* no value came: the name's NUL */
  if (fetch_hdr_append(f, "", 0, 0) != 0) return nomem(f);   /* room for the value's NUL */
  fetch_hdr_commit(f, f->hstart, f->hname);
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
  if (f->status < 100 || f->status > 999) {   /* llhttp lets "HTTP/1.1 20" through */
    fetch_fail(f, FETCH_EDOWNLOAD, "invalid HTTP response: status %ld", f->status);
    return -1;
  }
  if (f->status == 101) {   /* we asked for no upgrade */
    fetch_fail(f, FETCH_EDOWNLOAD, "unexpected protocol switch (status 101)");
    return -1;
  }
  if (f->status < 200) return 1;   /* 1xx: never a body (whatever it says); the answer follows */
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
