/* form: urlencoded and multipart bodies, Cookie headers, as spans. */
#include "http/form.h"

#include <string.h>
#include <strings.h>

#include "http/url.h"

const char *form_strerror(int err) {
  switch (err) {
    case FORM_EBOUNDARY: return "multipart body without a usable boundary in its Content-Type";
    case FORM_ENOSTART: return "multipart body never opens with its boundary";
    case FORM_EUNCLOSED: return "multipart boundary never closed";
    case FORM_ENOHEADERS: return "multipart part without headers";
    case FORM_EHEADERBLOCK: return "multipart part header block over 64 KiB";
    case FORM_EHEADER: return "malformed multipart part header (a line without ':')";
    case FORM_ENODISPOSITION:
      return "multipart part without Content-Disposition: form-data; name=...";
    case FORM_ETOOMANY: return "too many multipart parts";
    case FORM_ESTOPPED: return "stopped";
    default: return "unknown form error";
  }
}

static int is_ws(char c) { return c == ' ' || c == '\t'; }

/* Trims spaces and tabs on both sides of [*p, *p + *n). */
static void trim(const char **p, size_t *n) {
  while (*n && is_ws(**p)) { (*p)++; (*n)--; }
  while (*n && is_ws((*p)[*n - 1])) (*n)--;
}

static int eq_nocase(const char *p, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

int form_kind(const char *ct, size_t n) {
  size_t i = 0, j;
  while (i < n && is_ws(ct[i])) i++;
  for (j = i; j < n && ct[j] != ';' && !is_ws(ct[j]); j++) {}
  if (eq_nocase(ct + i, j - i, "application/x-www-form-urlencoded")) return FORM_URLENCODED;
  if (eq_nocase(ct + i, j - i, "multipart/form-data")) return FORM_MULTIPART;
  return FORM_OTHER;
}

/* ---- header parameters (Content-Type, Content-Disposition) ------------- */

/* Walks the "; name=value" parameters after the first ';' of s.  Calls
 * fn(ud, name, nl, value) for each; values are spans as form.h says. */
static void params_each(const char *s, size_t n,
                        void (*fn)(void *ud, const char *k, size_t kl,
                                   const struct form_span *v),
                        void *ud) {
  const char *semi = memchr(s, ';', n);
  if (!semi) return;
  size_t i = (size_t)(semi - s) + 1;
  while (i < n) {
    while (i < n && (is_ws(s[i]) || s[i] == ';')) i++;
    size_t k0 = i;
    while (i < n && s[i] != '=' && s[i] != ';') i++;
    const char *k = s + k0;
    size_t kl = i - k0;
    trim(&k, &kl);
    if (i >= n || s[i] == ';') continue;   /* a parameter without '=': skipped */
    i++;                                    /* '=' */
    while (i < n && is_ws(s[i])) i++;
    struct form_span v = {s + i, 0, FORM_ENC_RAW};
    if (i < n && s[i] == '"') {
      size_t v0 = ++i;
      while (i < n && s[i] != '"') i += (s[i] == '\\' && i + 1 < n) ? 2 : 1;
      if (i > n) i = n;
      v = (struct form_span){s + v0, i - v0, FORM_ENC_QUOTED};
      if (i < n) i++;                       /* closing quote */
      while (i < n && s[i] != ';') i++;     /* junk after the quotes */
    } else {
      size_t v0 = i;
      while (i < n && s[i] != ';') i++;
      const char *vp = s + v0;
      size_t vl = i - v0;
      trim(&vp, &vl);
      v = (struct form_span){vp, vl, FORM_ENC_RAW};
    }
    if (kl && k[kl - 1] == '*') v.enc = FORM_ENC_EXT;
    fn(ud, k, kl, &v);
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = (char)(c | 0x20);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

size_t form_param_decode(char *dst, const struct form_span *s) {
  size_t j = 0;
  if (!s->p) return 0;
  if (s->enc == FORM_ENC_QUOTED) {
    for (size_t i = 0; i < s->len; i++) {
      if (s->p[i] == '\\' && i + 1 < s->len && (s->p[i + 1] == '"' || s->p[i + 1] == '\\'))
        i++;
      dst[j++] = s->p[i];
    }
    return j;
  }
  if (s->enc == FORM_ENC_EXT) {
    /* charset'language'value: the value is what follows the second quote */
    const char *p = s->p, *end = s->p + s->len;
    const char *q1 = memchr(p, '\'', s->len);
    const char *q2 = q1 ? memchr(q1 + 1, '\'', (size_t)(end - q1 - 1)) : NULL;
    if (q2) p = q2 + 1;
    for (; p < end; p++) {
      int hi, lo;
      if (*p == '%' && end - p >= 3 && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
        dst[j++] = (char)(hi << 4 | lo);
        p += 2;
      } else {
        dst[j++] = *p;
      }
    }
    return j;
  }
  memcpy(dst, s->p, s->len);
  return s->len;
}

static void boundary_param(void *ud, const char *k, size_t kl, const struct form_span *v) {
  if (eq_nocase(k, kl, "boundary")) *(struct form_span *)ud = *v;
}

int form_boundary(const char *ct, size_t n, struct form_span *out) {
  struct form_span b = {NULL, 0, FORM_ENC_RAW};
  params_each(ct, n, boundary_param, &b);
  if (!b.p || b.len == 0 || b.len > FORM_MAX_BOUNDARY) return FORM_EBOUNDARY;
  if (b.enc == FORM_ENC_QUOTED && memchr(b.p, '\\', b.len)) return FORM_EBOUNDARY;
  b.enc = FORM_ENC_RAW;
  *out = b;
  return 0;
}

/* ---- multipart ---------------------------------------------------------- */

struct delim {
  const char *needle; size_t nlen;   /* "\n--" boundary */
};

/* Checks what follows a "--boundary" ending at e: optional padding, then
 * "--" (close: *closed = 1) or a line end.  *next = where the next part's
 * headers (or the epilogue) start.  1 if it is a delimiter, else 0. */
static int delim_tail(const char *b, size_t n, size_t e, size_t *next, int *closed) {
  while (e < n && is_ws(b[e])) e++;
  if (e + 1 < n && b[e] == '-' && b[e + 1] == '-') { *closed = 1; *next = e + 2; return 1; }
  if (e + 1 < n && b[e] == '\r' && b[e + 1] == '\n') { *closed = 0; *next = e + 2; return 1; }
  if (e < n && b[e] == '\n') { *closed = 0; *next = e + 1; return 1; }
  return 0;
}

/* The next delimiter at or after from: *at = its '\n'.  1 found, 0 not. */
static int find_delim(const char *b, size_t n, size_t from, const struct delim *d, size_t *at,
                      size_t *next, int *closed) {
  while (from < n) {
    const char *p = memmem(b + from, n - from, d->needle, d->nlen);
    if (!p) return 0;
    size_t k = (size_t)(p - b);
    if (delim_tail(b, n, k + d->nlen, next, closed)) { *at = k; return 1; }
    from = k + 1;
  }
  return 0;
}

struct disp { struct form_span name, filename, filename_ext; };

static void disp_param(void *ud, const char *k, size_t kl, const struct form_span *v) {
  struct disp *d = ud;
  if (eq_nocase(k, kl, "name")) d->name = *v;
  else if (eq_nocase(k, kl, "filename")) d->filename = *v;
  else if (eq_nocase(k, kl, "filename*")) d->filename_ext = *v;
}

/* Parses the header block starting at *pos into part; *pos = the first
 * body byte.  0 or a FORM_E* code. */
static int part_headers(const char *b, size_t n, size_t *pos, const struct delim *d,
                        struct form_part *part) {
  size_t i = *pos, used = 0;
  int has_disp = 0, lines = 0;
  memset(part, 0, sizeof *part);
  for (;;) {
    size_t room = n - i, cap = FORM_MAX_HEADER_BLOCK - used;
    const char *nl = memchr(b + i, '\n', room < cap ? room : cap);
    if (!nl) return room >= cap ? FORM_EHEADERBLOCK : FORM_EUNCLOSED;
    size_t len = (size_t)(nl - (b + i)), adv = len + 1;
    used += adv;
    const char *line = b + i;
    if (len && line[len - 1] == '\r') len--;
    i += adv;
    if (len == 0) {   /* the empty line that ends the block */
      if (lines == 0) return FORM_ENOHEADERS;
      break;
    }
    /* a delimiter where a header line should be: the block never ended */
    if (len >= d->nlen - 1 && memcmp(line, d->needle + 1, d->nlen - 1) == 0)
      return FORM_ENOHEADERS;
    lines++;
    if (is_ws(line[0])) continue;   /* obsolete line folding: ignored */
    const char *colon = memchr(line, ':', len);
    if (!colon) return FORM_EHEADER;
    const char *name = line, *val = colon + 1;
    size_t name_len = (size_t)(colon - line), vl = len - name_len - 1;
    trim(&name, &name_len);
    trim(&val, &vl);
    if (eq_nocase(name, name_len, "content-disposition")) {
      struct disp ds = {{NULL, 0, 0}, {NULL, 0, 0}, {NULL, 0, 0}};
      params_each(val, vl, disp_param, &ds);
      if (!ds.name.p) return FORM_ENODISPOSITION;
      has_disp = 1;
      part->name = ds.name;
      part->filename = ds.filename_ext.p ? ds.filename_ext : ds.filename;
    } else if (eq_nocase(name, name_len, "content-type")) {
      part->content_type = (struct form_span){val, vl, FORM_ENC_RAW};
    }
  }
  if (!has_disp) return FORM_ENODISPOSITION;
  *pos = i;
  return 0;
}

/* One pass over the body: with fn NULL it only checks. */
static int walk(const char *b, size_t n, const struct delim *d, int max_parts,
                int (*fn)(void *, const struct form_part *), void *ud) {
  size_t next = 0, at;
  int closed = 0, count = 0;
  /* the first delimiter: at the very start, or after a line end */
  if (!(n >= d->nlen - 1 && memcmp(b, d->needle + 1, d->nlen - 1) == 0 &&
        delim_tail(b, n, d->nlen - 1, &next, &closed)) &&
      !find_delim(b, n, 0, d, &at, &next, &closed))
    return FORM_ENOSTART;
  while (!closed) {
    struct form_part part;
    if (++count > max_parts) return FORM_ETOOMANY;
    size_t pos = next;
    int rc = part_headers(b, n, &pos, d, &part);
    if (rc < 0) return rc;
    /* the line end before a delimiter belongs to it (even for an empty
     * body: the header block's blank line is not shared) */
    if (!find_delim(b, n, pos, d, &at, &next, &closed)) return FORM_EUNCLOSED;
    size_t end = at;
    if (end > pos && b[end - 1] == '\r') end--;
    part.body = b + pos;
    part.body_len = end - pos;
    if (fn && fn(ud, &part)) return FORM_ESTOPPED;
  }
  return count;
}

int form_multipart_parse(const char *body, size_t n, const char *boundary, size_t blen,
                         const struct form_limits *lim,
                         int (*fn)(void *ud, const struct form_part *part), void *ud) {
  char needle[FORM_MAX_BOUNDARY + 3];
  if (blen == 0 || blen > FORM_MAX_BOUNDARY) return FORM_EBOUNDARY;
  memcpy(needle, "\n--", 3);
  memcpy(needle + 3, boundary, blen);
  struct delim d = {needle, blen + 3};
  int max_parts = lim && lim->max_parts > 0 ? lim->max_parts : FORM_DEFAULT_MAX_PARTS;
  int rc = walk(body, n, &d, max_parts, NULL, NULL);
  if (rc <= 0 || !fn) return rc;
  return walk(body, n, &d, max_parts, fn, ud);
}

/* ---- urlencoded and cookies --------------------------------------------- */

void form_urlencoded_each(const char *body, size_t n,
                          void (*fn)(void *, const char *, size_t, const char *, size_t),
                          void *ud) {
  url_query_each(body, n, fn, ud);
}

void form_cookies_each(const char *s, size_t n,
                       void (*fn)(void *, const char *, size_t, const char *, size_t),
                       void *ud) {
  size_t i = 0;
  while (i < n) {
    const char *pair = s + i;
    const char *semi = memchr(pair, ';', n - i);
    size_t len = semi ? (size_t)(semi - pair) : n - i;
    i += len + 1;
    const char *eq = memchr(pair, '=', len);
    if (!eq) continue;
    const char *name = pair, *val = eq + 1;
    size_t nl = (size_t)(eq - pair), vl = len - nl - 1;
    trim(&name, &nl);
    trim(&val, &vl);
    if (nl == 0) continue;
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') { val++; vl -= 2; }
    fn(ud, name, nl, val, vl);
  }
}
