/*
 * url: percent-decoding and query-string splitting.  Pure; any thread.
 */
#ifndef LUAHOST_URL_H
#define LUAHOST_URL_H

#include <stddef.h>

/* Decodes src[0..n) into dst (room for n bytes); '+' becomes ' ' when
 * plus_is_space.  Invalid escapes are kept as they are.  Returns the length. */
size_t url_decode(char *dst, const char *src, size_t n, int plus_is_space);

/* Calls fn(ud, key, klen, value, vlen) for each raw "k=v" of a query
 * string split on '&' (empty parts skipped; "k" alone gives value ""). */
void url_query_each(const char *q, size_t n,
                    void (*fn)(void *ud, const char *k, size_t kl,
                               const char *v, size_t vl),
                    void *ud);

#endif
