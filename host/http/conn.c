/*
 * conn: one HTTP/1.1 connection on a worker's loop: reading, llhttp
 * parsing, limits, timeouts, one request in flight at a time (pipelined
 * requests wait in the read buffer, so responses leave in order), writing,
 * lingering close.  Everything here runs on the owning worker's thread.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <llhttp.h>

#include "base/clock.h"
#include "base/log.h"
#include "http/http.h"
#include "http/response.h"

#define READ_CHUNK (16 * 1024)
/* Bytes of pipelined requests read ahead while one is in flight; past it
 * reading stops until the response is out (back-pressure). */
#define READ_AHEAD (64 * 1024)
#define LINGER_MS 2000

enum phase { PH_IDLE, PH_HEADERS, PH_BODY, PH_HANDLER, PH_LINGER };

struct hdr_off { uint32_t n, nl, v, vl; };   /* offsets into hbuf */

struct http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shut;
  struct http_server *srv;
  struct list_node node;             /* srv->conns */
  llhttp_t parser;
  struct rbuf in;                    /* raw bytes read; [rpos, in.len) unparsed */
  size_t rpos;
  struct rbuf head;                  /* target, then header names and values */
  struct hdr_off *hoff; int nh, hoff_cap;
  struct http_header *hdrs; int hdrs_cap;
  struct rbuf body;
  struct rbuf out;                   /* response being formatted */
  struct http_request req;
  size_t target_len;
  int last_was_value;
  int error_status;                  /* limit hit by a callback: 413, 431 */
  int phase;
  uint64_t deadline;                 /* loop time (ms) the current phase ends; 0 none */
  uint64_t timer_due;                /* when the timer is set to fire */
  int refs;                          /* open handles + request in flight */
  int writes_pending;
  unsigned inflight : 1, closing : 1, in_process : 1, keep_alive : 1,
      reading : 1, upgrade : 1;
  char remote[64];
};

/* Open connections in the whole process: every worker adds and removes. */
static atomic_int total_conns;
static int max_conns = 16384;   /* set by the main thread before workers start */

void http_set_max_conns(int n) { max_conns = n; }

int http_method_known(const char *m) {
#define LH_KNOWN(num, name, string) if (!strcmp(m, #string)) return 1;
  HTTP_METHOD_MAP(LH_KNOWN)
#undef LH_KNOWN
  return 0;
}
int http_open_connections(void) {
  return atomic_load_explicit(&total_conns, memory_order_relaxed);
}

static void process(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void start_linger(struct http_conn *c);
static int start_reading(struct http_conn *c);

/* ---- small helpers ---------------------------------------------------- */

static void conn_unref(struct http_conn *c) {
  if (--c->refs > 0) return;
  struct http_server *s = c->srv;
  list_remove(&c->node);
  atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
  atomic_fetch_sub(&total_conns, 1);
  rbuf_free(&c->in); rbuf_free(&c->head); rbuf_free(&c->body); rbuf_free(&c->out);
  free(c->hoff);
  free(c->hdrs);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) { conn_unref(h->data); }

static void conn_close(struct http_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Timers are lazy: arm() only records the deadline; the timer is
 * restarted when the deadline moves earlier than when it is due, and
 * otherwise re-armed when it fires early.  Keep-alive traffic thus moves a
 * number per request instead of the loop's timer heap. */
static void on_timeout(uv_timer_t *t) {
  struct http_conn *c = t->data;
  uint64_t now = uv_now(t->loop);
  if (c->deadline == 0) return;          /* disarmed (a handler runs) */
  if (now < c->deadline) {
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, on_timeout, c->deadline - now, 0);
    return;
  }
  conn_close(c);
}

static void arm(struct http_conn *c, uint32_t ms) {
  uint64_t due = uv_now(c->srv->loop) + ms;
  c->deadline = due;
  if (!uv_is_active((uv_handle_t *)&c->timer) || due < c->timer_due) {
    c->timer_due = due;
    uv_timer_start(&c->timer, on_timeout, ms, 0);
  }
}

static void disarm(struct http_conn *c) { c->deadline = 0; }

/* ---- llhttp callbacks ------------------------------------------------- */

static int over_header_limit(struct http_conn *c, size_t more) {
  if (c->head.len + more + (size_t)c->nh * 4 > HTTP_MAX_HEADER_BLOCK) {
    c->error_status = 431;
    return 1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  struct http_conn *c = p->data;
  c->head.len = 0;
  c->body.len = 0;
  c->nh = 0;
  c->target_len = 0;
  c->last_was_value = 0;
  c->error_status = 0;
  c->req.start_ns = clock_now_ns();
  c->phase = PH_HEADERS;
  arm(c, c->srv->lim.header_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  struct http_conn *c = p->data;
  if (over_header_limit(c, n) || rbuf_append(&c->head, at, n) < 0) return -1;
  c->target_len += n;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct http_conn *c = p->data;
  if (over_header_limit(c, n) || rbuf_reserve(&c->head, n) < 0) return -1;
  if (c->nh == 0 || c->last_was_value) {
    if (c->nh == c->hoff_cap) {
      int cap = c->hoff_cap ? c->hoff_cap * 2 : 16;
      struct hdr_off *h = realloc(c->hoff, (size_t)cap * sizeof *h);
      if (!h) return -1;
      c->hoff = h;
      c->hoff_cap = cap;
    }
    c->hoff[c->nh++] = (struct hdr_off){(uint32_t)c->head.len, 0, 0, 0};
    c->last_was_value = 0;
  }
  char *d = c->head.p + c->head.len;
  for (size_t i = 0; i < n; i++) {
    char ch = at[i];
    if (ch == ' ' || ch == '\t') return -1;   /* "Name :" is malformed (RFC 9112 5.1) */
    d[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
  c->head.len += n;
  c->hoff[c->nh - 1].nl += (uint32_t)n;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct http_conn *c = p->data;
  if (over_header_limit(c, n)) return -1;
  if (!c->last_was_value) {
    c->hoff[c->nh - 1].v = (uint32_t)c->head.len;
    c->last_was_value = 1;
  }
  if (rbuf_append(&c->head, at, n) < 0) return -1;
  c->hoff[c->nh - 1].vl += (uint32_t)n;
  return 0;
}

/* A field value ends without its trailing whitespace (RFC 9112 5: OWS
 * around the value is not part of it; llhttp drops only the leading). */
static int on_header_value_complete(llhttp_t *p) {
  struct http_conn *c = p->data;
  if (c->nh == 0) return 0;
  c->last_was_value = 1;   /* also for an empty value, where on_header_value never ran */
  struct hdr_off *h = &c->hoff[c->nh - 1];
  while (h->vl && (c->head.p[h->v + h->vl - 1] == ' ' || c->head.p[h->v + h->vl - 1] == '\t'))
    h->vl--;
  return 0;
}

static const struct hdr_off *find_header(struct http_conn *c, const char *name) {
  size_t len = strlen(name);
  for (int i = 0; i < c->nh; i++)
    if (c->hoff[i].nl == len && memcmp(c->head.p + c->hoff[i].n, name, len) == 0)
      return &c->hoff[i];
  return NULL;
}

static int write_raw(struct http_conn *c, const char *p, size_t n);

static int on_headers_complete(llhttp_t *p) {
  struct http_conn *c = p->data;
  if (p->http_major != 1 || p->http_minor > 1) {   /* llhttp lets 0.9 and 2.0 through */
    c->error_status = 505;
    return -1;
  }
  int has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->lim.max_body) {
    c->error_status = 413;
    return -1;
  }
  /* RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host. */
  int hosts = 0;
  for (int i = 0; i < c->nh; i++)
    hosts += c->hoff[i].nl == 4 && memcmp(c->head.p + c->hoff[i].n, "host", 4) == 0;
  if (hosts > 1 || (hosts == 0 && p->http_major == 1 && p->http_minor == 1)) return -1;
  const struct hdr_off *e = has_body ? find_header(c, "expect") : NULL;   /* GETs skip the search */
  if (e && p->http_major == 1 && p->http_minor == 1 && e->vl == 12 &&
      strncasecmp(c->head.p + e->v, "100-continue", 12) == 0)
    write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  if (has_body) {
    c->phase = PH_BODY;
    arm(c, c->srv->lim.body_timeout_ms);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct http_conn *c = p->data;
  if (c->body.len + n > c->srv->lim.max_body) {
    c->error_status = 413;
    return -1;
  }
  return rbuf_append(&c->body, at, n);
}

/* A chunk that would take the body past max_body is refused when its size
 * is read, not after its bytes arrive. */
static int on_chunk_header(llhttp_t *p) {
  struct http_conn *c = p->data;
  if (p->content_length > c->srv->lim.max_body - c->body.len) {
    c->error_status = 413;
    return -1;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  return HPE_PAUSED;   /* one request at a time: process() dispatches it */
}

/* The parser callbacks: constant, shared by every worker's parsers (the
 * fields not named are NULL, as llhttp_settings_init would leave them). */
static const llhttp_settings_t settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_chunk_header = on_chunk_header,
  .on_message_complete = on_message_complete,
};

/* ---- requests --------------------------------------------------------- */

/* Resolves the offsets collected while parsing into c->req. */
static int build_request(struct http_conn *c) {
  struct http_request *r = &c->req;
  if (c->nh > c->hdrs_cap) {
    struct http_header *h = realloc(c->hdrs, (size_t)c->nh * sizeof *h);
    if (!h) return -1;
    c->hdrs = h;
    c->hdrs_cap = c->nh;
  }
  const char *b = c->head.p ? c->head.p : "";
  for (int i = 0; i < c->nh; i++)
    c->hdrs[i] = (struct http_header){b + c->hoff[i].n, c->hoff[i].nl,
                                      b + c->hoff[i].v, c->hoff[i].vl};
  r->method = llhttp_method_name((llhttp_method_t)c->parser.method);
  r->target = b;
  r->target_len = c->target_len;
  const char *q = memchr(b, '?', c->target_len);
  r->path = b;
  r->path_len = q ? (size_t)(q - b) : c->target_len;
  r->query = q ? q + 1 : b + c->target_len;
  r->query_len = q ? c->target_len - r->path_len - 1 : 0;
  /* absolute-form ("GET http://host/p?q", RFC 9112 3.2.2: a server MUST
   * accept it): the path is what follows the authority, "/" when empty */
  size_t skip = 0;
  if (r->path_len && b[0] != '/')   /* origin-form, every usual request, starts with '/' */
    skip = r->path_len > 7 && !strncasecmp(b, "http://", 7)    ? 7
           : r->path_len > 8 && !strncasecmp(b, "https://", 8) ? 8 : 0;
  if (skip) {
    const char *slash = memchr(b + skip, '/', r->path_len - skip);
    r->path = slash ? slash : "/";
    r->path_len = slash ? r->path_len - (size_t)(slash - b) : 1;
  }
  r->http_major = c->parser.http_major;
  r->http_minor = c->parser.http_minor;
  r->headers = c->hdrs;
  r->nheaders = c->nh;
  r->body = c->body.p ? c->body.p : "";
  r->body_len = c->body.len;
  r->remote = c->remote;
  r->is_head = c->parser.method == HTTP_HEAD;
  r->seq = instance_request_id(r->request_id);
  return 0;
}

static void begin_request(struct http_conn *c) {
  c->inflight = 1;
  c->refs++;
  c->phase = PH_HANDLER;
  c->srv->ninflight++;
  disarm(c);
}

/* Answers a request the parser refused (400, 413, 431) and closes. */
static void respond_error(struct http_conn *c, int status) {
  struct http_request *r = &c->req;
  if (c->phase == PH_IDLE) r->start_ns = clock_now_ns();
  /* the method is known once the target began (llhttp's is 0, DELETE, before) */
  r->method = c->phase == PH_IDLE || !c->target_len
                  ? "-" : llhttp_method_name((llhttp_method_t)c->parser.method);
  if (c->phase == PH_IDLE) c->nh = 0;   /* no header of this request was read */
  r->path = c->head.p && c->target_len ? c->head.p : "-";
  r->path_len = c->head.p && c->target_len ? c->target_len : 1;
  const char *q = c->head.p && c->target_len ? memchr(r->path, '?', r->path_len) : NULL;
  r->query = q ? q + 1 : "";
  r->query_len = q ? r->path_len - (size_t)(q - r->path) - 1 : 0;
  if (q) r->path_len = (size_t)(q - r->path);
  r->is_head = 0;
  r->remote = c->remote;
  r->seq = instance_request_id(r->request_id);
  c->keep_alive = 0;
  begin_request(c);
  if (c->srv->refused) c->srv->refused(c->srv->ud, r, status);
  const char *msg = http_refusal_text(status);
  struct http_header ct = HTTP_HEADER_TEXT_PLAIN;
  http_respond(c, status, &ct, 1, msg, strlen(msg));
}

/* Parses what is buffered and dispatches complete requests, one at a time. */
static void process(struct http_conn *c) {
  if (c->in_process) return;
  c->in_process = 1;
  while (!c->inflight && !c->closing && c->phase != PH_LINGER && c->rpos < c->in.len) {
    const char *start = c->in.p + c->rpos;
    llhttp_errno_t err = llhttp_execute(&c->parser, start, c->in.len - c->rpos);
    if (err == HPE_OK) {
      c->rpos = c->in.len;
    } else if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      c->rpos += (size_t)(llhttp_get_error_pos(&c->parser) - start);
      /* An Upgrade request is answered, then the connection closes (no
       * protocol switch): the parser would hand the same request again. */
      c->upgrade = err == HPE_PAUSED_UPGRADE || llhttp_get_upgrade(&c->parser);
      if (err == HPE_PAUSED) llhttp_resume(&c->parser);
      c->keep_alive = llhttp_should_keep_alive(&c->parser) && !c->upgrade &&
                      !c->srv->draining;
      if (build_request(c) < 0) { respond_error(c, 500); break; }
      begin_request(c);
      c->srv->dispatch(c->srv->ud, c, &c->req);
    } else {
      respond_error(c, c->error_status ? c->error_status : 400);
      break;
    }
  }
  if (c->rpos == c->in.len) c->rpos = c->in.len = 0;
  c->in_process = 0;
  if (c->closing || c->phase == PH_LINGER) return;
  if (c->inflight) {
    /* Reading goes on while the handler runs (an EOF shows at once, and a
     * read stopped and started again costs two epoll_ctl calls per
     * request); only pipelined bytes piling up stop it. */
    if (c->reading && c->in.len - c->rpos >= READ_AHEAD) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = 0;
    }
  } else if (!c->reading) {
    start_reading(c);
  }
}

/* ---- reading ---------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct http_conn *c = h->data;
  if (c->rpos > 0 && c->rpos == c->in.len) c->rpos = c->in.len = 0;
  if (rbuf_reserve(&c->in, READ_CHUNK) < 0) { *buf = uv_buf_init(NULL, 0); return; }
  *buf = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct http_conn *c = s->data;
  if (n < 0) {           /* EOF or error: nothing more will come */
    if (c->phase == PH_LINGER || !c->inflight) conn_close(c);
    else { uv_read_stop(s); c->reading = 0; c->keep_alive = 0; }
    return;
  }
  if (n == 0) return;
  if (c->phase == PH_LINGER) { c->in.len = c->rpos = 0; return; }   /* discard */
  c->in.len += (size_t)n;
  if (c->phase == PH_BODY) arm(c, c->srv->lim.body_timeout_ms);
  process(c);
}

static int start_reading(struct http_conn *c) {
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  c->reading = r == 0;
  return r;
}

/* ---- writing ---------------------------------------------------------- */

struct write_req { uv_write_t req; struct http_conn *c; char data[]; };

static void on_write(uv_write_t *w, int status) {
  struct write_req *wr = (struct write_req *)w;
  struct http_conn *c = wr->c;
  free(wr);
  c->writes_pending--;
  conn_unref(c);
  if (status < 0) conn_close(c);
}

/* Writes now as much as the socket takes; queues the rest in order. */
static int write_raw(struct http_conn *c, const char *p, size_t n) {
  if (c->closing) return -1;
  if (c->writes_pending == 0) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int k = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (k == (int)n) return 0;
    if (k < 0 && k != UV_EAGAIN) { conn_close(c); return -1; }
    if (k > 0) { p += k; n -= (size_t)k; }
  }
  struct write_req *wr = malloc(sizeof *wr + n);
  if (!wr) { conn_close(c); return -1; }
  memcpy(wr->data, p, n);
  wr->c = c;
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
    free(wr);
    conn_close(c);
    return -1;
  }
  c->writes_pending++;
  c->refs++;
  return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  struct http_conn *c = req->data;
  conn_unref(c);
  if (status < 0) conn_close(c);
}

/* After the last response: half-close, drain what the client still sends
 * (so it reads our answer instead of a reset), then close. */
static void start_linger(struct http_conn *c) {
  c->phase = PH_LINGER;
  c->shut.data = c;
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    conn_close(c);
    return;
  }
  c->refs++;
  if (!c->reading) start_reading(c);
  arm(c, LINGER_MS);
}

/* The access-log line of the request in flight (its headers are still in
 * c->head until the next request begins). */
static void access_log(struct http_conn *c, int status, size_t written) {
  struct http_request *r = &c->req;
  const struct hdr_off *ua = find_header(c, "user-agent");
  struct log_access_rec rec = {
    .remote = r->remote, .method = r->method,
    .path = r->path, .path_len = r->path_len,
    .query = r->query, .query_len = r->query_len,
    .status = status, .bytes = written,
    .duration_us = (clock_now_ns() - r->start_ns) / 1000,
    .request_id = r->request_id,
    .user_agent = ua ? c->head.p + ua->v : NULL, .user_agent_len = ua ? ua->vl : 0,
    .json = c->srv->lim.access_log == HTTP_ACCESS_LOG_JSON,
  };
  log_access(&rec);
}

void http_respond(struct http_conn *c, int status, const struct http_header *h,
                  int nh, const char *body, size_t len) {
  struct http_request *r = &c->req;
  int bodiless = http_status_bodiless(status);
  size_t written = 0;
  c->inflight = 0;
  c->srv->ninflight--;
  if (c->srv->draining || c->srv->close_each) c->keep_alive = 0;
  if (!c->closing) {
    struct http_head hd = {status, h, nh, bodiless ? 0 : len, r->request_id,
                           !c->keep_alive,
                           c->parser.http_major == 1 && c->parser.http_minor == 0};
    c->out.len = 0;
    if (http_format_head(&c->out, &hd) == 0 &&
        (r->is_head || bodiless || rbuf_append(&c->out, body, len) == 0)) {
      written = c->out.len;
      write_raw(c, c->out.p, c->out.len);
    } else {
      conn_close(c);
    }
  }
  if (c->srv->lim.access_log) access_log(c, status, written);
  if (c->out.cap > 256 * 1024) rbuf_free(&c->out);
  if (c->body.cap > 256 * 1024) rbuf_free(&c->body);
  if (!c->closing) {
    if (!c->keep_alive) {
      start_linger(c);
    } else {
      c->phase = PH_IDLE;
      arm(c, c->srv->lim.idle_timeout_ms);
      process(c);   /* a pipelined request may already be buffered */
    }
  }
  conn_unref(c);  /* the reference the request held */
}

/* ---- server ----------------------------------------------------------- */

void http_server_init(struct http_server *s, uv_loop_t *loop,
                      const struct http_limits *lim, http_dispatch_fn fn, void *ud) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->lim = *lim;
  s->dispatch = fn;
  s->ud = ud;
  list_init(&s->conns);
}

int http_conn_open(struct http_server *s, int fd) {
  if (atomic_fetch_add(&total_conns, 1) >= max_conns) {
    atomic_fetch_sub(&total_conns, 1);
    close(fd);
    return -EMFILE;
  }
  struct http_conn *c = calloc(1, sizeof *c);
  if (!c) { atomic_fetch_sub(&total_conns, 1); close(fd); return -ENOMEM; }
  c->srv = s;
  c->refs = 2;   /* tcp + timer handles */
  list_push_back(&s->conns, &c->node);
  atomic_fetch_add_explicit(&s->nconns, 1, memory_order_relaxed);
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  int r = uv_tcp_open(&c->tcp, fd);
  if (r < 0) { close(fd); conn_close(c); return r; }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  strcpy(c->remote, "-");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof c->remote);
    else
      uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof c->remote);
  }
  c->phase = PH_IDLE;
  arm(c, s->lim.idle_timeout_ms);
  if (start_reading(c) < 0) conn_close(c);
  return 0;
}

void http_server_drain(struct http_server *s) {
  s->draining = 1;
  list_each(&s->conns, it, tmp) {
    struct http_conn *c = list_entry(it, struct http_conn, node);
    if (!c->inflight && c->phase == PH_IDLE && !c->closing) conn_close(c);
  }
}

void http_server_close_all(struct http_server *s) {
  list_each(&s->conns, it, tmp) conn_close(list_entry(it, struct http_conn, node));
}
