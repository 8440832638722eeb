/* dtoa: shortest round-trip digits of a double (Schubfach) and their text;
 * integers; JSON number literals. */
#include "base/dtoa.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtoa_table.h"

#define Q_MIN (-1074)            /* exponent of the subnormals' unit */
#define C_MIN (UINT64_C(1) << 52)   /* smallest normal significand */
#define MASK63 ((UINT64_C(1) << 63) - 1)

/* floor(q * log10(2)), floor(log10(3/4 * 2^q)), floor(e * log2(10)) for the
 * exponents a double has; tools/gen_dtoa_table.py checks them exactly. */
static int flog10_pow2(int q) { return (int)(((int64_t)q * 661971961083LL) >> 41); }
static int flog10_three_quarters_pow2(int q) {
  return (int)(((int64_t)q * 661971961083LL - 274743187321LL) >> 41);
}
static int flog2_pow10(int e) { return (int)(((int64_t)e * 913124641741LL) >> 38); }

/* floor(g * cp / 2^127), g = g1 * 2^63 + g0, with its lowest bit set when
 * the division was inexact ("round to odd": comparisons against multiples
 * of 4 stay exact). */
static uint64_t rop(uint64_t g1, uint64_t g0, uint64_t cp) {
  unsigned __int128 x = (unsigned __int128)g0 * cp, y = (unsigned __int128)g1 * cp;
  uint64_t x1 = (uint64_t)(x >> 64), y0 = (uint64_t)y, y1 = (uint64_t)(y >> 64);
  uint64_t z = (y0 >> 1) + x1;
  uint64_t vbp = y1 + (z >> 63);
  return vbp | (((z & MASK63) + MASK63) >> 63);
}

/* v = c * 2^q; the answer is *f * 10^*e, the candidate of fewest digits in
 * v's rounding interval (ends included when c is even), nearest to v.  dk
 * is added to the exponent (c was scaled by 10 for the tiniest values). */
static void to_decimal(int q, uint64_t c, int dk, uint64_t *f, int *e) {
  uint64_t out = c & 1, cb = c << 2, cbr = cb + 2, cbl;
  int k;
  if (c != C_MIN || q == Q_MIN) {   /* the interval is symmetric */
    cbl = cb - 2;
    k = flog10_pow2(q);
  } else {                          /* at a power of 2 the gap below is half */
    cbl = cb - 1;
    k = flog10_three_quarters_pow2(q);
  }
  int h = q + flog2_pow10(-k) + 2;
  const uint64_t *g = dtoa_g[-k - DTOA_E_MIN];
  /* 4 * v / 10^k and the interval's ends, to within the odd bit */
  uint64_t vb = rop(g[0], g[1], cb << h);
  uint64_t vbl = rop(g[0], g[1], cbl << h);
  uint64_t vbr = rop(g[0], g[1], cbr << h);
  uint64_t s = vb >> 2;
  if (s >= 10) {   /* exactly one multiple of 10 in the interval: shorter */
    uint64_t sp10 = s / 10 * 10, tp10 = sp10 + 10;
    int upin = vbl + out <= sp10 << 2;
    int wpin = (tp10 << 2) + out <= vbr;
    if (upin != wpin) {
      *f = upin ? sp10 : tp10;
      *e = k + dk;
      return;
    }
  }
  uint64_t t = s + 1;
  int uin = vbl + out <= s << 2;
  int win = (t << 2) + out <= vbr;
  *e = k + dk;
  if (uin != win) {
    *f = uin ? s : t;
    return;
  }
  /* both (or, impossible, neither) in: the nearer, ties to even */
  int64_t cmp = (int64_t)(vb - ((s + t) << 1));
  *f = cmp < 0 || (cmp == 0 && (s & 1) == 0) ? s : t;
}

int dtoa_shortest(double v, uint64_t *digits, int *exp10) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  uint64_t t = bits & (C_MIN - 1);
  int bq = (int)(bits >> 52) & 0x7ff;
  uint64_t f;
  int e;
  if (bq != 0) {
    uint64_t c = C_MIN | t;
    int q = bq - 1075;
    if (q < 0 && q > -53 && (c & ((UINT64_C(1) << -q) - 1)) == 0) {
      f = c >> -q;   /* an integer below 2^53 */
      e = 0;
    } else {
      to_decimal(q, c, 0, &f, &e);
    }
  } else if (t < 3) {   /* the two tiniest subnormals */
    to_decimal(Q_MIN, 10 * t, -1, &f, &e);
  } else {
    to_decimal(Q_MIN, t, 0, &f, &e);
  }
  while (f % 10 == 0) {
    f /= 10;
    e++;
  }
  int n = 1;
  for (uint64_t x = f; x >= 10; x /= 10) n++;
  *digits = f;
  *exp10 = e;
  return n;
}

static const char DIGITS2[] =
  "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
  "8081828384858687888990919293949596979899";

/* Writes the n decimal digits of f at out. */
static void put_digits(uint64_t f, int n, char *out) {
  char *p = out + n;
  while (f >= 100) {
    unsigned r = (unsigned)(f % 100);
    f /= 100;
    p -= 2;
    memcpy(p, DIGITS2 + 2 * r, 2);
  }
  if (f >= 10) {
    p -= 2;
    memcpy(p, DIGITS2 + 2 * f, 2);
  } else {
    *--p = (char)('0' + f);
  }
}

size_t dtoa_format(double v, char *out) {
  char *p = out;
  if (signbit(v)) {
    *p++ = '-';
    v = -v;
  }
  if (v == 0) {
    memcpy(p, "0.0", 4);
    return (size_t)(p - out) + 3;
  }
  uint64_t f;
  int e;
  int n = dtoa_shortest(v, &f, &e);
  int x = n - 1 + e;   /* v = d.ddd * 10^x */
  if (x >= -5 && x <= 16) {
    if (e >= 0) {            /* ddd000.0 */
      put_digits(f, n, p);
      p += n;
      memset(p, '0', (size_t)e);
      p += e;
      memcpy(p, ".0", 2);
      p += 2;
    } else if (x >= 0) {     /* dd.ddd */
      put_digits(f, n, p + 1);
      memmove(p, p + 1, (size_t)x + 1);
      p[x + 1] = '.';
      p += n + 1;
    } else {                 /* 0.000ddd */
      int z = -x - 1;
      memcpy(p, "0.", 2);
      memset(p + 2, '0', (size_t)z);
      p += 2 + z;
      put_digits(f, n, p);
      p += n;
    }
  } else {                   /* d.ddde+XX */
    put_digits(f, n, p + 1);
    p[0] = p[1];
    if (n > 1) {
      p[1] = '.';
      p += n + 1;
    } else {
      p += 1;
    }
    *p++ = 'e';
    *p++ = x < 0 ? '-' : '+';
    int ax = x < 0 ? -x : x;
    if (ax >= 100) {
      *p++ = (char)('0' + ax / 100);
      ax %= 100;
    }
    memcpy(p, DIGITS2 + 2 * ax, 2);
    p += 2;
  }
  *p = '\0';
  return (size_t)(p - out);
}

size_t dtoa_format_int(int64_t v, char *out) {
  char tmp[24], *p = tmp + sizeof tmp;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  while (u >= 100) {
    p -= 2;
    memcpy(p, DIGITS2 + 2 * (u % 100), 2);
    u /= 100;
  }
  if (u >= 10) {
    p -= 2;
    memcpy(p, DIGITS2 + 2 * u, 2);
  } else {
    *--p = (char)('0' + u);
  }
  if (v < 0) *--p = '-';
  size_t n = (size_t)(tmp + sizeof tmp - p);
  memcpy(out, p, n);
  return n;
}

/* strtod in the "C" locale whatever setlocale the process (or os.setlocale) chose */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int dtoa_parse(const char *s, const char **end, int64_t *i, double *d) {
  const char *p = s;
  int neg = *p == '-';
  p += neg;
  uint64_t m = 0;   /* the first 19 significant digits */
  int nd = 0, e10 = 0, is_float = 0;
  if (*p == '0') {
    p++;
    if (is_digit(*p)) return *end = p - 1, DTOA_ELEADING;
  } else if (*p >= '1' && *p <= '9') {
    for (; is_digit(*p); p++, nd++) {
      if (nd < 19) m = m * 10 + (uint64_t)(*p - '0');
      else e10++;
    }
  } else {
    return *end = p, DTOA_EMINUS;
  }
  if (*p == '.') {
    is_float = 1;
    if (!is_digit(*++p)) return *end = p, DTOA_EFRACTION;
    for (; is_digit(*p); p++) {
      if (nd == 0 && *p == '0') {   /* 0.000ddd: zeros that are not significant */
        e10--;
      } else {
        if (nd < 19) {
          m = m * 10 + (uint64_t)(*p - '0');
          e10--;
        }
        nd++;
      }
    }
  }
  if (*p == 'e' || *p == 'E') {
    is_float = 1;
    p++;
    int eneg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    if (!is_digit(*p)) return *end = p, DTOA_EEXPONENT;
    int x = 0;
    for (; is_digit(*p); p++)
      if (x < 100000) x = x * 10 + (*p - '0');
    e10 += eneg ? -x : x;
  }
  *end = p;
  if (!is_float && nd <= 19) {
    if (!neg && m <= (uint64_t)INT64_MAX) return *i = (int64_t)m, DTOA_INT;
    if (neg && m <= (uint64_t)INT64_MAX + 1) return *i = (int64_t)(0 - m), DTOA_INT;
  }
  if (nd <= 19 && m <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
    /* both operands exact: one correctly rounded operation */
    double v = e10 < 0 ? (double)m / POW10[-e10] : (double)m * POW10[e10];
    *d = neg ? -v : v;
    return DTOA_FLOAT;
  }
  pthread_once(&c_locale_once, make_c_locale);
  char *stop;
  double v = c_locale ? strtod_l(s, &stop, c_locale) : strtod(s, &stop);
  if (stop != p || isinf(v)) return *end = s, DTOA_ERANGE;
  *d = v;
  return DTOA_FLOAT;
}

const char *dtoa_strerror(int code) {
  switch (code) {
  case DTOA_EMINUS: return "digit expected after '-'";
  case DTOA_ELEADING: return "leading zero";
  case DTOA_EFRACTION: return "digit expected after '.'";
  case DTOA_EEXPONENT: return "digit expected in exponent";
  case DTOA_ERANGE: return "number out of range";
  default: return "not a number";
  }
}
