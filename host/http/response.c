/* response: status line, headers and body into one buffer. */
#include "http/response.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"

int rbuf_reserve(struct rbuf *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

int rbuf_append(struct rbuf *b, const void *p, size_t n) {
  if (rbuf_reserve(b, n) < 0) return -1;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

void rbuf_free(struct rbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

const char *http_reason(int s) {
  switch (s) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 418: return "I'm a teapot";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return s < 300 ? "OK" : s < 400 ? "Redirect" : s < 500 ? "Client Error"
                                                                  : "Server Error";
  }
}

int http_status_bodiless(int s) { return (s >= 100 && s < 200) || s == 204 || s == 304; }

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

int http_header_valid(const struct http_header *h) {
  if (h->name_len == 0) return 0;
  for (size_t i = 0; i < h->name_len; i++)
    if (!is_tchar((unsigned char)h->name[i])) return 0;
  for (size_t i = 0; i < h->value_len; i++) {
    char c = h->value[i];
    if (c == '\r' || c == '\n' || c == '\0') return 0;
  }
  return 1;
}

const char *http_refusal_text(int status) {
  return status == 413   ? "request body too large\n"
         : status == 431 ? "request header block too large\n"
         : status == 505 ? "HTTP version not supported (HTTP/1.0 and 1.1 are)\n"
                         : "malformed request\n";
}

int http_host_owned(const struct http_header *h) {
  return (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0) ||
         (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0) ||
         (h->name_len == 10 && strncasecmp(h->name, "connection", 10) == 0) ||
         (h->name_len == 12 && strncasecmp(h->name, "x-request-id", 12) == 0) ||
         (h->name_len == 4 && strncasecmp(h->name, "date", 4) == 0);
}

/* What a bodiless response (1xx, 204, 304) never carries: no body, so
 * no type either. */
static int body_header(const struct http_header *h) {
  return h->name_len == 12 && strncasecmp(h->name, "content-type", 12) == 0;
}

/* Appends the decimal digits of v. */
static char *put_uint(char *p, size_t v) {
  char tmp[24];
  int n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

static char *put_str(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}
#define PUT_LIT(p, lit) put_str(p, lit, sizeof(lit) - 1)

int http_format_head(struct rbuf *b, const struct http_head *h) {
  /* One reservation for the fixed part; user headers add their own. */
  const char *reason = http_reason(h->status);
  size_t rlen = strlen(reason), idlen = strlen(h->request_id);
  if (rbuf_reserve(b, 64 + rlen) < 0) return -1;
  char *p = b->p + b->len;
  p = PUT_LIT(p, "HTTP/1.1 ");
  p = put_uint(p, (size_t)h->status);
  *p++ = ' ';
  p = put_str(p, reason, rlen);
  p = PUT_LIT(p, "\r\n");
  b->len = (size_t)(p - b->p);
  int bodiless = http_status_bodiless(h->status);
  for (int i = 0; i < h->nheaders; i++) {   /* repeated names: one line each */
    const struct http_header *x = &h->headers[i];
    if (http_host_owned(x) || (bodiless && body_header(x))) continue;
    if (rbuf_reserve(b, x->name_len + x->value_len + 4) < 0) return -1;
    p = b->p + b->len;
    p = put_str(p, x->name, x->name_len);
    p = PUT_LIT(p, ": ");
    p = put_str(p, x->value, x->value_len);
    p = PUT_LIT(p, "\r\n");
    b->len = (size_t)(p - b->p);
  }
  if (rbuf_reserve(b, 160 + idlen) < 0) return -1;
  p = b->p + b->len;
  if (!bodiless) {
    p = PUT_LIT(p, "Content-Length: ");
    p = put_uint(p, h->content_length);
    p = PUT_LIT(p, "\r\n");
  }
  p = PUT_LIT(p, "Date: ");
  p = put_str(p, clock_http_date(), 29);
  p = PUT_LIT(p, "\r\nx-request-id: ");
  p = put_str(p, h->request_id, idlen);
  p = PUT_LIT(p, "\r\n");
  if (h->close) p = PUT_LIT(p, "Connection: close\r\n");
  else if (h->keep_alive_10) p = PUT_LIT(p, "Connection: keep-alive\r\n");
  p = PUT_LIT(p, "\r\n");
  b->len = (size_t)(p - b->p);
  return 0;
}
