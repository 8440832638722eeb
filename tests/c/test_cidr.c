/* cidr: parsing address ranges and matching peers (metrics_allow). */
#include "http/cidr.h"
#include "runner.h"

static struct cidr P(const char *s) {
  struct cidr c;
  if (cidr_parse(&c, s) != 0) FAIL_AT("cidr_parse(\"%s\") refused", s);
  return c;
}

static const char *fmt(const char *s) {
  static char out[64];
  struct cidr c = P(s);
  cidr_format(&c, out, sizeof out);
  return out;
}

TEST(parse_forms) {
  ASSERT_STR_EQ(fmt("10.0.0.0/8"), "10.0.0.0/8");
  ASSERT_STR_EQ(fmt("10.1.2.3/8"), "10.0.0.0/8");        /* host bits cleared */
  ASSERT_STR_EQ(fmt("192.168.1.77"), "192.168.1.77/32");
  ASSERT_STR_EQ(fmt("0.0.0.0/0"), "0.0.0.0/0");
  ASSERT_STR_EQ(fmt("10.0.0.255/31"), "10.0.0.254/31");
  ASSERT_STR_EQ(fmt("2001:db8::1/32"), "2001:db8::/32");
  ASSERT_STR_EQ(fmt("::1"), "::1/128");
  ASSERT_STR_EQ(fmt("::/0"), "::/0");
  ASSERT_STR_EQ(fmt("fe80::1/10"), "fe80::/10");
  ASSERT_STR_EQ(fmt("2001:db8::/127"), "2001:db8::/127");
}

TEST(parse_refuses) {
  static const char *bad[] = {
    "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08",
    "10.0.0.0/8/8", "10.0.0.0 /8", " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0/8", "10.0.0.256",
    "256.0.0.0/8", "10.0.0.0/1a", "::1/129", "2001:db8::/1000", "localhost", "1.2.3.4.5",
    "10.0.0.0/99999999999999999999", "gg::1", "::1%lo", "010.0.0.0/8x",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/8",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct cidr c;
    if (cidr_parse(&c, bad[i]) != CIDR_EINVAL) FAIL_AT("cidr_parse(\"%s\") accepted", bad[i]);
  }
}

TEST(match_v4) {
  struct cidr c = P("10.20.0.0/16");
  ASSERT_INT_EQ(cidr_match(&c, "10.20.0.0"), 1);
  ASSERT_INT_EQ(cidr_match(&c, "10.20.255.255"), 1);
  ASSERT_INT_EQ(cidr_match(&c, "10.21.0.0"), 0);
  ASSERT_INT_EQ(cidr_match(&c, "10.19.255.255"), 0);
  ASSERT_INT_EQ(cidr_match(&c, "::ffff:10.20.3.4"), 1);   /* mapped peer */
  ASSERT_INT_EQ(cidr_match(&c, "::ffff:10.21.3.4"), 0);
  ASSERT_INT_EQ(cidr_match(&c, "2001:db8::1"), 0);
  ASSERT_INT_EQ(cidr_match(&c, "-"), 0);
  ASSERT_INT_EQ(cidr_match(&c, ""), 0);
  ASSERT_INT_EQ(cidr_match(&c, NULL), 0);
  struct cidr odd = P("192.168.1.128/25");
  ASSERT_INT_EQ(cidr_match(&odd, "192.168.1.127"), 0);
  ASSERT_INT_EQ(cidr_match(&odd, "192.168.1.128"), 1);
  ASSERT_INT_EQ(cidr_match(&odd, "192.168.1.255"), 1);
  struct cidr all = P("0.0.0.0/0");
  ASSERT_INT_EQ(cidr_match(&all, "203.0.113.9"), 1);
  ASSERT_INT_EQ(cidr_match(&all, "2001:db8::1"), 0);      /* families apart */
  struct cidr host = P("203.0.113.9");
  ASSERT_INT_EQ(cidr_match(&host, "203.0.113.9"), 1);
  ASSERT_INT_EQ(cidr_match(&host, "203.0.113.8"), 0);
}

TEST(match_v6) {
  struct cidr c = P("2001:db8:abcd::/48");
  ASSERT_INT_EQ(cidr_match(&c, "2001:db8:abcd:1::5"), 1);
  ASSERT_INT_EQ(cidr_match(&c, "2001:db8:abce::5"), 0);
  ASSERT_INT_EQ(cidr_match(&c, "10.0.0.1"), 0);
  struct cidr odd = P("2001:db8::/33");
  ASSERT_INT_EQ(cidr_match(&odd, "2001:db8:7fff::1"), 1);
  ASSERT_INT_EQ(cidr_match(&odd, "2001:db8:8000::1"), 0);
  struct cidr mapped = P("::ffff:10.0.0.0/104");           /* IPv6 form of 10/8 */
  ASSERT_INT_EQ(cidr_match(&mapped, "10.9.9.9"), 1);
  ASSERT_INT_EQ(cidr_match(&mapped, "11.9.9.9"), 0);
  struct cidr all = P("::/0");
  ASSERT_INT_EQ(cidr_match(&all, "fe80::1"), 1);
}

TEST(match_any) {
  struct cidr list[3] = {P("10.0.0.0/8"), P("192.168.0.0/16"), P("fd00::/8")};
  ASSERT_INT_EQ(cidr_match_any(list, 3, "192.168.4.4"), 1);
  ASSERT_INT_EQ(cidr_match_any(list, 3, "fd12::1"), 1);
  ASSERT_INT_EQ(cidr_match_any(list, 3, "172.16.0.1"), 0);
  ASSERT_INT_EQ(cidr_match_any(list, 0, "10.0.0.1"), 0);
}

TEST(loopback) {
  ASSERT_INT_EQ(cidr_is_loopback("127.0.0.1"), 1);
  ASSERT_INT_EQ(cidr_is_loopback("127.255.3.4"), 1);
  ASSERT_INT_EQ(cidr_is_loopback("::1"), 1);
  ASSERT_INT_EQ(cidr_is_loopback("::ffff:127.0.0.1"), 1);
  ASSERT_INT_EQ(cidr_is_loopback("128.0.0.1"), 0);
  ASSERT_INT_EQ(cidr_is_loopback("10.0.0.1"), 0);
  ASSERT_INT_EQ(cidr_is_loopback("::2"), 0);
  ASSERT_INT_EQ(cidr_is_loopback("::"), 0);
  ASSERT_INT_EQ(cidr_is_loopback("0.0.0.0"), 0);
  ASSERT_INT_EQ(cidr_is_loopback("-"), 0);
  ASSERT_INT_EQ(cidr_is_loopback(NULL), 0);
}

TEST_LIST(T(parse_forms), T(parse_refuses), T(match_v4), T(match_v6), T(match_any),
          T(loopback));
