/*
 * net/fetch: one fetch, whichever path carries it.  Checks the request and
 * keeps a copy of it (method, header lines, body: one allocation owned by
 * the fetch), collects the final response's headers and body (within
 * max_response_size, in the caller's allocator) and builds the result.
 * The paths: fetch_h1.c (plain http) and fetch_curl.c (https, proxies);
 * the client and the public entry points: fetch_client.c.  Loop thread.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/fetch_impl.h"

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void fetch_request_init(struct fetch_request *rq) {
  memset(rq, 0, sizeof *rq);
  rq->method = "GET";
  rq->timeout_ms = FETCH_DEFAULT_TIMEOUT_MS;
  rq->follow_redirects = 1;
  rq->max_redirects = FETCH_MAX_REDIRECTS;
  rq->validate_certificate = 1;
  rq->max_response_size = FETCH_DEFAULT_MAX_RESPONSE;
}

const char *fetch_strerror(int err) {
  switch (err) {
  case FETCH_OK: return "ok";
  case FETCH_EINVAL_URL: return "invalid URL";
  case FETCH_EINVAL_HEADER: return "invalid header";
  case FETCH_EINVAL: return "invalid request";
  case FETCH_ENOMEM: return "not enough memory";
  case FETCH_EDOWNLOAD: return "download error";
  case FETCH_ETIMEDOUT: return "deadline exceeded";
  case FETCH_ETOOLARGE: return "response too large";
  case FETCH_ESSLCERT: return "SSL certificate error";
  case FETCH_ECANCELLED: return "cancelled";
  case FETCH_ECLOSED: return "client closed";
  default: return "unknown fetch error";
  }
}

/* RFC 9110 token characters (method, header name). */
static int is_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (isalnum(ch)) continue;
    if (!strchr("!#$%&'*+-.^_`|~", ch) || ch == 0) return 0;
  }
  return 1;
}

/* The URL as curl writes it back ("http://host[:port]/path..."; the scheme
 * in lower case, a path always there) is remembered for the last few URLs
 * a client fetched: a proxy fetching the same URLs again skips curl's
 * parser (a third of a fetch's instructions).  Only URLs that passed. */
#define URL_MEMO_MAX_LEN 2048

static const char *memo_find(struct fetch_client *c, const char *url) {
  for (size_t i = 0; i < FETCH_URL_MEMO; i++)
    if (c->urls[i].raw && strcmp(c->urls[i].raw, url) == 0) return c->urls[i].norm;
  return NULL;
}

static void memo_add(struct fetch_client *c, const char *url, const char *norm) {
  size_t n = strlen(url);
  if (n > URL_MEMO_MAX_LEN) return;
  struct fetch_url_memo *m = &c->urls[c->urls_next++ % FETCH_URL_MEMO];
  free(m->raw);
  m->raw = malloc(n + 1 + strlen(norm) + 1);
  if (!m->raw) return;
  memcpy(m->raw, url, n + 1);
  m->norm = strcpy(m->raw + n + 1, norm);
}

void fetch_url_memo_free(struct fetch_client *c) {
  for (size_t i = 0; i < FETCH_URL_MEMO; i++) free(c->urls[i].raw);
}

/* Parses and checks the URL: well-formed, http or https, with a host.
 * Sets f->url_str, and f->url unless the memo knew the URL. */
static int check_url(struct fetch *f, const char *url) {
  const char *known = memo_find(f->c, url);
  if (known) return (f->url_str = strdup(known)) ? 0 : FETCH_ENOMEM;
  CURLU *u = curl_url();
  char *s = NULL;
  if (!u) return FETCH_ENOMEM;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
    goto bad;
  size_t k = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
  const char *auth = s + k, *end = auth + strcspn(auth, "/?#"), *at = memchr(auth, '@', (size_t)(end - auth));
  if (at) auth = at + 1;
  if (!k || auth == end || *auth == ':') goto bad;   /* no host */
  if (!(f->url_str = strdup(s))) {
    curl_free(s);
    curl_url_cleanup(u);
    return FETCH_ENOMEM;
  }
  memo_add(f->c, url, s);
  curl_free(s);
  f->url = u;
  return 0;
bad:
  curl_free(s);
  curl_url_cleanup(u);
  return FETCH_EINVAL_URL;
}

int fetch_url_has_userinfo(const char *url) {
  const char *a = strstr(url, "://");
  if (!a) return 0;
  a += 3;
  return memchr(a, '@', strcspn(a, "/?#")) != NULL;
}

int fetch_url_handle(struct fetch *f) {
  if (f->url) return 0;
  if (!(f->url = curl_url())) return FETCH_ENOMEM;
  return curl_url_set(f->url, CURLUPART_URL, f->url_str, 0) == CURLUE_OK ? 0 : FETCH_ENOMEM;
}

static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

static int name_is(const struct fetch_header *h, const char *name) {
  return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

/* The caller's headers as "Name: value\r\n" lines (values trimmed as curl
 * does; an all-blank value is empty: "Name:\r\n"), written to out (NULL:
 * only measured).  Returns their length, or FETCH_EINVAL_HEADER for a
 * name that is not a token or CR, LF or NUL in a value. */
static long header_lines(const struct fetch_request *rq, char *out, unsigned *flags) {
  size_t len = 0;
  for (size_t i = 0; i < rq->nheaders; i++) {
    const struct fetch_header *h = &rq->headers[i];
    if (!h->name || !is_token(h->name, h->name_len)) return FETCH_EINVAL_HEADER;
    if (h->value_len && !h->value) return FETCH_EINVAL_HEADER;
    if (h->value_len && (memchr(h->value, '\r', h->value_len) ||
                         memchr(h->value, '\n', h->value_len) || memchr(h->value, '\0', h->value_len)))
      return FETCH_EINVAL_HEADER;
    const char *v = h->value;
    size_t vl = h->value_len;
    trim(&v, &vl);
    if (out) {
      memcpy(out + len, h->name, h->name_len);
      memcpy(out + len + h->name_len, ": ", 2);
      memcpy(out + len + h->name_len + 2 - (vl == 0), v, vl);
      memcpy(out + len + h->name_len + 2 + vl - (vl == 0), "\r\n", 2);
    }
    len += h->name_len + 4 + vl - (vl == 0);
    if (flags) {
      if (name_is(h, "host")) *flags |= FETCH_HDR_HOST;
      else if (name_is(h, "accept")) *flags |= FETCH_HDR_ACCEPT;
      else if (name_is(h, "expect")) *flags |= FETCH_HDR_EXPECT;
      else if (name_is(h, "connection") && vl >= 5) {
        for (size_t k = 0; k + 5 <= vl; k++)
          if (strncasecmp(v + k, "close", 5) == 0) *flags |= FETCH_HDR_CLOSE;
      }
    }
  }
  return (long)len;
}

int fetch_copy_request(struct fetch *f, const struct fetch_request *rq) {
  const char *method = rq->method ? rq->method : "GET";
  size_t mlen = strlen(method);
  unsigned flags = 0;
  int rc;
  if (!rq->url || !is_token(method, mlen) || (rq->body_len && !rq->body))
    return rq->url ? FETCH_EINVAL : FETCH_EINVAL_URL;
  if ((rc = check_url(f, rq->url)) != 0) return rc;
  long hl = header_lines(rq, NULL, &flags);
  if (hl < 0) return (int)hl;
  if (!(f->rq = malloc(mlen + 1 + (size_t)hl + rq->body_len + 1))) return FETCH_ENOMEM;
  memcpy(f->rq, method, mlen + 1);
  f->method_len = mlen;
  f->hlines_off = mlen + 1;
  f->hlines_len = (size_t)hl;
  header_lines(rq, f->rq + f->hlines_off, NULL);
  f->body_off = f->hlines_off + f->hlines_len;
  f->rq_body_len = rq->body_len;
  f->has_body = rq->body != NULL;
  if (rq->body_len) memcpy(f->rq + f->body_off, rq->body, rq->body_len);
  f->rq[f->body_off + f->rq_body_len] = '\0';
  f->hflags = flags;
  f->method = f->rq;
  f->alloc = rq->alloc ? rq->alloc : default_alloc;
  f->alloc_ud = rq->alloc ? rq->alloc_ud : NULL;
  f->max = rq->max_response_size;
  f->allow_truncated = rq->allow_truncated != 0;
  f->follow = rq->follow_redirects != 0;
  f->max_redirects = rq->max_redirects;
  f->validate = rq->validate_certificate != 0;
  f->timeout_ms = rq->timeout_ms > 0 ? rq->timeout_ms : 0;
  f->clen = -1;
  return 0;
}

static int line_is(const char *s, size_t n, const char *const *names, size_t count) {
  for (size_t i = 0; i < count; i++) {
    size_t k = strlen(names[i]);
    if (n >= k && strncasecmp(s, names[i], k) == 0) return 1;
  }
  return 0;
}

int fetch_line_private(const char *s, size_t n) {
  static const char *const names[] = {"host:", "authorization:", "cookie:"};
  return line_is(s, n, names, 3);
}

int fetch_line_framing(const char *s, size_t n) {
  static const char *const names[] = {"content-length:", "transfer-encoding:"};
  return line_is(s, n, names, 2);
}

/* "Name: value" entries for curl ("Name;" sends an empty value); an
 * "Expect:" entry keeps curl from waiting for 100-continue unless the
 * caller sends an Expect of its own. */
int fetch_curl_headers(const struct fetch *f, int skip_private, struct curl_slist **out) {
  struct curl_slist *l = NULL, *nl;
  const char *p = f->rq + f->hlines_off, *end = p + f->hlines_len;
  while (p < end) {
    const char *eol = memchr(p, '\r', (size_t)(end - p));   /* values hold no CR */
    size_t n = (size_t)(eol - p);
    if (!(skip_private && fetch_line_private(p, n))) {
      char *s = malloc(n + 1);
      if (!s) goto nomem;
      memcpy(s, p, n);
      s[n] = '\0';
      if (memchr(s, ':', n) == s + n - 1) s[n - 1] = ';';   /* "Name:" (a name has no colon) */
      nl = curl_slist_append(l, s);
      free(s);
      if (!nl) goto nomem;
      l = nl;
    }
    p = eol + 2;
  }
  if (!(f->hflags & FETCH_HDR_EXPECT)) {
    if (!(nl = curl_slist_append(l, "Expect:"))) goto nomem;
    l = nl;
  }
  *out = l;
  return 0;
nomem:
  curl_slist_free_all(l);
  return FETCH_ENOMEM;
}

void fetch_unlink(struct fetch *f) {
  struct fetch_client *c = f->c;
  if (f->prev) f->prev->next = f->next;
  else c->head = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
  c->active--;
}

void fetch_free(struct fetch *f) {
  if (f->easy) curl_easy_cleanup(f->easy);
  curl_url_cleanup(f->url);
  free(f->url_str);
  curl_slist_free_all(f->hdrs);
  if (f->body) f->alloc(f->alloc_ud, f->body, f->body_cap, 0);
  if (f->hbuf) f->alloc(f->alloc_ud, f->hbuf, f->hbuf_cap, 0);
  free(f->rq);
  free(f->host);
  free(f->target);
  free(f->origin_host);
  free(f->addrs);
  free(f);
}

/* ---- the response ---------------------------------------------------- */

int fetch_fail(struct fetch *f, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->msg, sizeof f->msg, fmt, ap);
  va_end(ap);
  f->err = err;
  return 1;
}

void fetch_response_reset(struct fetch *f, long status) {
  f->status = status;
  f->hbuf_len = f->nh = 0;
  f->has_location = 0;
  f->clen = -1;
  f->body_len = 0;
  f->truncated = 0;
}

/* Grows *buf (capacity *cap, *len used) to hold `need` more bytes, at
 * least doubling, through the fetch's allocator. */
static int reserve(struct fetch *f, char **buf, size_t *cap, size_t len, size_t need) {
  if (*cap - len >= need) return 0;
  size_t n = *cap ? *cap : 256;
  while (n - len < need) {
    if (n > ((size_t)-1) / 2) return FETCH_ENOMEM;
    n *= 2;
  }
  char *p = f->alloc(f->alloc_ud, *buf, *cap, n);
  if (!p) return FETCH_ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

int fetch_hdr_append(struct fetch *f, const char *s, size_t n, int nul) {
  if (reserve(f, &f->hbuf, &f->hbuf_cap, f->hbuf_len, n + 1) != 0) return FETCH_ENOMEM;
  memcpy(f->hbuf + f->hbuf_len, s, n);
  f->hbuf_len += n;
  if (nul) f->hbuf[f->hbuf_len++] = '\0';
  return 0;
}

void fetch_hdr_commit(struct fetch *f, size_t at, size_t nl) {
  char *name = f->hbuf + at, *v = name + nl + 1;
  const char *tv = v;
  size_t vl = (size_t)(f->hbuf + f->hbuf_len - v);
  trim(&tv, &vl);
  memmove(v, tv, vl);
  v[vl] = '\0';   /* reserve left room for it */
  f->hbuf_len = (size_t)(v - f->hbuf) + vl + 1;
  for (size_t i = 0; i < nl; i++) name[i] = (char)tolower((unsigned char)name[i]);
  f->nh++;
  if (nl == 8 && memcmp(name, "location", 8) == 0) f->has_location = 1;
  if (nl == 14 && memcmp(name, "content-length", 14) == 0) {
    char *end;
    long long cl = strtoll(v, &end, 10);
    f->clen = (*end == '\0' && cl >= 0 && vl > 0) ? cl : -1;
  }
}

int fetch_is_redirect(const struct fetch *f) {
  return f->status >= 300 && f->status < 400 && f->follow && f->has_location;
}

/* Makes room for `need` body bytes (need <= max): doubling, from the
 * announced length (up to FETCH_BODY_FIRST) or 16 KiB, never past what
 * the body can grow to (its length, or max), so the allocator is charged
 * for little more than the body. */
#define FETCH_BODY_FIRST ((size_t)1 << 20)

static int grow_body(struct fetch *f, size_t need) {
  if (need <= f->body_cap) return 0;
  int known = f->clen >= 0 && (unsigned long long)f->clen < f->max;
  size_t bound = known ? (size_t)f->clen : f->max, n;
  if (bound < need) bound = need;   /* the peer sent more than it said */
  if (f->body_cap) n = f->body_cap;
  else if (known) n = bound < FETCH_BODY_FIRST ? bound : FETCH_BODY_FIRST;
  else n = 16384;
  while (n < need && n < bound) n = n > bound / 2 ? bound : n * 2;
  if (n > bound) n = bound;
  char *p = f->alloc(f->alloc_ud, f->body, f->body_cap, n);
  if (!p) return FETCH_ENOMEM;
  f->body = p;
  f->body_cap = n;
  return 0;
}

static int body_too_large(struct fetch *f) {
  return fetch_fail(f, FETCH_ETOOLARGE, "response body larger than %zu bytes", f->max);
}

int fetch_headers_end(struct fetch *f) {
  if (f->status >= 200 && !fetch_is_redirect(f) && f->clen >= 0 && !f->allow_truncated &&
      (unsigned long long)f->clen > f->max)
    return body_too_large(f);
  return 0;
}

/* Over max_response_size either fails the fetch or, with allow_truncated,
 * keeps the first max bytes; both stop the transfer. */
int fetch_body_add(struct fetch *f, const char *buf, size_t len) {
  size_t take = len;
  if (f->body_len == 0 && f->clen >= 0 && !f->allow_truncated &&
      (unsigned long long)f->clen > f->max)
    return body_too_large(f);
  if (len > f->max - f->body_len) {
    if (!f->allow_truncated) return body_too_large(f);
    take = f->max - f->body_len;
    f->truncated = 1;
  }
  if (take && grow_body(f, f->body_len + take) != 0)
    return fetch_fail(f, FETCH_ENOMEM, "not enough memory for the response body");
  if (take) memcpy(f->body + f->body_len, buf, take);
  f->body_len += take;
  return f->truncated;
}

void fetch_deliver(struct fetch *f, int err, long status, const char *final_url,
                   const char *fallback) {
  struct fetch_result r = {0};
  struct fetch_header *hs = NULL;
  size_t hs_size = 0;
  if (!err) err = f->err;
  if (!err && f->nh) {
    hs_size = f->nh * sizeof *hs;
    if (!(hs = f->alloc(f->alloc_ud, NULL, 0, hs_size)))
      fetch_fail(f, err = FETCH_ENOMEM, "not enough memory for the response headers");
  }
  r.status = status;
  r.final_url = final_url ? final_url : "";
  r.error = err;
  if (err) {
    if (err == FETCH_ECANCELLED) r.message = "cancelled: the client was closed";
    else if (f->msg[0]) r.message = f->msg;
    else if (fallback && fallback[0]) r.message = fallback;
    else r.message = fetch_strerror(err);
  } else {
    const char *p = f->hbuf;
    for (size_t i = 0; i < f->nh; i++) {
      hs[i].name = p;
      hs[i].name_len = strlen(p);
      p += hs[i].name_len + 1;
      hs[i].value = p;
      hs[i].value_len = strlen(p);
      p += hs[i].value_len + 1;
    }
    r.message = "";
    r.headers = hs;
    r.nheaders = f->nh;
    r.body = f->body_len ? f->body : NULL;
    r.body_len = f->body_len;
    r.truncated = f->truncated;
  }
  f->cb(f->ud, &r);
  if (hs) f->alloc(f->alloc_ud, hs, hs_size, 0);
}
