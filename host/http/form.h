/*
 * form: request bodies and cookies as spans.  Parses, in memory, an
 * application/x-www-form-urlencoded body, a multipart/form-data body
 * (RFC 7578 over RFC 2046) and a Cookie header (RFC 6265 §5.2/§4.2,
 * leniently, as browsers send it).  Knows no Lua and copies nothing:
 * every span it hands out points into the caller's input, which must stay
 * alive while the spans are used.  Nothing is allocated.  Pure functions;
 * any thread.
 *
 * Multipart is strict about structure and lenient about line ends: a
 * delimiter is "--" boundary at the start of the body or after CRLF (or a
 * bare LF), followed by optional spaces/tabs and then a line end (next
 * part) or "--" (the close delimiter).  The boundary text elsewhere (not
 * after a line end, or followed by anything else) is part body data.
 * Each part's header block ends at an empty line and is at most
 * FORM_MAX_HEADER_BLOCK bytes (the same cap as a request's header block).
 */
#ifndef LUAHOST_FORM_H
#define LUAHOST_FORM_H

#include <stddef.h>

#define FORM_MAX_HEADER_BLOCK (64 * 1024)
#define FORM_DEFAULT_MAX_PARTS 1000
#define FORM_MAX_BOUNDARY 200      /* RFC 2046 says 70; browsers stay well below */

/* Error codes (negative); form_strerror gives the message. */
enum {
  FORM_EBOUNDARY = -1,     /* no usable boundary parameter in Content-Type */
  FORM_ENOSTART = -2,      /* the body never opens with the boundary */
  FORM_EUNCLOSED = -3,     /* a part never ends: no later delimiter */
  FORM_ENOHEADERS = -4,    /* a part without headers */
  FORM_EHEADERBLOCK = -5,  /* a part's header block over FORM_MAX_HEADER_BLOCK */
  FORM_EHEADER = -6,       /* a part header line without ':' */
  FORM_ENODISPOSITION = -7,/* no Content-Disposition: form-data; name=... */
  FORM_ETOOMANY = -8,      /* more parts than the limit */
  FORM_ESTOPPED = -9,      /* the callback asked to stop */
};
const char *form_strerror(int err);

/* What a Content-Type announces. */
enum { FORM_OTHER, FORM_URLENCODED, FORM_MULTIPART };
int form_kind(const char *content_type, size_t n);

/* A parameter value as it appears on the wire (see form_param_decode):
 * RAW a token; QUOTED the inside of a quoted-string (\" and \\ still
 * escaped); EXT an RFC 8187 ext-value (charset'lang'%XX...). */
enum { FORM_ENC_RAW, FORM_ENC_QUOTED, FORM_ENC_EXT };
struct form_span {
  const char *p;     /* NULL when absent */
  size_t len;
  int enc;           /* FORM_ENC_* */
};

/* Decodes s into dst (room for s->len bytes): unescapes a QUOTED value,
 * percent-decodes an EXT value's text after its charset'lang' prefix.
 * Returns the length written. */
size_t form_param_decode(char *dst, const struct form_span *s);

/* The boundary parameter of a multipart Content-Type: 0, or FORM_EBOUNDARY
 * when it is missing, empty or longer than FORM_MAX_BOUNDARY.  A quoted
 * boundary is returned without its quotes (and must not hold escapes). */
int form_boundary(const char *content_type, size_t n, struct form_span *out);

/* One multipart part.  name and filename are parameters of the part's
 * Content-Disposition (filename*= wins over filename= when both are
 * there); content_type is the part's Content-Type value, trimmed (p NULL
 * when absent); body the part's bytes, exactly. */
struct form_part {
  struct form_span name;
  struct form_span filename;      /* p NULL: no filename, a plain field */
  struct form_span content_type;
  const char *body; size_t body_len;
};

struct form_limits {
  int max_parts;            /* 0: FORM_DEFAULT_MAX_PARTS */
};

/* Parses body[0..n) with the given boundary (without the leading "--"),
 * calling fn(ud, part) for each part in order.  fn returns 0 to go on,
 * anything else to stop (then FORM_ESTOPPED).  Returns the number of
 * parts, or a negative FORM_E* code; parts already delivered stay valid
 * either way.  The whole body is checked before the first call: a
 * malformed body delivers no part at all. */
int form_multipart_parse(const char *body, size_t n, const char *boundary, size_t blen,
                         const struct form_limits *lim,
                         int (*fn)(void *ud, const struct form_part *part), void *ud);

/* Calls fn for each raw "name=value" of an urlencoded body (the spans are
 * not yet decoded: url_decode them with plus_is_space). */
void form_urlencoded_each(const char *body, size_t n,
                          void (*fn)(void *ud, const char *k, size_t kl, const char *v,
                                     size_t vl),
                          void *ud);

/* Calls fn for each cookie of a Cookie header value, in order: pairs are
 * split on ';', spaces and tabs around names and values are trimmed, a
 * value in double quotes loses its quotes, a pair without '=' or with an
 * empty name is skipped.  Values are not percent-decoded.  When a name
 * repeats, the caller decides (the host keeps the last, as
 * lua-resty-cookie does). */
void form_cookies_each(const char *s, size_t n,
                       void (*fn)(void *ud, const char *name, size_t nl, const char *value,
                                  size_t vl),
                       void *ud);

#endif
