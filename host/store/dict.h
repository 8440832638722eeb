/*
 * store/dict: process-wide named dictionaries (shared.dict).  Keys are
 * byte strings; values nil, booleans, integers, floats or byte strings,
 * each with an optional expiry (millisecond resolution).  Each dict has a
 * byte capacity; when it is full, writes fail with LH_ENOMEM and nothing
 * stored is evicted (expired entries are reclaimed first).  Knows no Lua.
 *
 * Threads: any thread may call any function.  Each dict is split in 16
 * stripes by key hash, each with its own mutex (and its share of the
 * capacity); the registry of names has one more.  Dicts live until dict_free_all at
 * process exit (a refcount is kept for the handles that cross states).
 */
#ifndef LUAHOST_DICT_H
#define LUAHOST_DICT_H

#include <stddef.h>

#include "base/lherror.h"
#include <stdint.h>

#define DICT_DEFAULT_CAPACITY (1u << 20)

enum dict_type { DV_NIL, DV_BOOL, DV_INT, DV_FLOAT, DV_STR };

struct dict_val {
  int type;
  int b;
  int64_t i;
  double f;
  const char *s; size_t len;   /* DV_STR: for get, points into the caller's buffer */
};

/* A caller-owned scratch buffer that dict_get copies strings into. */
struct dict_buf { char *p; size_t cap; };

struct dict;

/* Main thread, before workers start: capacity of a named dict. */
int dict_configure(const char *name, size_t capacity);
/* The dict called name, made on first use (configured or default
 * capacity).  Returns it retained; NULL when out of memory. */
struct dict *dict_open(const char *name, size_t len);
void dict_retain(struct dict *d);
void dict_release(struct dict *d);
const char *dict_name(const struct dict *d);

/* LH_OK with *out set (DV_NIL when missing or expired). */
int dict_get(struct dict *d, const char *k, size_t kl, struct dict_val *out,
             struct dict_buf *buf);
/* ttl_ms 0: never expires.  A DV_NIL value deletes the key. */
int dict_set(struct dict *d, const char *k, size_t kl, const struct dict_val *v,
             uint64_t ttl_ms);
/* Like set, but LH_EEXISTS when the key is present. */
int dict_add(struct dict *d, const char *k, size_t kl, const struct dict_val *v,
             uint64_t ttl_ms);
/* Adds n to a number; a missing key starts at *init (LH_ENOTFOUND when
 * init is NULL).  Integers stay integers when n and the value are; an
 * integer result outside int64 is LH_EOVERFLOW and changes nothing. */
int dict_incr(struct dict *d, const char *k, size_t kl, const struct dict_val *n,
              const struct dict_val *init, struct dict_val *out);
int dict_delete(struct dict *d, const char *k, size_t kl);
void dict_flush_all(struct dict *d);
/* Calls fn for up to max live keys (0: all), under the dict's lock: fn
 * must only copy.  Returns the number of keys given. */
size_t dict_keys(struct dict *d, size_t max,
                 void (*fn)(void *ud, const char *k, size_t kl), void *ud);
size_t dict_used(struct dict *d);       /* bytes charged against capacity */
/* Calls fn once per dict with its bytes charged and live entries (expired
 * ones not yet reclaimed included), under the registry lock and then each
 * stripe's in turn: fn must not call into dict.  Any thread. */
void dict_each(void (*fn)(void *ud, const char *name, size_t bytes, size_t entries),
               void *ud);
void dict_free_all(void);               /* process exit, no threads left */

#endif
