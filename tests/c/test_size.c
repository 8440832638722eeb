/* size_parse: the sizes app.lua and the command line accept. */
#include "base/size.h"
#include "runner.h"

static size_t parse(const char *s) {
  size_t v = (size_t)-7;
  ASSERT_INT_EQ(size_parse(s, &v), 0);
  return v;
}

TEST(plain_bytes) { ASSERT_INT_EQ(parse("512"), 512); ASSERT_INT_EQ(parse("0"), 0); }
TEST(suffixes) {
  ASSERT_INT_EQ(parse("64k"), 65536);
  ASSERT_INT_EQ(parse("128m"), 134217728);
  ASSERT_INT_EQ(parse("1g"), 1073741824);
  ASSERT_INT_EQ(parse("2MB"), 2097152);
  ASSERT_INT_EQ(parse("3Kb"), 3072);
}
TEST(refusals) {
  size_t v;
  const char *bad[] = {"", "m", "-1", "1.5m", "12x", "1mm", "k1", " 1", "1 ", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (size_parse(bad[i], &v) != -1) FAIL_AT("'%s' was accepted", bad[i]);
}
TEST(overflow) { size_t v; ASSERT_INT_EQ(size_parse("17179869184g", &v), -1); }

TEST_LIST(T(plain_bytes), T(suffixes), T(refusals), T(overflow));
