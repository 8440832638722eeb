/* url: percent-decoding and query splitting. */
#include "http/url.h"
#include "runner.h"

static const char *dec(const char *s, int plus) {
  static char out[256];
  size_t n = url_decode(out, s, strlen(s), plus);
  out[n] = '\0';
  return out;
}

TEST(decode) {
  ASSERT_STR_EQ(dec("a%20b", 0), "a b");
  ASSERT_STR_EQ(dec("a+b", 1), "a b");
  ASSERT_STR_EQ(dec("a+b", 0), "a+b");
  ASSERT_STR_EQ(dec("%2e%2E%2f", 0), "../");
  ASSERT_STR_EQ(dec("100%", 0), "100%");       /* truncated escape kept */
  ASSERT_STR_EQ(dec("%zz%4", 0), "%zz%4");     /* invalid escapes kept */
}

TEST(decode_nul) {
  char out[8];
  size_t n = url_decode(out, "a%00b", 5, 0);
  ASSERT_INT_EQ(n, 3);
  ASSERT_INT_EQ(out[1], 0);
}

struct seen { char buf[256]; size_t n; };
static void collect(void *ud, const char *k, size_t kl, const char *v, size_t vl) {
  struct seen *s = ud;
  s->n += (size_t)snprintf(s->buf + s->n, sizeof s->buf - s->n, "[%.*s=%.*s]", (int)kl, k,
                           (int)vl, v);
}

TEST(query_split) {
  struct seen s = {{0}, 0};
  const char *q = "a=1&b=&c&&d=x=y&";
  url_query_each(q, strlen(q), collect, &s);
  ASSERT_STR_EQ(s.buf, "[a=1][b=][c=][d=x=y]");
}

TEST(query_empty) {
  struct seen s = {{0}, 0};
  url_query_each("", 0, collect, &s);
  ASSERT_INT_EQ(s.n, 0);
}

TEST_LIST(T(decode), T(decode_nul), T(query_split), T(query_empty));
