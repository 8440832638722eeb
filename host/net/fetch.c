/*
 * net/fetch: one transfer.  Checks the request, sets up its curl easy
 * handle, collects the final response's headers and body (within
 * max_response_size, in the caller's allocator) and builds the result.
 * The client side (multi handle, sockets, timer) is in fetch_client.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/fetch_impl.h"

static size_t on_header(char *buf, size_t size, size_t n, void *ud);
static size_t on_body(char *buf, size_t size, size_t n, void *ud);

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

/* Parses and checks the URL: well-formed, http or https, with a host. */
static int check_url(const char *url, CURLU **out) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  int rc = FETCH_EINVAL_URL;
  if (!u) return FETCH_ENOMEM;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto done;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto done;
  if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) goto done;
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) goto done;
  rc = 0;
done:
  curl_free(scheme);
  curl_free(host);
  if (rc == 0) *out = u;
  else curl_url_cleanup(u);
  return rc;
}

/* "Name: value" lines for curl ("Name;" sends an empty value); an
 * "Expect:" line keeps curl from waiting for 100-continue unless the
 * caller sends an Expect of its own. */
static int build_headers(const struct fetch_request *rq, struct curl_slist **out) {
  struct curl_slist *l = NULL, *nl;
  int has_expect = 0;
  for (size_t i = 0; i < rq->nheaders; i++) {
    const struct fetch_header *h = &rq->headers[i];
    if (!h->name || !is_token(h->name, h->name_len)) goto bad;
    if (h->value_len && !h->value) goto bad;
    for (size_t k = 0; k < h->value_len; k++)
      if (h->value[k] == '\r' || h->value[k] == '\n' || h->value[k] == '\0') goto bad;
  }
  for (size_t i = 0; i < rq->nheaders; i++) {
    const struct fetch_header *h = &rq->headers[i];
    size_t vs = 0, ve = h->value_len;   /* curl trims; an all-blank value is empty */
    while (vs < ve && (h->value[vs] == ' ' || h->value[vs] == '\t')) vs++;
    while (ve > vs && (h->value[ve - 1] == ' ' || h->value[ve - 1] == '\t')) ve--;
    char *line = malloc(h->name_len + (ve - vs) + 3);
    if (!line) goto nomem;
    memcpy(line, h->name, h->name_len);
    if (ve > vs) {
      memcpy(line + h->name_len, ": ", 2);
      memcpy(line + h->name_len + 2, h->value + vs, ve - vs);
      line[h->name_len + 2 + (ve - vs)] = '\0';
    } else {
      memcpy(line + h->name_len, ";", 2);
    }
    if (h->name_len == 6 && strncasecmp(h->name, "expect", 6) == 0) has_expect = 1;
    nl = curl_slist_append(l, line);
    free(line);
    if (!nl) goto nomem;
    l = nl;
  }
  if (!has_expect) {
    if (!(nl = curl_slist_append(l, "Expect:"))) goto nomem;
    l = nl;
  }
  *out = l;
  return 0;
bad:
  return FETCH_EINVAL_HEADER;
nomem:
  curl_slist_free_all(l);
  return FETCH_ENOMEM;
}

/* The method and the body: GET and HEAD as curl knows them, POST so that a
 * 301/302/303 turns it into a GET, anything else (or a GET with a body)
 * as a custom request.  The body is copied. */
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
    ok &= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) == CURLE_OK;
  }
  return ok;
}

int fetch_setup(struct fetch *f, const struct fetch_request *rq) {
  const char *method = rq->method ? rq->method : "GET";
  int rc;
  if (!rq->url || !is_token(method, strlen(method)) || (rq->body_len && !rq->body))
    return rq->url ? FETCH_EINVAL : FETCH_EINVAL_URL;
  if ((rc = check_url(rq->url, &f->url)) != 0) return rc;
  if ((rc = build_headers(rq, &f->hdrs)) != 0) return rc;
  f->alloc = rq->alloc ? rq->alloc : default_alloc;
  f->alloc_ud = rq->alloc ? rq->alloc_ud : NULL;
  f->max = rq->max_response_size;
  f->allow_truncated = rq->allow_truncated != 0;
  f->follow = rq->follow_redirects != 0;
  f->clen = -1;
  if (!(f->easy = curl_easy_init())) return FETCH_ENOMEM;
  CURL *e = f->easy;
  int ok = 1;
  ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, f) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_CURLU, f->url) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, (long)f->follow) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)rq->max_redirects) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 0L) ==
        CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, rq->validate_certificate ? 1L : 0L) ==
        CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, rq->validate_certificate ? 2L : 0L) ==
        CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdrs) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, f) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, f) == CURLE_OK;
  ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf) == CURLE_OK;
  ok &= set_method(e, method, rq->body, rq->body_len);
  /* a libcurl without HTTP/2 refuses these: HTTP/1.1 then.  PIPEWAIT:
   * a fetch to an https origin with a connection still being set up waits
   * to learn whether it speaks HTTP/2 and can carry this one too */
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  if (strncasecmp(rq->url, "https", 5) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  return ok ? 0 : FETCH_ENOMEM;
}

void fetch_free(struct fetch *f) {
  if (f->easy) curl_easy_cleanup(f->easy);
  curl_url_cleanup(f->url);
  curl_slist_free_all(f->hdrs);
  if (f->body) f->alloc(f->alloc_ud, f->body, f->body_cap, 0);
  if (f->hbuf) f->alloc(f->alloc_ud, f->hbuf, f->hbuf_cap, 0);
  free(f);
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

/* The body: over max_response_size either fails the fetch or, with
 * allow_truncated, keeps the first max bytes; both stop the transfer
 * (returning short makes curl end it with CURLE_WRITE_ERROR). */
static int body_too_large(struct fetch *f) {
  f->err = FETCH_ETOOLARGE;
  snprintf(f->msg, sizeof f->msg, "response body larger than %zu bytes", f->max);
  return 0;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud) {
  struct fetch *f = ud;
  size_t len = size * n, take = len;
  if (f->body_len == 0 && f->clen >= 0 && !f->allow_truncated &&
      (unsigned long long)f->clen > f->max)
    return body_too_large(f);
  if (len > f->max - f->body_len) {
    if (!f->allow_truncated) return body_too_large(f);
    take = f->max - f->body_len;
    f->truncated = 1;
  }
  if (take && grow_body(f, f->body_len + take) != 0) goto nomem;
  if (take) memcpy(f->body + f->body_len, buf, take);
  f->body_len += take;
  return f->truncated ? 0 : len;
nomem:
  f->err = FETCH_ENOMEM;
  snprintf(f->msg, sizeof f->msg, "not enough memory for the response body");
  return 0;
}

static int add_bytes(struct fetch *f, const char *s, size_t n, int nul) {
  if (reserve(f, &f->hbuf, &f->hbuf_cap, f->hbuf_len, n + 1) != 0) return FETCH_ENOMEM;
  memcpy(f->hbuf + f->hbuf_len, s, n);
  f->hbuf_len += n;
  if (nul) f->hbuf[f->hbuf_len++] = '\0';
  return 0;
}

static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* One header line of some response (redirects and 1xx included): a status
 * line starts the collection over, so what is left at the end belongs to
 * the final response.  The end of a final response's header block checks
 * its Content-Length against the limit. */
static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
  struct fetch *f = ud;
  size_t len = size * n, l = len;
  while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r')) l--;
  if (l >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    const char *sp = memchr(buf, ' ', l);
    f->status = 0;
    for (const char *p = sp ? sp + 1 : buf + l; p < buf + l && isdigit((unsigned char)*p); p++)
      f->status = f->status * 10 + (*p - '0');
    f->hbuf_len = f->nh = 0;
    f->has_location = 0;
    f->clen = -1;
    f->body_len = 0;
    f->truncated = 0;
    return len;
  }
  if (memchr(buf, '\0', l)) return len;   /* a NUL has no place in a header: dropped */
  if (l == 0) {
    int redirect = f->status >= 300 && f->status < 400 && f->follow && f->has_location;
    if (f->status >= 200 && !redirect && f->clen >= 0 && !f->allow_truncated &&
        (unsigned long long)f->clen > f->max)
      return body_too_large(f);
    return len;
  }
  if (buf[0] == ' ' || buf[0] == '\t') {   /* obsolete line folding */
    const char *v = buf;
    size_t vl = l;
    trim(&v, &vl);
    if (f->nh == 0 || vl == 0) return len;
    f->hbuf_len--;                          /* reopen the last value */
    int empty = f->hbuf[f->hbuf_len - 1] == '\0';
    if ((!empty && add_bytes(f, " ", 1, 0) != 0) || add_bytes(f, v, vl, 1) != 0) goto nomem;
    return len;
  }
  const char *colon = memchr(buf, ':', l);
  if (!colon || colon == buf) return len;   /* not a header: ignored */
  const char *name = buf, *v = colon + 1;
  size_t nl = (size_t)(colon - buf), vl = l - nl - 1;
  trim(&name, &nl);
  trim(&v, &vl);
  size_t at = f->hbuf_len;
  if (add_bytes(f, name, nl, 1) != 0 || add_bytes(f, v, vl, 1) != 0) goto nomem;
  for (size_t i = 0; i < nl; i++) f->hbuf[at + i] = (char)tolower((unsigned char)f->hbuf[at + i]);
  f->nh++;
  if (nl == 8 && memcmp(f->hbuf + at, "location", 8) == 0) f->has_location = 1;
  if (nl == 14 && memcmp(f->hbuf + at, "content-length", 14) == 0) {
    char *end;
    long long cl = strtoll(f->hbuf + at + 15, &end, 10);
    f->clen = (*end == '\0' && cl >= 0 && vl > 0) ? cl : -1;
  }
  return len;
nomem:
  f->err = FETCH_ENOMEM;
  snprintf(f->msg, sizeof f->msg, "not enough memory for the response headers");
  return 0;
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

void fetch_finish(struct fetch *f, CURLcode rc, int err) {
  struct fetch_result r = {0};
  struct fetch_header *hs = NULL;
  size_t hs_size = 0;
  char *final_url = NULL;
  if (!err) err = f->err;
  if (!err && rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && f->truncated)) err = map_curl(rc);
  if (!err && f->nh) {
    hs_size = f->nh * sizeof *hs;
    if (!(hs = f->alloc(f->alloc_ud, NULL, 0, hs_size))) {
      err = FETCH_ENOMEM;
      snprintf(f->msg, sizeof f->msg, "not enough memory for the response headers");
    }
  }
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(f->easy, CURLINFO_EFFECTIVE_URL, &final_url);
  r.final_url = final_url ? final_url : "";
  r.error = err;
  if (err) {
    if (err == FETCH_ECANCELLED) r.message = "cancelled: the client was closed";
    else if (f->msg[0]) r.message = f->msg;
    else if (f->errbuf[0]) r.message = f->errbuf;
    else r.message = rc != CURLE_OK ? curl_easy_strerror(rc) : fetch_strerror(err);
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
  fetch_free(f);
}
