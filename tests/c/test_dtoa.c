/* dtoa: shortest round-trip text of doubles, checked against strtod and
 * printf's correctly rounded digits. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtoa.h"
#include "runner.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next_u64(void) {   /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1du;
}

static double from_bits(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

static int same(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static const char *fmt(double v) {
  static char buf[DTOA_BUFSIZE];
  size_t n = dtoa_format(v, buf);
  if (n >= DTOA_BUFSIZE || strlen(buf) != n) FAIL_AT("%.17g: length %zu", v, n);
  return buf;
}

/* The text reads back to v, is a float literal (has '.', 'e'), and has no
 * more significant digits than printf's shortest; when printf's digits of
 * the same count read back, they are the same digits. */
static void check(double v) {
  const char *s = fmt(v);
  char *end;
  double back = strtod(s, &end);
  if (*end || !same(back, v)) FAIL_AT("%.17g -> \"%s\" reads back as %.17g", v, s, back);
  if (!strpbrk(s, ".e")) FAIL_AT("%.17g -> \"%s\" reads as an integer", v, s);
  if (v == 0) return;
  uint64_t digits;
  int e, n = dtoa_shortest(v, &digits, &e);
  if (n < 1 || n > 17 || digits % 10 == 0) FAIL_AT("%.17g: %d digits %llu", v, n,
                                                   (unsigned long long)digits);
  char p[64];
  if (n > 1) {   /* one digit fewer, correctly rounded, must not read back */
    snprintf(p, sizeof p, "%.*e", n - 2, v);
    if (same(strtod(p, NULL), v)) FAIL_AT("%.17g -> \"%s\" but \"%s\" is shorter", v, s, p);
  }
  snprintf(p, sizeof p, "%.*e", n - 1, v);
  if (same(strtod(p, NULL), v)) {
    char mine[32], *q = p;
    snprintf(mine, sizeof mine, "%llu", (unsigned long long)digits);
    char theirs[32];
    size_t k = 0;
    for (q = p + (*p == '-'); *q && *q != 'e'; q++)
      if (*q != '.') theirs[k++] = *q;
    theirs[k] = 0;
    while (k > 1 && theirs[k - 1] == '0') theirs[--k] = 0;
    if (strcmp(mine, theirs) != 0) FAIL_AT("%.17g: digits %s, printf %s", v, mine, theirs);
  }
}

TEST(known_texts) {
  ASSERT_STR_EQ(fmt(1.0), "1.0");
  ASSERT_STR_EQ(fmt(0.1), "0.1");
  ASSERT_STR_EQ(fmt(1e300), "1e+300");
  ASSERT_STR_EQ(fmt(-0.0), "-0.0");
  ASSERT_STR_EQ(fmt(0.0), "0.0");
  ASSERT_STR_EQ(fmt(100.0), "100.0");
  ASSERT_STR_EQ(fmt(-2.5), "-2.5");
  ASSERT_STR_EQ(fmt(123.456), "123.456");
  ASSERT_STR_EQ(fmt(0.3), "0.3");
  ASSERT_STR_EQ(fmt(0.1 + 0.2), "0.30000000000000004");
  ASSERT_STR_EQ(fmt(2.0 / 3.0), "0.6666666666666666");
  ASSERT_STR_EQ(fmt(1e-5), "0.00001");
  ASSERT_STR_EQ(fmt(1.5e-6), "1.5e-06");
  ASSERT_STR_EQ(fmt(1e16), "10000000000000000.0");
  ASSERT_STR_EQ(fmt(1e17), "1e+17");
  ASSERT_STR_EQ(fmt(9007199254740993.0), "9007199254740992.0");
  ASSERT_STR_EQ(fmt(DBL_MAX), "1.7976931348623157e+308");
  ASSERT_STR_EQ(fmt(-DBL_MAX), "-1.7976931348623157e+308");
  ASSERT_STR_EQ(fmt(DBL_MIN), "2.2250738585072014e-308");
  ASSERT_STR_EQ(fmt(from_bits(1)), "5e-324");
  ASSERT_STR_EQ(fmt(from_bits(2)), "1e-323");
  ASSERT_STR_EQ(fmt(from_bits(0x000fffffffffffffu)), "2.225073858507201e-308");
  ASSERT_STR_EQ(fmt(5e-324 * 3), "1.5e-323");
  ASSERT_STR_EQ(fmt(1e23), "1e+23");
  ASSERT_STR_EQ(fmt(9.5367431640625e-07), "9.5367431640625e-07");
  ASSERT_STR_EQ(fmt(2.0e-3), "0.002");
  ASSERT_STR_EQ(fmt(1234567890123456.7), "1234567890123456.8");
  ASSERT_STR_EQ(fmt(4.35), "4.35");
  ASSERT_STR_EQ(fmt(5e-310), "5e-310");
  ASSERT_STR_EQ(fmt(0x1p-1022 * 1.5), "3.337610787760802e-308");
}

TEST(every_power_and_boundary) {
  /* powers of two (asymmetric intervals), their neighbours, powers of ten */
  for (int e = -1074; e <= 1023; e++) {
    double p = ldexp(1.0, e);
    check(p);
    check(-p);
    check(nextafter(p, 0));
    check(nextafter(p, INFINITY));
  }
  for (int e = -323; e <= 308; e++) {
    char s[16];
    snprintf(s, sizeof s, "1e%d", e);
    double v = strtod(s, NULL);
    check(v);
    check(nextafter(v, 0));
    check(nextafter(v, INFINITY));
  }
  check(DBL_MAX);
  check(DBL_MIN);
}

TEST(subnormals) {
  for (uint64_t c = 0; c < 200000; c++) check(from_bits(c));
  for (int i = 0; i < 200000; i++) check(from_bits(next_u64() & 0x000fffffffffffffu));
}

TEST(random_bits) {   /* 2 million random finite doubles */
  for (int i = 0; i < 2000000; i++) {
    double v = from_bits(next_u64());
    if (isfinite(v)) check(v);
  }
}

TEST(random_decimals) {   /* short decimals, as JSON documents hold them */
  for (int i = 0; i < 1000000; i++) {
    char s[40];
    uint64_t m = next_u64() % 100000000000000000u;
    int digits = 1 + (int)(next_u64() % 17);
    uint64_t div = 1;
    for (int k = 0; k < 17 - digits; k++) div *= 10;
    snprintf(s, sizeof s, "%llue%d", (unsigned long long)(m / div), (int)(next_u64() % 80) - 40);
    check(strtod(s, NULL));
  }
  for (int i = -100000; i <= 100000; i++) check((double)i / 100);
}

TEST(integers_as_floats) {
  for (int i = 0; i < 1000000; i++) {
    double v = (double)(int64_t)(next_u64() >> (next_u64() % 64));
    check(v);
  }
  ASSERT_STR_EQ(fmt(12345678.0), "12345678.0");
  ASSERT_STR_EQ(fmt(-9223372036854775808.0), "-9.223372036854776e+18");
}

/* dtoa_parse(s) as a double, failing the test on anything but DTOA_FLOAT */
static double parse_float(const char *s) {
  const char *end;
  int64_t i;
  double d;
  int rc = dtoa_parse(s, &end, &i, &d);
  if (rc != DTOA_FLOAT || *end) FAIL_AT("\"%s\": rc %d, stopped at \"%s\"", s, rc, end);
  return d;
}

TEST(parse_reads_what_format_writes) {
  for (int i = 0; i < 1000000; i++) {
    double v = from_bits(next_u64());
    if (!isfinite(v)) continue;
    const char *s = fmt(v);
    if (!same(parse_float(s), v)) FAIL_AT("%.17g -> \"%s\" parses back differently", v, s);
  }
}

TEST(parse_agrees_with_strtod) {   /* the exact fast path and the fallback */
  for (int i = 0; i < 1000000; i++) {
    char s[64];
    uint64_t m = next_u64() >> (next_u64() % 64);
    int e = (int)(next_u64() % 60) - 30, form = (int)(next_u64() % 3);
    if (form == 0) snprintf(s, sizeof s, "%llue%d", (unsigned long long)m, e);
    else if (form == 1) snprintf(s, sizeof s, "-%llu.%03de%+d", (unsigned long long)m, i % 1000, e * 10);
    else snprintf(s, sizeof s, "0.%018llu", (unsigned long long)(m % 1000000000000000000u));
    double want = strtod(s, NULL);
    if (isinf(want)) continue;
    if (!same(parse_float(s), want)) FAIL_AT("\"%s\": %.17g, strtod %.17g", s, parse_float(s), want);
  }
}

TEST(parse_integers_and_refusals) {
  const char *end;
  int64_t i;
  double d;
  ASSERT_INT_EQ(dtoa_parse("9223372036854775807", &end, &i, &d), DTOA_INT);
  ASSERT(i == INT64_MAX);
  ASSERT_INT_EQ(dtoa_parse("-9223372036854775808,", &end, &i, &d), DTOA_INT);
  ASSERT(i == INT64_MIN);
  ASSERT_STR_EQ(end, ",");
  ASSERT_INT_EQ(dtoa_parse("-0]", &end, &i, &d), DTOA_INT);
  ASSERT_INT_EQ(i, 0);
  ASSERT_INT_EQ(dtoa_parse("9223372036854775808", &end, &i, &d), DTOA_FLOAT);
  ASSERT(d == 9223372036854775808.0);
  ASSERT_INT_EQ(dtoa_parse("-9223372036854775809", &end, &i, &d), DTOA_FLOAT);
  ASSERT(parse_float("100000000000000000000000") == 1e23);
  ASSERT(parse_float("0.000000000000000000000000000001") == 1e-30);
  ASSERT(parse_float("1e-400") == 0 && !signbit(parse_float("1e-400")));
  ASSERT(signbit(parse_float("-0.0")));
  ASSERT(parse_float("2.2250738585072011e-308") == 2.2250738585072011e-308);
  const char *bad[][2] = {{"01", "01"}, {"-", ""}, {"-a", "a"}, {"1.", ""}, {"1.e3", "e3"},
                          {"1e", ""}, {"1e+x", "x"}, {"1e400", "1e400"}, {"-00", "00"}};
  const int codes[] = {DTOA_ELEADING, DTOA_EMINUS, DTOA_EMINUS, DTOA_EFRACTION, DTOA_EFRACTION,
                       DTOA_EEXPONENT, DTOA_EEXPONENT, DTOA_ERANGE, DTOA_ELEADING};
  for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
    int rc = dtoa_parse(bad[k][0], &end, &i, &d);
    if (rc != codes[k] || strcmp(end, bad[k][1]) != 0)
      FAIL_AT("\"%s\": rc %d at \"%s\", want %d at \"%s\"", bad[k][0], rc, end, codes[k], bad[k][1]);
    ASSERT(dtoa_strerror(rc)[0] != 0);
  }
  char buf[24];
  ASSERT_MEM_EQ(buf, dtoa_format_int(INT64_MIN, buf), "-9223372036854775808");
  ASSERT_MEM_EQ(buf, dtoa_format_int(0, buf), "0");
  ASSERT_MEM_EQ(buf, dtoa_format_int(-7, buf), "-7");
  for (int k = 0; k < 100000; k++) {
    int64_t v = (int64_t)next_u64() >> (next_u64() % 64);
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)v);
    ASSERT_MEM_EQ(buf, dtoa_format_int(v, buf), want);
  }
}

TEST_LIST(T(known_texts), T(every_power_and_boundary), T(subnormals), T(random_bits),
          T(random_decimals), T(integers_as_floats), T(parse_reads_what_format_writes),
          T(parse_agrees_with_strtod), T(parse_integers_and_refusals));
