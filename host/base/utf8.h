/*
 * utf8: well-formed UTF-8 (RFC 3629): checking a sequence and writing a
 * code point.  Pure functions, any thread.
 */
#ifndef LUAHOST_UTF8_H
#define LUAHOST_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (2..4) of the well-formed sequence at s (n bytes readable there,
 * s[0] >= 0x80): no overlong form, no surrogate, nothing past U+10FFFF;
 * 0 if ill-formed or cut short. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Writes code point cp (< 0x110000, not a surrogate) at out; returns its
 * length (1..4). */
size_t utf8_encode(uint32_t cp, char *out);

#endif
