/* response: status line, headers and body into one buffer. */
#include "http/response.h"

#include <stdio.h>
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
    case 204: return "No Content";
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
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
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

/* Headers that the host writes itself and so drops from the handler's. */
static int host_owned(const struct http_header *h) {
  return (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0) ||
         (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0) ||
         (h->name_len == 10 && strncasecmp(h->name, "connection", 10) == 0) ||
         (h->name_len == 12 && strncasecmp(h->name, "x-request-id", 12) == 0);
}

int http_format_head(struct rbuf *b, const struct http_head *h) {
  char line[160];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", h->status,
                   http_reason(h->status));
  if (rbuf_append(b, line, (size_t)n) < 0) return -1;
  for (int i = 0; i < h->nheaders; i++) {
    const struct http_header *x = &h->headers[i];
    if (host_owned(x)) continue;
    if (rbuf_reserve(b, x->name_len + x->value_len + 4) < 0) return -1;
    memcpy(b->p + b->len, x->name, x->name_len);
    b->len += x->name_len;
    b->p[b->len++] = ':';
    b->p[b->len++] = ' ';
    memcpy(b->p + b->len, x->value, x->value_len);
    b->len += x->value_len;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
  }
  if (http_status_bodiless(h->status))
    n = snprintf(line, sizeof line, "Date: %s\r\nx-request-id: %s\r\n",
                 clock_http_date(), h->request_id);
  else
    n = snprintf(line, sizeof line,
                 "Content-Length: %zu\r\nDate: %s\r\nx-request-id: %s\r\n",
                 h->content_length, clock_http_date(), h->request_id);
  if (rbuf_append(b, line, (size_t)n) < 0) return -1;
  if (h->close && rbuf_append(b, "Connection: close\r\n", 19) < 0) return -1;
  if (!h->close && h->keep_alive_10 &&
      rbuf_append(b, "Connection: keep-alive\r\n", 24) < 0)
    return -1;
  return rbuf_append(b, "\r\n", 2);
}
