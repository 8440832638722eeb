/* utf8: utf8_seq against a decoder written from RFC 3629's definitions,
 * on every 1-3 byte sequence and on random 4-byte ones; utf8_encode of
 * every code point. */
#include <stdint.h>
#include <string.h>

#include "base/utf8.h"
#include "runner.h"

/* Length of the valid sequence at s (n bytes), 0 if invalid: the code
 * point is decoded bit by bit, then its range is checked. */
static size_t reference(const unsigned char *s, size_t n) {
  size_t len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
  if (!len || len > n) return 0;
  uint32_t cp = len == 1 ? s[0] : s[0] & (0x7fu >> len);
  for (size_t k = 1; k < len; k++) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[k] & 0x3fu);
  }
  static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

static void check(const unsigned char *s, size_t n) {
  size_t want = reference(s, n), got = utf8_seq(s, n);
  if (want == 1) return;   /* ASCII: utf8_seq is only asked about s[0] >= 0x80 */
  if (got != want)
    FAIL_AT("%02x %02x %02x %02x (n %zu): %zu, want %zu", s[0], n > 1 ? s[1] : 0,
            n > 2 ? s[2] : 0, n > 3 ? s[3] : 0, n, got, want);
}

TEST(every_short_sequence) {
  unsigned char s[4] = {0};
  for (unsigned a = 0x80; a < 0x100; a++) {
    s[0] = (unsigned char)a;
    check(s, 1);
    for (unsigned b = 0; b < 0x100; b++) {
      s[1] = (unsigned char)b;
      check(s, 2);
      for (unsigned c = 0; c < 0x100; c++) {
        s[2] = (unsigned char)c;
        check(s, 3);
      }
    }
  }
}

TEST(random_four_byte_sequences) {
  uint64_t x = 88172645463325252u;
  for (int i = 0; i < 20000000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    unsigned char s[4];
    memcpy(s, &x, 4);
    s[0] |= 0x80;
    if (i & 1) s[0] = (unsigned char)(0xf0 | (s[0] & 7));   /* lead bytes F0..F7 half the time */
    check(s, 4);
    check(s, 3);
  }
}

TEST(encode_every_code_point) {
  for (uint32_t cp = 0; cp < 0x110000; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    unsigned char out[4];
    size_t n = utf8_encode(cp, (char *)out);
    if (reference(out, n) != n) FAIL_AT("U+%04X: %zu bytes, not valid", (unsigned)cp, n);
    uint32_t back = n == 1 ? out[0] : out[0] & (0x7fu >> n);
    for (size_t k = 1; k < n; k++) back = back << 6 | (out[k] & 0x3fu);
    if (back != cp) FAIL_AT("U+%04X reads back as U+%04X", (unsigned)cp, (unsigned)back);
  }
}

TEST_LIST(T(every_short_sequence), T(random_four_byte_sequences), T(encode_every_code_point));
