/*
 * dtoa: numbers to and from JSON text.  The shortest decimal text of a
 * double that reads back (round to nearest even) to the same double,
 * integers in decimal, and the parser of RFC 8259 number literals.  Pure
 * functions, no allocation, any thread.
 *
 * The digits come from the Schubfach method (R. Giulietti, "The Schubfach
 * way to render doubles", 2020): the double's rounding interval is scaled
 * by a power of ten taken from a table of 126-bit approximations
 * (dtoa_table.h, made by tools/gen_dtoa_table.py), and the one decimal of
 * fewest digits inside it, nearest to the double, is picked.
 */
#ifndef LUAHOST_DTOA_H
#define LUAHOST_DTOA_H

#include <stddef.h>
#include <stdint.h>

/* Longest text dtoa_format writes, with its NUL. */
#define DTOA_BUFSIZE 32

/* For v finite and nonzero: |v| reads back from digits * 10^exp10, where
 * digits has the fewest decimal digits possible (no trailing zero) and,
 * among those, is nearest to |v|.  Returns the number of digits (1..17). */
int dtoa_shortest(double v, uint64_t *digits, int *exp10);

/* Writes v (finite) as JSON number text that stays a float when read by
 * Lua or by luahost's json: the shortest digits, in plain notation with a
 * ".0" or a fraction when the decimal exponent is in [-5, 16] (1.0, 0.1,
 * 123.25, 0.00001), else as d[.ddd]e+XX / e-XX (1e+300, 1.5e-07).
 * -0.0 is "-0.0".  Writes a NUL after the text; returns its length
 * (< DTOA_BUFSIZE).  Infinities and NaN must be refused by the caller. */
size_t dtoa_format(double v, char *out);

/* Writes v in decimal (no NUL); returns the length (at most 20). */
size_t dtoa_format_int(int64_t v, char *out);

/* What dtoa_parse found. */
enum {
  DTOA_INT = 1,          /* no fraction nor exponent, and fits int64 */
  DTOA_FLOAT = 2,        /* else: the double nearest to the literal */
  DTOA_EMINUS = -1,      /* no digit after '-' */
  DTOA_ELEADING = -2,    /* a leading zero ("01") */
  DTOA_EFRACTION = -3,   /* no digit after '.' */
  DTOA_EEXPONENT = -4,   /* no digit in the exponent */
  DTOA_ERANGE = -5,      /* beyond the largest double */
};

/* Parses the JSON number literal at s, which starts with '-' or a digit
 * and is followed somewhere by a byte that cannot continue a number (a
 * NUL-terminated string is).  On success sets *i or *d and *end (the
 * first byte after the literal) and returns DTOA_INT or DTOA_FLOAT; else
 * returns a DTOA_E* code with *end at the offending byte (at s for
 * DTOA_ERANGE).  Locale-independent. */
int dtoa_parse(const char *s, const char **end, int64_t *i, double *d);
/* The text of a DTOA_E* code ("leading zero", ...). */
const char *dtoa_strerror(int code);

#endif
