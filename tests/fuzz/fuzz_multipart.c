/*
 * fuzz_multipart: the form parsers of host/http/form.c.
 *
 * Byte 0 chooses the mode.
 * - Even: raw.  Byte 1 % 72 = L, byte 2 = max_parts (0: the default),
 *   then L boundary bytes (L = 0: the boundary "b"), then the body.
 *   form_multipart_parse must not crash, must return a count or one of
 *   the FORM_E* codes, call back exactly count times, and hand out only
 *   spans that lie inside the body; form_param_decode never grows a span.
 *   The whole input is also given to form_kind, form_boundary (the
 *   boundary span lies inside it) and form_cookies_each (names non-empty,
 *   trimmed, without ';' or '='; spans inside the input).
 * - Odd: oracle.  The bytes describe up to 16 parts (a name, maybe a
 *   filename sent as filename= or filename*=, maybe a Content-Type, a
 *   body) and a boundary; a reference encoder writes the body as a client
 *   would (CRLF or bare LF, either header case, a preamble or none); the
 *   parser must give back exactly those parts, in order, and with
 *   max_parts one short of the count it must refuse with FORM_ETOOMANY.
 *   Inputs whose bodies hold "\n--boundary" (which RFC 2046 forbids) are
 *   skipped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/form.h"

#define FUZZ_MAX_INPUT (64 * 1024)
#define MAX_PARTS 16

/* the body the oracle encoded, shown when a check fails */
static const char *encoded;
static size_t encoded_len;

#define FUZZ_NAME "fuzz_multipart"
#define FUZZ_ON_FAIL() dump_encoded()
static void dump_encoded(void);
#include "fuzz_check.h"

static void dump_encoded(void) {
  if (!encoded) return;
  fprintf(stderr, "--- encoded body (%zu bytes, C escapes) ---\n", encoded_len);
  for (size_t i = 0; i < encoded_len; i++) {
    unsigned char c = (unsigned char)encoded[i];
    if (c == '\n') fputs("\\n\n", stderr);
    else if (c >= 0x20 && c < 0x7f && c != '\\') fputc(c, stderr);
    else fprintf(stderr, "\\x%02x", c);
  }
  fputs("\n---\n", stderr);
}

/* ---- raw mode ----------------------------------------------------------- */

struct raw { const char *in; size_t n; int calls; };

static void check_inside(const struct raw *r, const char *p, size_t n, const char *what) {
  if (!n) return;
  CHECK(p >= r->in && p + n <= r->in + r->n, "%s span outside the input", what);
}

static void check_param(const struct raw *r, const struct form_span *s, const char *what) {
  if (!s->p) return;
  check_inside(r, s->p, s->len, what);
  char *tmp = malloc(s->len + 1);
  CHECK(tmp, "malloc");
  size_t m = form_param_decode(tmp, s);
  CHECK(m <= s->len, "%s decoded to %zu bytes from %zu", what, m, s->len);
  free(tmp);
}

static int raw_part(void *ud, const struct form_part *p) {
  struct raw *r = ud;
  r->calls++;
  CHECK(p->name.p != NULL, "a part without a name was delivered");
  check_param(r, &p->name, "name");
  check_param(r, &p->filename, "filename");
  check_param(r, &p->content_type, "content_type");
  check_inside(r, p->body, p->body_len, "body");
  return 0;
}

static void raw_cookie(void *ud, const char *k, size_t kl, const char *v, size_t vl) {
  struct raw *r = ud;
  check_inside(r, k, kl, "cookie name");
  check_inside(r, v, vl, "cookie value");
  CHECK(kl > 0, "empty cookie name");
  CHECK(k[0] != ' ' && k[0] != '\t' && k[kl - 1] != ' ' && k[kl - 1] != '\t',
        "untrimmed cookie name");
  CHECK(!memchr(k, ';', kl) && !memchr(k, '=', kl), "cookie name holds ';' or '='");
  CHECK(!memchr(v, ';', vl), "cookie value holds ';'");
}

static void raw_mode(const uint8_t *d, size_t size) {
  if (size < 3) return;
  size_t bl = d[1] % 72;
  int max_parts = d[2];
  if (size < 3 + bl) return;
  const char *bd = bl ? (const char *)d + 3 : "b";
  const char *body = (const char *)d + 3 + bl;
  size_t n = size - 3 - bl;
  if (!bl) bl = 1;
  struct raw r = {body, n, 0};
  struct form_limits lim = {max_parts};
  int rc = form_multipart_parse(body, n, bd, bl, &lim, raw_part, &r);
  CHECK(rc >= FORM_ETOOMANY, "unknown code %d", rc);
  CHECK(rc < 0 || rc == r.calls, "returned %d after %d calls", rc, r.calls);
  CHECK(rc >= 0 || r.calls == 0, "error %d after %d calls", rc, r.calls);
  CHECK(rc <= (max_parts ? max_parts : FORM_DEFAULT_MAX_PARTS), "%d parts over the limit", rc);
  CHECK(form_multipart_parse(body, n, bd, bl, &lim, NULL, NULL) == rc,
        "checking alone gives another answer");

  struct raw all = {(const char *)d, size, 0};
  int kind = form_kind(all.in, size);
  CHECK(kind == FORM_OTHER || kind == FORM_URLENCODED || kind == FORM_MULTIPART, "kind %d", kind);
  struct form_span b;
  if (form_boundary(all.in, size, &b) == 0) {
    CHECK(b.len > 0 && b.len <= FORM_MAX_BOUNDARY, "boundary length %zu", b.len);
    check_inside(&all, b.p, b.len, "boundary");
  }
  form_cookies_each(all.in, size, raw_cookie, &all);
}

/* ---- oracle mode -------------------------------------------------------- */

struct rd { const uint8_t *p; size_t n, i; };
static uint8_t byte(struct rd *r) { return r->i < r->n ? r->p[r->i++] : 0; }

/* A string of up to max bytes from the input; bytes in `banned` become 'x'. */
static size_t str(struct rd *r, char *out, size_t max, const char *banned) {
  size_t len = byte(r) % (max + 1);
  for (size_t i = 0; i < len; i++) {
    char c = (char)byte(r);
    out[i] = (c == '\0' || !strchr(banned, c)) ? c : 'x';
  }
  return len;
}

struct spec {
  char name[32]; size_t name_len;
  int has_file, file_ext;
  char file[32]; size_t file_len;
  int has_type;
  char type[24]; size_t type_len;
  char body[256]; size_t body_len;
};

struct out { char *p; size_t n, cap; };
static void emit(struct out *o, const void *p, size_t n) {
  if (o->n + n > o->cap) {
    o->cap = (o->n + n) * 2 + 256;
    o->p = realloc(o->p, o->cap);
    CHECK(o->p, "realloc");
  }
  memcpy(o->p + o->n, p, n);
  o->n += n;
}
static void emits(struct out *o, const char *s) { emit(o, s, strlen(s)); }

/* A quoted-string: '"' and '\' escaped with '\'. */
static void emit_quoted(struct out *o, const char *s, size_t n) {
  emits(o, "\"");
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') emits(o, "\\");
    emit(o, s + i, 1);
  }
  emits(o, "\"");
}

static void emit_ext(struct out *o, const char *s, size_t n) {
  emits(o, "UTF-8''");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      emit(o, s + i, 1);
    } else {
      char hex[4];
      snprintf(hex, sizeof hex, "%%%02X", c);
      emits(o, hex);
    }
  }
}

struct got { const struct spec *want; int nwant, i; };

static int same(const struct form_span *s, const char *want, size_t wl) {
  char tmp[512];
  if (!s->p || s->len > sizeof tmp) return 0;
  size_t m = form_param_decode(tmp, s);
  return m == wl && memcmp(tmp, want, wl) == 0;
}

static int oracle_part(void *ud, const struct form_part *p) {
  struct got *g = ud;
  CHECK(g->i < g->nwant, "more parts than encoded (%d)", g->nwant);
  const struct spec *w = &g->want[g->i];
  CHECK(same(&p->name, w->name, w->name_len), "part %d: name differs", g->i);
  CHECK(!!p->filename.p == w->has_file, "part %d: filename presence", g->i);
  CHECK(!w->has_file || same(&p->filename, w->file, w->file_len), "part %d: filename", g->i);
  CHECK(!!p->content_type.p == w->has_type, "part %d: content_type presence", g->i);
  CHECK(!w->has_type || same(&p->content_type, w->type, w->type_len), "part %d: type", g->i);
  CHECK(p->body_len == w->body_len && memcmp(p->body, w->body, w->body_len) == 0,
        "part %d: body of %zu bytes, want %zu", g->i, p->body_len, w->body_len);
  g->i++;
  return 0;
}

static const char bchars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?";

static void oracle_mode(const uint8_t *d, size_t size) {
  struct rd r = {d, size, 1};
  uint8_t flags = byte(&r);
  int lf = flags & 1, lower = flags & 2, preamble = flags & 4;
  char bd[71];
  size_t bl = 1 + byte(&r) % 70;
  for (size_t i = 0; i < bl; i++) bd[i] = bchars[byte(&r) % (sizeof bchars - 1)];
  int nparts = byte(&r) % (MAX_PARTS + 1);
  struct spec *sp = calloc(MAX_PARTS, sizeof *sp);
  CHECK(sp, "calloc");
  char needle[80] = "\n--";
  memcpy(needle + 3, bd, bl);
  for (int i = 0; i < nparts; i++) {
    struct spec *s = &sp[i];
    s->name_len = str(&r, s->name, sizeof s->name, "\r\n");
    uint8_t f = byte(&r);
    s->has_file = f & 1;
    s->file_ext = !!(f & 2);
    s->has_type = !!(f & 4);
    if (s->has_file) s->file_len = str(&r, s->file, sizeof s->file, "\r\n");
    if (s->has_type) {
      s->type_len = 1 + byte(&r) % (sizeof s->type - 1);
      for (size_t k = 0; k < s->type_len; k++) s->type[k] = (char)(0x21 + byte(&r) % 94);
    }
    s->body_len = str(&r, s->body, sizeof s->body, "");
    if (memmem(s->body, s->body_len, needle, bl + 3) ||
        (lf && s->body_len && s->body[s->body_len - 1] == '\r'))
      goto done;   /* not a body a client may send with this boundary */
  }

  const char *eol = lf ? "\n" : "\r\n";
  struct out o = {NULL, 0, 0};
  if (preamble) { emits(&o, "preamble -- text"); emits(&o, eol); }
  for (int i = 0; i < nparts; i++) {
    const struct spec *s = &sp[i];
    emits(&o, "--");
    emit(&o, bd, bl);
    emits(&o, eol);
    emits(&o, lower ? "content-disposition: form-data; name=" : "Content-Disposition: form-data; name=");
    emit_quoted(&o, s->name, s->name_len);
    if (s->has_file) {
      if (s->file_ext) {
        emits(&o, "; filename=\"fallback\"; filename*=");
        emit_ext(&o, s->file, s->file_len);
      } else {
        emits(&o, "; filename=");
        emit_quoted(&o, s->file, s->file_len);
      }
    }
    emits(&o, eol);
    if (s->has_type) {
      emits(&o, lower ? "content-type: " : "Content-Type: ");
      emit(&o, s->type, s->type_len);
      emits(&o, eol);
    }
    emits(&o, eol);
    emit(&o, s->body, s->body_len);
    emits(&o, eol);
  }
  emits(&o, "--");
  emit(&o, bd, bl);
  emits(&o, "--");
  emits(&o, eol);

  encoded = o.p;
  encoded_len = o.n;
  struct got g = {sp, nparts, 0};
  struct form_limits lim = {MAX_PARTS};
  int rc = form_multipart_parse(o.p, o.n, bd, bl, &lim, oracle_part, &g);
  CHECK(rc == nparts, "parsed %d (%s), encoded %d", rc, rc < 0 ? form_strerror(rc) : "ok",
        nparts);
  CHECK(g.i == nparts, "delivered %d of %d", g.i, nparts);
  if (nparts > 1) {
    lim.max_parts = nparts - 1;
    rc = form_multipart_parse(o.p, o.n, bd, bl, &lim, NULL, NULL);
    CHECK(rc == FORM_ETOOMANY, "max_parts %d of %d: got %d", nparts - 1, nparts, rc);
  }
  encoded = NULL;
  free(o.p);
done:
  free(sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > FUZZ_MAX_INPUT) return -1;
  if (data[0] & 1) oracle_mode(data, size);
  else raw_mode(data, size);
  return 0;
}
