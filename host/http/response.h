/*
 * response: serialises a response head and body into one buffer.
 * Pure functions over caller-owned memory; any thread.
 */
#ifndef LUAHOST_RESPONSE_H
#define LUAHOST_RESPONSE_H

#include <stddef.h>

#include "http/http.h"

struct rbuf { char *p; size_t len, cap; };   /* growable byte buffer */

int rbuf_reserve(struct rbuf *b, size_t extra);            /* 0 or -1 */
int rbuf_append(struct rbuf *b, const void *p, size_t n);  /* 0 or -1 */
void rbuf_free(struct rbuf *b);

const char *http_reason(int status);
/* Whether a response with this status carries no body (1xx, 204, 304). */
int http_status_bodiless(int status);
/* 1 when name is an HTTP token and value has no CR, LF or NUL. */
int http_header_valid(const struct http_header *h);
/* 1 for a header the host writes itself and so drops from a handler's
 * (Content-Length, Transfer-Encoding, Connection, x-request-id, Date). */
int http_host_owned(const struct http_header *h);
/* The body of the answer to a request the host refused before it was
 * dispatched (400, 413, 431, 505): static text ending in a newline. */
const char *http_refusal_text(int status);

struct http_head {
  int status;
  const struct http_header *headers; int nheaders;
  size_t content_length;
  const char *request_id;
  int close;            /* add "Connection: close" */
  int keep_alive_10;    /* HTTP/1.0 keep-alive: add "Connection: keep-alive" */
};

/* Appends the status line and headers (ending with the blank line) to b.
 * Returns 0, or -1 when out of memory.  Invalid user headers are skipped
 * by the caller (see http_header_valid).  Each entry of headers is one
 * line, in order, so a name may repeat (Set-Cookie).  A bodiless status
 * (1xx, 204, 304) gets neither Content-Length nor Content-Type (a
 * Content-Type in headers is dropped); any other gets Content-Length:
 * content_length, also when answering HEAD (the length of the body a GET
 * would get; the caller then sends no body). */
int http_format_head(struct rbuf *b, const struct http_head *h);

#endif
