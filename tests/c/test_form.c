/* form: urlencoded, multipart and Cookie parsing, hostile inputs included. */
#include "http/form.h"
#include "runner.h"

/* Every part as "[name|filename|type|body]" (absent values as "-"), with
 * the spans checked to lie inside the input. */
struct seen {
  const char *in; size_t inlen;
  char *buf; size_t n, cap;
  int calls, stop_after;
};

static void put(struct seen *s, const char *p, size_t n) {
  if (s->n + n + 1 > s->cap) {
    s->cap = (s->n + n + 1) * 2;
    s->buf = realloc(s->buf, s->cap);
    ASSERT(s->buf);
  }
  memcpy(s->buf + s->n, p, n);
  s->n += n;
  s->buf[s->n] = '\0';
}

static void inside(const struct seen *s, const char *p, size_t n) {
  if (n) ASSERT(p >= s->in && p + n <= s->in + s->inlen);
}

static void put_span(struct seen *s, const struct form_span *sp) {
  if (!sp->p) { put(s, "-", 1); return; }
  inside(s, sp->p, sp->len);
  char tmp[512];
  ASSERT(sp->len <= sizeof tmp);
  put(s, tmp, form_param_decode(tmp, sp));
}

static int on_part(void *ud, const struct form_part *p) {
  struct seen *s = ud;
  put(s, "[", 1);
  put_span(s, &p->name);
  put(s, "|", 1);
  put_span(s, &p->filename);
  put(s, "|", 1);
  put_span(s, &p->content_type);
  put(s, "|", 1);
  inside(s, p->body, p->body_len);
  put(s, p->body, p->body_len);
  put(s, "]", 1);
  s->calls++;
  return s->stop_after && s->calls >= s->stop_after;
}

/* Parses body with boundary; returns the code, *out the parts seen. */
static int parse_lim(const char *body, size_t n, const char *bd, int max_parts, char **out,
                     int *calls) {
  struct seen s = {body, n, NULL, 0, 0, 0, 0};
  put(&s, "", 0);
  struct form_limits lim = {max_parts};
  int rc = form_multipart_parse(body, n, bd, strlen(bd), &lim, on_part, &s);
  *out = s.buf;
  if (calls) *calls = s.calls;
  return rc;
}

static int parse(const char *body, const char *bd, char **out) {
  return parse_lim(body, strlen(body), bd, 0, out, NULL);
}

#define EXPECT_PARTS(body, bd, rc, want)       \
  do {                                         \
    char *got_;                                \
    ASSERT_INT_EQ(parse(body, bd, &got_), rc); \
    ASSERT_STR_EQ(got_, want);                 \
    free(got_);                                \
  } while (0)

TEST(kind) {
  const char *u = "application/x-www-form-urlencoded";
  ASSERT_INT_EQ(form_kind(u, strlen(u)), FORM_URLENCODED);
  u = "Application/X-WWW-Form-URLEncoded; charset=UTF-8";
  ASSERT_INT_EQ(form_kind(u, strlen(u)), FORM_URLENCODED);
  u = " multipart/form-data; boundary=x";
  ASSERT_INT_EQ(form_kind(u, strlen(u)), FORM_MULTIPART);
  u = "multipart/form-datax; boundary=x";
  ASSERT_INT_EQ(form_kind(u, strlen(u)), FORM_OTHER);
  u = "application/json";
  ASSERT_INT_EQ(form_kind(u, strlen(u)), FORM_OTHER);
  ASSERT_INT_EQ(form_kind("", 0), FORM_OTHER);
}

static const char *boundary_of(const char *ct) {
  static char out[300];
  struct form_span b;
  if (form_boundary(ct, strlen(ct), &b) < 0) return NULL;
  memcpy(out, b.p, b.len);
  out[b.len] = '\0';
  return out;
}

TEST(boundary_param) {
  ASSERT_STR_EQ(boundary_of("multipart/form-data; boundary=abc"), "abc");
  ASSERT_STR_EQ(boundary_of("multipart/form-data;boundary=----WebKitFormBoundary7MA4YWxk"),
                "----WebKitFormBoundary7MA4YWxk");
  ASSERT_STR_EQ(boundary_of("multipart/form-data; charset=utf-8; BOUNDARY=\"a b:c\""), "a b:c");
  ASSERT_STR_EQ(boundary_of("multipart/form-data; boundary=abc ; x=y"), "abc");
  ASSERT(boundary_of("multipart/form-data") == NULL);
  ASSERT(boundary_of("multipart/form-data; boundary=") == NULL);
  ASSERT(boundary_of("multipart/form-data; boundary=\"\"") == NULL);
  ASSERT(boundary_of("multipart/form-data; xboundary=abc") == NULL);
  char big[400];
  snprintf(big, sizeof big, "multipart/form-data; boundary=%0*d", FORM_MAX_BOUNDARY + 1, 7);
  ASSERT(boundary_of(big) == NULL);
  snprintf(big, sizeof big, "multipart/form-data; boundary=%0*d", FORM_MAX_BOUNDARY, 7);
  ASSERT(boundary_of(big) != NULL);
}

/* What curl -F sends. */
TEST(curl_like) {
  const char *body =
      "--------------------------d74496d66958873e\r\n"
      "Content-Disposition: form-data; name=\"title\"\r\n"
      "\r\n"
      "hello world\r\n"
      "--------------------------d74496d66958873e\r\n"
      "Content-Disposition: form-data; name=\"upload\"; filename=\"notes.txt\"\r\n"
      "Content-Type: text/plain\r\n"
      "\r\n"
      "line 1\r\nline 2\r\n\r\n"
      "\r\n"
      "--------------------------d74496d66958873e--\r\n";
  EXPECT_PARTS(body, "------------------------d74496d66958873e", 2,
               "[title|-|-|hello world][upload|notes.txt|text/plain|line 1\r\nline 2\r\n\r\n]");
}

TEST(bare_lf_and_padding) {
  EXPECT_PARTS("--b  \nContent-Disposition: form-data; name=a\n\n1\n--b\t\n"
               "content-disposition: form-data; name=\"b\"\n\n2\n--b--",
               "b", 2, "[a|-|-|1][b|-|-|2]");
}

TEST(preamble_epilogue_and_empty) {
  EXPECT_PARTS("this is the preamble\r\n--b\r\nContent-Disposition: form-data; name=e\r\n\r\n"
               "\r\n--b--\r\nepilogue --b\r\n junk",
               "b", 1, "[e|-|-|]");
  EXPECT_PARTS("--b--\r\n", "b", 0, "");
  /* the line end before a delimiter belongs to it: without it, no end */
  EXPECT_PARTS("--b\r\nContent-Disposition: form-data; name=e\r\n\r\n--b--", "b",
               FORM_EUNCLOSED, "");
}

/* The boundary text inside a body without a line end before it, or
 * followed by anything but padding, a line end or "--", is data. */
TEST(boundary_inside_body) {
  EXPECT_PARTS("--xyz\r\nContent-Disposition: form-data; name=f\r\n\r\n"
               "a--xyz b\r\n--xyzzy\r\n--xy\r\n--xyz\r\n"
               "Content-Disposition: form-data; name=g\r\n\r\n--xyz\r\n--xyz--",
               "xyz", 2, "[f|-|-|a--xyz b\r\n--xyzzy\r\n--xy][g|-|-|--xyz]");
}

TEST(crlf_variations) {
  /* CRLF headers, LF delimiter; a lone CR before the delimiter is eaten */
  EXPECT_PARTS("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\r\n--b--", "b", 1,
               "[a|-|-|v\r]");
  EXPECT_PARTS("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\n--b--", "b", 1,
               "[a|-|-|v]");
  /* a CR alone does not end the delimiter line: all of that is preamble */
  EXPECT_PARTS("--b\rContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--", "b", 0, "");
}

TEST(filenames) {
  EXPECT_PARTS("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a \\\"q\\\" "
               "C:\\dir\\x.txt\"\r\nContent-Type:  image/png \r\n\r\nPNG\r\n--b--",
               "b", 1, "[f|a \"q\" C:\\dir\\x.txt|image/png|PNG]");
  EXPECT_PARTS("--b\r\nContent-Disposition: form-data; name=f; filename=\"plain.txt\"; "
               "filename*=UTF-8''%e2%82%ac%20rates.txt\r\n\r\nx\r\n--b--",
               "b", 1, "[f|\xe2\x82\xac rates.txt|-|x]");
  EXPECT_PARTS("--b\r\nContent-Disposition: form-data; name=f; filename=\"\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n\r\n--b--",
               "b", 1, "[f||application/octet-stream|]");
  /* other headers are ignored, folded lines too */
  EXPECT_PARTS("--b\r\nX-Other: 1\r\n folded: on\r\nContent-Disposition: form-data; "
               "name=\"no\"; name=\"yes\"\r\n\r\nv\r\n--b--",
               "b", 1, "[yes|-|-|v]");
}

TEST(never_closed) {
  char *got;
  int calls;
  const char *b1 = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nforever...";
  ASSERT_INT_EQ(parse_lim(b1, strlen(b1), "b", 0, &got, &calls), FORM_EUNCLOSED);
  ASSERT_INT_EQ(calls, 0);
  free(got);
  /* a first complete part, then one that never ends: nothing delivered */
  const char *b2 = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b\r\n"
                   "Content-Disposition: form-data; name=c\r\n\r\n2\r\n--b";
  ASSERT_INT_EQ(parse_lim(b2, strlen(b2), "b", 0, &got, &calls), FORM_EUNCLOSED);
  ASSERT_INT_EQ(calls, 0);
  free(got);
  /* the header block itself never ends */
  ASSERT_INT_EQ(parse("--b\r\nContent-Disposition: form-data; name=a", "b", &got),
                FORM_EUNCLOSED);
  free(got);
  ASSERT_INT_EQ(parse("--b\r\n", "b", &got), FORM_EUNCLOSED);
  free(got);
  ASSERT_STR_EQ(form_strerror(FORM_EUNCLOSED), "multipart boundary never closed");
}

TEST(no_start) {
  char *got;
  ASSERT_INT_EQ(parse("", "b", &got), FORM_ENOSTART);
  free(got);
  ASSERT_INT_EQ(parse("name=value", "b", &got), FORM_ENOSTART);
  free(got);
  ASSERT_INT_EQ(parse("--c\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--c--", "b",
                      &got), FORM_ENOSTART);
  free(got);
  ASSERT_INT_EQ(parse("x--b\r\n", "b", &got), FORM_ENOSTART);
  free(got);
}

TEST(part_without_headers) {
  char *got;
  ASSERT_INT_EQ(parse("--b\r\n\r\nbody\r\n--b--", "b", &got), FORM_ENOHEADERS);
  free(got);
  ASSERT_INT_EQ(parse("--b\n\nbody\n--b--", "b", &got), FORM_ENOHEADERS);
  free(got);
  /* the next delimiter where a header line should be */
  ASSERT_INT_EQ(parse("--b\r\nContent-Disposition: form-data; name=a\r\n--b--\r\n", "b", &got),
                FORM_ENOHEADERS);
  free(got);
  ASSERT_STR_EQ(form_strerror(FORM_ENOHEADERS), "multipart part without headers");
}

TEST(bad_headers) {
  char *got;
  ASSERT_INT_EQ(parse("--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--", "b", &got),
                FORM_ENODISPOSITION);
  free(got);
  ASSERT_INT_EQ(parse("--b\r\nContent-Disposition: form-data; filename=x\r\n\r\nv\r\n--b--",
                      "b", &got), FORM_ENODISPOSITION);
  free(got);
  ASSERT_INT_EQ(parse("--b\r\nno colon here\r\n\r\nv\r\n--b--", "b", &got), FORM_EHEADER);
  free(got);
}

/* A header block of `size` bytes (up to and including its blank line). */
static char *with_header_block(size_t size) {
  const char *head = "--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ";
  const char *tail = "\r\n\r\nv\r\n--b--\r\n";
  size_t fixed = strlen("Content-Disposition: form-data; name=a\r\nX-Pad: ") + 4;
  size_t pad = size - fixed;
  char *s = malloc(strlen(head) + pad + strlen(tail) + 1);
  ASSERT(s);
  strcpy(s, head);
  memset(s + strlen(head), 'x', pad);
  strcpy(s + strlen(head) + pad, tail);
  return s;
}

TEST(header_block_limit) {
  char *got;
  char *at = with_header_block(FORM_MAX_HEADER_BLOCK);
  ASSERT_INT_EQ(parse(at, "b", &got), 1);
  free(got);
  free(at);
  char *over = with_header_block(FORM_MAX_HEADER_BLOCK + 1);
  ASSERT_INT_EQ(parse(over, "b", &got), FORM_EHEADERBLOCK);
  free(got);
  free(over);
  /* a header block that never ends and goes on past the limit */
  size_t n = 200000;
  char *endless = malloc(n + 1);
  ASSERT(endless);
  memcpy(endless, "--b\r\n", 5);
  memset(endless + 5, 'h', n - 5);
  endless[n] = '\0';
  ASSERT_INT_EQ(parse(endless, "b", &got), FORM_EHEADERBLOCK);
  free(got);
  free(endless);
}

/* count parts "--b\r\nContent-Disposition: form-data; name=pN\r\n\r\nN\r\n" */
static char *many_parts(int count, size_t *len) {
  size_t cap = (size_t)count * 64 + 16, n = 0;
  char *s = malloc(cap);
  ASSERT(s);
  for (int i = 0; i < count; i++)
    n += (size_t)snprintf(s + n, cap - n,
                          "--b\r\nContent-Disposition: form-data; name=p%d\r\n\r\n%d\r\n", i, i);
  n += (size_t)snprintf(s + n, cap - n, "--b--\r\n");
  *len = n;
  return s;
}

TEST(ten_thousand_parts) {
  size_t n;
  char *got;
  int calls;
  char *s = many_parts(10000, &n);
  ASSERT_INT_EQ(parse_lim(s, n, "b", 0, &got, &calls), FORM_ETOOMANY);
  ASSERT_INT_EQ(calls, 0);
  free(got);
  ASSERT_INT_EQ(parse_lim(s, n, "b", 10000, &got, &calls), 10000);
  ASSERT_INT_EQ(calls, 10000);
  ASSERT(strstr(got, "[p9999|-|-|9999]") != NULL);
  free(got);
  free(s);
  s = many_parts(FORM_DEFAULT_MAX_PARTS, &n);
  ASSERT_INT_EQ(parse_lim(s, n, "b", 0, &got, &calls), FORM_DEFAULT_MAX_PARTS);
  free(got);
  free(s);
}

TEST(callback_stops) {
  size_t n;
  char *got;
  int calls;
  char *s = many_parts(5, &n);
  struct seen st = {s, n, NULL, 0, 0, 0, 2};
  ASSERT_INT_EQ(form_multipart_parse(s, n, "b", 1, NULL, on_part, &st), FORM_ESTOPPED);
  ASSERT_INT_EQ(st.calls, 2);
  free(st.buf);
  /* no callback: only the check */
  ASSERT_INT_EQ(form_multipart_parse(s, n, "b", 1, NULL, NULL, NULL), 5);
  (void)got; (void)calls;
  free(s);
}

TEST(binary_body) {
  char body[256];
  size_t n = (size_t)snprintf(body, sizeof body,
                              "--b\r\nContent-Disposition: form-data; name=z\r\n\r\n");
  size_t b0 = n;
  const char bin[] = {0, 1, '\r', '\n', '-', '-', 0, (char)0xff};
  memcpy(body + n, bin, sizeof bin);
  n += sizeof bin;
  memcpy(body + n, "\r\n--b--", 7);
  n += 7;
  struct seen s = {body, n, NULL, 0, 0, 0, 0};
  put(&s, "", 0);
  ASSERT_INT_EQ(form_multipart_parse(body, n, "b", 1, NULL, on_part, &s), 1);
  ASSERT_INT_EQ(s.n, strlen("[z|-|-|]") + sizeof bin);
  ASSERT(memcmp(s.buf + 7, body + b0, sizeof bin) == 0);
  free(s.buf);
}

static void collect(void *ud, const char *k, size_t kl, const char *v, size_t vl) {
  struct seen *s = ud;
  inside(s, k, kl);
  inside(s, v, vl);
  put(s, "[", 1);
  put(s, k, kl);
  put(s, "=", 1);
  put(s, v, vl);
  put(s, "]", 1);
}

static char *cookies(const char *h) {
  struct seen s = {h, strlen(h), NULL, 0, 0, 0, 0};
  put(&s, "", 0);
  form_cookies_each(h, strlen(h), collect, &s);
  return s.buf;
}

#define EXPECT_COOKIES(h, want) \
  do {                          \
    char *c_ = cookies(h);      \
    ASSERT_STR_EQ(c_, want);    \
    free(c_);                   \
  } while (0)

TEST(cookie_header) {
  EXPECT_COOKIES("a=1; b=2", "[a=1][b=2]");
  EXPECT_COOKIES("a=1;b=2;", "[a=1][b=2]");
  EXPECT_COOKIES("  sid = x y ;\tlang=en\t", "[sid=x y][lang=en]");
  EXPECT_COOKIES("q=\"quoted value\"; e=\"\"; half=\"x", "[q=quoted value][e=][half=\"x]");
  EXPECT_COOKIES("flag; =nameless; a=; b==c=", "[a=][b==c=]");
  EXPECT_COOKIES("a=1; a=2", "[a=1][a=2]");   /* the caller keeps the last */
  EXPECT_COOKIES("x=%41%20", "[x=%41%20]");   /* not decoded */
  EXPECT_COOKIES("", "");
  EXPECT_COOKIES(";;; ;", "");
}

TEST(urlencoded) {
  const char *b = "title=hello+world&tag=a%26b&empty=&flag";
  struct seen s = {b, strlen(b), NULL, 0, 0, 0, 0};
  put(&s, "", 0);
  form_urlencoded_each(b, strlen(b), collect, &s);
  ASSERT_STR_EQ(s.buf, "[title=hello+world][tag=a%26b][empty=][flag=]");
  free(s.buf);
}

TEST_LIST(T(kind), T(boundary_param), T(curl_like), T(bare_lf_and_padding),
          T(preamble_epilogue_and_empty), T(boundary_inside_body), T(crlf_variations),
          T(filenames), T(never_closed), T(no_start), T(part_without_headers), T(bad_headers),
          T(header_block_limit), T(ten_thousand_parts), T(callback_stops), T(binary_body),
          T(cookie_header), T(urlencoded));
