/*
 * json: the json module (SPEC §11), lua-cjson's API for Lua 5.4.  encode
 * walks the value on the stack into one growing buffer; decode parses
 * strictly (RFC 8259) straight onto the stack.  Every byte goes through
 * the state's allocator (buffers are userdata), so memory_limit holds.
 * Misuse and bad data raise "json: ..." errors: encode names the path of
 * the value it refuses ($.items[3].cb), decode the byte (1-based).
 *
 * Every module function shares two upvalues: the array metatable and a
 * cached buffer (a userdata of at most CACHE_MAX bytes, or false).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/dtoa.h"
#include "base/utf8.h"
#include "bindings/bindings.h"

#define MAX_DEPTH 1000
#define CACHE_MAX (256 * 1024)
#define UP_ARRAY_MT lua_upvalueindex(1)
#define UP_CACHE lua_upvalueindex(2)

/* ---- buffer: bytes in a userdata at a fixed stack slot ----------------- */

struct buf {
  lua_State *L;
  char *p;
  size_t len, cap;
  int slot;   /* stack index of the userdata holding p */
};

/* Takes the cached userdata (if another call does not hold it: a __gc
 * metamethod run by an allocation here may call json too) into slot. */
static void buf_init(struct buf *b, lua_State *L, int slot) {
  b->L = L;
  b->slot = slot;
  static char none[1];   /* no bytes yet (never NULL: memcpy of 0 bytes is fine) */
  b->len = 0;
  b->p = none;
  b->cap = 0;
  if (lua_type(L, UP_CACHE) == LUA_TUSERDATA) {
    lua_pushvalue(L, UP_CACHE);
    lua_replace(L, slot);
    b->p = lua_touserdata(L, slot);
    b->cap = lua_rawlen(L, slot);
    lua_pushboolean(L, 0);
    lua_replace(L, UP_CACHE);   /* held */
  }
}

/* Room for n more bytes: a new userdata twice as big (the old one is
 * garbage; a failed allocation raises Lua's memory error). */
static void buf_grow(struct buf *b, size_t n) {
  size_t cap = b->cap < 256 ? 256 : b->cap;
  while (cap - b->len < n) {
    if (cap > SIZE_MAX / 4) luaL_error(b->L, "json: text too large");
    cap *= 2;
  }
  char *p = lua_newuserdatauv(b->L, cap, 0);
  if (b->len) memcpy(p, b->p, b->len);
  lua_replace(b->L, b->slot);
  b->p = p;
  b->cap = cap;
}

static inline char *buf_reserve(struct buf *b, size_t n) {
  if (b->cap - b->len < n) buf_grow(b, n);
  return b->p + b->len;
}

static inline void buf_add(struct buf *b, const char *s, size_t n) {
  memcpy(buf_reserve(b, n), s, n);
  b->len += n;
}

/* Gives the buffer back to the cache, unless it grew past CACHE_MAX. */
static void buf_keep(struct buf *b) {
  if (b->cap > 0 && b->cap <= CACHE_MAX) {
    lua_pushvalue(b->L, b->slot);
    lua_replace(b->L, UP_CACHE);
  }
}

/* ---- encode ------------------------------------------------------------- */

/* One open table on the path: the key being encoded in it. */
struct frame {
  const void *table;
  lua_Integer index;   /* array element, when key == 0 */
  int key;             /* stack index of the string key, or 0 */
};

struct enc {
  lua_State *L;
  struct buf b;
  int indent;       /* spaces per level; 0: compact */
  int sort;
  int depth;        /* open tables */
  struct frame f[MAX_DEPTH];
};

/* Raises "json: cannot encode WHAT at $.path" (the path of f[0..depth)). */
static int enc_fail(struct enc *e, const char *what) {
  lua_State *L = e->L;
  luaL_Buffer pb;
  luaL_buffinit(L, &pb);
  luaL_addstring(&pb, "json: cannot encode ");
  luaL_addstring(&pb, what);
  luaL_addstring(&pb, " at $");
  for (int d = 0; d < e->depth; d++) {
    if (d == 16 && e->depth > 40) {   /* a long path: its ends */
      luaL_addstring(&pb, "...");
      d = e->depth - 16;
    }
    if (!e->f[d].key) {
      char n[32];
      snprintf(n, sizeof n, "[%lld]", (long long)e->f[d].index);
      luaL_addstring(&pb, n);
      continue;
    }
    size_t len;
    const char *k = lua_tolstring(L, e->f[d].key, &len);
    int ident = len > 0 && !(k[0] >= '0' && k[0] <= '9');
    for (size_t i = 0; i < len && ident; i++)
      ident = k[i] == '_' || (k[i] >= '0' && k[i] <= '9') || ((k[i] | 32) >= 'a' && (k[i] | 32) <= 'z');
    if (ident) {
      luaL_addchar(&pb, '.');
      luaL_addlstring(&pb, k, len);
    } else {
      luaL_addstring(&pb, "[\"");
      for (size_t i = 0; i < len; i++) {
        if (k[i] == '"' || k[i] == '\\') luaL_addchar(&pb, '\\');
        luaL_addchar(&pb, k[i]);
      }
      luaL_addstring(&pb, "\"]");
    }
  }
  luaL_pushresult(&pb);
  return lua_error(L);
}

/* Which bytes a string copies as they are (0), escapes (1) or checks as
 * UTF-8 (2). */
static unsigned char enc_class[256];
/* Writes the escape of c (below 0x20, '"' or '\\') at o; returns its length. */
static size_t enc_escape(unsigned char c, char *o) {
  static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
  const char *two = c ? strchr(from, c) : NULL;
  o[0] = '\\';
  if (two) {
    o[1] = to[two - from];
    return 2;
  }
  memcpy(o + 1, "u00", 3);
  o[4] = "0123456789abcdef"[c >> 4];
  o[5] = "0123456789abcdef"[c & 15];
  return 6;
}

static void enc_string(struct enc *e, int idx) {
  size_t len;
  const unsigned char *s = (const unsigned char *)lua_tolstring(e->L, idx, &len);
  struct buf *b = &e->b;
  char *o = buf_reserve(b, len + 8);
  *o++ = '"';
  size_t i = 0;
  for (;;) {   /* invariant: room for len - i + 2 more bytes */
    size_t j = i;
    while (j < len && !enc_class[s[j]]) j++;
    memcpy(o, s + i, j - i);
    o += j - i;
    i = j;
    if (i == len) break;
    if (s[i] < 0x80) {
      if ((size_t)(b->p + b->cap - o) < len - i + 8) {
        b->len = (size_t)(o - b->p);
        o = buf_reserve(b, len - i + 8);
      }
      o += enc_escape(s[i++], o);
    } else {
      size_t n = utf8_seq(s + i, len - i);
      if (!n) enc_fail(e, "a string that is not valid UTF-8");
      memcpy(o, s + i, n);
      o += n;
      i += n;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->p);
}

/* A refusal of the table being opened: its own frame is not on the path. */
static int table_fail(struct enc *e, const char *what) {
  e->depth--;
  return enc_fail(e, what);
}

static void enc_newline(struct enc *e) {
  if (!e->indent) return;
  size_t n = (size_t)e->indent * (size_t)e->depth;
  char *o = buf_reserve(&e->b, n + 1);
  *o = '\n';
  memset(o + 1, ' ', n);
  e->b.len += n + 1;
}

static void enc_value(struct enc *e, int idx);

/* The element keys of the table at idx, or why they are not 1..n. */
static lua_Integer array_length(struct enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  int strings = 0, others = 0;
  const char *odd = NULL;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n) {
      count++;
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      strings = 1;
    } else {
      others = 1;
      if (!lua_isinteger(L, -1)) odd = lua_type(L, -1) == LUA_TNUMBER ? "float" : luaL_typename(L, -1);
    }
  }
  if (strings && (count || others)) table_fail(e, "a table with mixed keys");
  if (strings) table_fail(e, "a table with string keys marked as an array");
  if (odd) {
    char what[64];
    snprintf(what, sizeof what, "a table with a %s key", odd);
    table_fail(e, what);
  }
  if (others || count != n) table_fail(e, "a sparse array");
  return n;
}

/* The table at idx as an array: keys 1..n.  Stack on entry: idx's first
 * key and value (from lua_next); they are popped. */
static void enc_array(struct enc *e, int idx, struct frame *fr) {
  lua_State *L = e->L;
  size_t mark = e->b.len;
  lua_Integer i = 0;
  buf_add(&e->b, "[", 1);
  fr->key = 0;
  do {   /* fast: lua_next gives 1, 2, 3... in order (the array part) */
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) != i + 1) {
      lua_pop(L, 2);
      goto slow;
    }
    if (i) buf_add(&e->b, ",", 1);
    enc_newline(e);
    fr->index = ++i;
    enc_value(e, lua_gettop(L));
    lua_pop(L, 1);
  } while (lua_next(L, idx));
  goto done;
slow:   /* elements out of order in the hash part, or not an array */
  e->b.len = mark + 1;
  lua_Integer n = array_length(e, idx);
  for (i = 1; i <= n; i++) {
    if (i > 1) buf_add(&e->b, ",", 1);
    enc_newline(e);
    fr->index = i;
    lua_rawgeti(L, idx, i);
    enc_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
done:
  e->depth--;
  enc_newline(e);
  e->depth++;
  buf_add(&e->b, "]", 1);
}

static void enc_member(struct enc *e, struct frame *fr, int first) {
  lua_State *L = e->L;
  int top = lua_gettop(L);   /* stack: key value */
  if (!first) buf_add(&e->b, ",", 1);
  enc_newline(e);
  fr->key = top - 1;
  enc_string(e, top - 1);
  if (e->indent) buf_add(&e->b, ": ", 2);
  else buf_add(&e->b, ":", 1);
  enc_value(e, top);
}

static int key_cmp(const void *a, const void *b) {
  const struct { const char *s; size_t n; } *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* The table at idx as an object.  Stack on entry: its first key and value. */
static void enc_object(struct enc *e, int idx, struct frame *fr) {
  lua_State *L = e->L;
  buf_add(&e->b, "{", 1);
  if (!e->sort) {
    int first = 1;
    do {
      if (lua_type(L, -2) != LUA_TSTRING) {
        lua_pop(L, 1);
        table_fail(e, lua_type(L, -1) == LUA_TNUMBER ? "a table with mixed keys"
                                                   : "a table with a non-string key");
      }
      enc_member(e, fr, first);
      first = 0;
      lua_pop(L, 1);
    } while (lua_next(L, idx));
  } else {   /* keys in byte order: collect them (they stay alive in the table) */
    struct key { const char *s; size_t n; } *keys;
    size_t n = 0, cap = 16;
    lua_pop(L, 2);
    keys = lua_newuserdatauv(L, cap * sizeof *keys, 0);   /* stack: keys */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING)
        table_fail(e, lua_type(L, -1) == LUA_TNUMBER ? "a table with mixed keys"
                                                   : "a table with a non-string key");
      if (n == cap) {
        struct key *k2 = lua_newuserdatauv(L, 2 * cap * sizeof *keys, 0);
        memcpy(k2, keys, n * sizeof *keys);
        lua_replace(L, -3);
        keys = k2;
        cap *= 2;
      }
      keys[n].s = lua_tolstring(L, -1, &keys[n].n);
      n++;
    }
    qsort(keys, n, sizeof *keys, key_cmp);
    for (size_t i = 0; i < n; i++) {
      lua_pushlstring(L, keys[i].s, keys[i].n);
      lua_pushvalue(L, -1);
      lua_rawget(L, idx);   /* stack: keys key value */
      enc_member(e, fr, i == 0);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  e->depth--;
  enc_newline(e);
  e->depth++;
  buf_add(&e->b, "}", 1);
}

static void enc_table(struct enc *e, int idx) {
  lua_State *L = e->L;
  const void *t = lua_topointer(L, idx);
  if (e->depth >= MAX_DEPTH) enc_fail(e, "nesting deeper than 1000");
  for (int d = 0; d < e->depth; d++)
    if (e->f[d].table == t) enc_fail(e, "a reference cycle");
  luaL_checkstack(L, 6, "json: nesting too deep");
  int marked = 0;
  if (lua_getmetatable(L, idx)) {
    marked = lua_rawequal(L, -1, UP_ARRAY_MT);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  if (!lua_next(L, idx)) {
    buf_add(&e->b, marked ? "[]" : "{}", 2);
    return;
  }
  struct frame *fr = &e->f[e->depth++];
  fr->table = t;
  fr->key = 0;
  fr->index = 0;
  if (lua_type(L, -2) == LUA_TSTRING && !marked) enc_object(e, idx, fr);
  else enc_array(e, idx, fr);
  e->depth--;
}

static void enc_value(struct enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: enc_string(e, idx); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      e->b.len += dtoa_format_int(lua_tointeger(L, idx), buf_reserve(&e->b, 24));
    } else {
      double d = lua_tonumber(L, idx);
      if (d != d) enc_fail(e, "NaN");
      if (isinf(d)) enc_fail(e, d > 0 ? "inf" : "-inf");
      e->b.len += dtoa_format(d, buf_reserve(&e->b, DTOA_BUFSIZE));
    }
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) buf_add(&e->b, "true", 4);
    else buf_add(&e->b, "false", 5);
    break;
  case LUA_TNIL: buf_add(&e->b, "null", 4); break;
  case LUA_TTABLE: enc_table(e, idx); break;
  case LUA_TLIGHTUSERDATA:
    if (!lua_touserdata(L, idx)) {   /* json.null */
      buf_add(&e->b, "null", 4);
      break;
    }
    /* fall through */
  default: {
    char what[64];
    snprintf(what, sizeof what, "a %s", luaL_typename(L, idx));
    enc_fail(e, what);
  }
  }
}

/* json.encode(v[, {indent = n, sort_keys = bool}]) -> string */
static int encode(lua_State *L) {
  luaL_checkany(L, 1);
  int indent = 0, sort = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "indent");
    if (!lua_isnil(L, -1)) {
      int ok;
      lua_Integer n = lua_tointegerx(L, -1, &ok);
      luaL_argcheck(L, ok && n >= 0 && n <= 16, 2, "indent must be an integer in 0..16");
      indent = (int)n;
    }
    lua_getfield(L, 2, "sort_keys");
    sort = lua_toboolean(L, -1);
  }
  lua_settop(L, 3);   /* 1: v, 2: options, 3: the buffer */
  struct enc e;   /* on the C stack: nothing to free when an error unwinds */
  e.L = L;
  e.indent = indent;
  e.sort = sort;
  e.depth = 0;
  buf_init(&e.b, L, 3);
  enc_value(&e, 1);
  lua_pushlstring(L, e.b.p, e.b.len);
  buf_keep(&e.b);
  return 1;
}

/* ---- decode ------------------------------------------------------------- */

struct dec {
  lua_State *L;
  const char *s, *p, *end;   /* *end is the string's NUL */
  int depth;
  struct buf b;              /* strings with escapes are assembled here */
  /* sizes of the last array and object seen at each depth: the next
   * table there is made that big (arrays of like records grow no more) */
  unsigned char hint_arr[MAX_DEPTH + 1], hint_obj[MAX_DEPTH + 1];
};

/* Raises "json: WHAT at byte N", N the 1-based position of at. */
static int dec_fail(struct dec *d, const char *what, const char *at) {
  return luaL_error(d->L, "json: %s at byte %I", what, (lua_Integer)(at - d->s) + 1);
}

/* Raises "WHAT expected", or says why at cannot be it. */
static int dec_expected(struct dec *d, const char *what, const char *at, const char *open) {
  if (at == d->end) return dec_fail(d, *open == '[' ? "unterminated array" : "unterminated object", open);
  if (*at == '/') return dec_fail(d, "comments are not JSON", at);
  char msg[48];
  snprintf(msg, sizeof msg, "%s expected", what);
  return dec_fail(d, msg, at);
}

static int dec_unexpected(struct dec *d, const char *at) {
  if (at == d->end) return dec_fail(d, "unexpected end of input", at);
  unsigned char c = (unsigned char)*at;
  if (c == '/') return dec_fail(d, "comments are not JSON", at);
  if (c < 0x20 || c >= 0x7f) {
    char what[48];
    snprintf(what, sizeof what, "unexpected byte 0x%02x", c);
    return dec_fail(d, what, at);
  }
  char what[32];
  snprintf(what, sizeof what, "unexpected character '%c'", c);
  return dec_fail(d, what, at);
}

static inline const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}

/* Which string bytes need a look (0: plain ASCII). */
static unsigned char dec_class[256];

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int c = (unsigned char)p[i], x;
    if (c >= '0' && c <= '9') x = c - '0';
    else if ((c | 32) >= 'a' && (c | 32) <= 'f') x = (c | 32) - 'a' + 10;
    else return -1;
    v = v << 4 | x;
  }
  return v;
}

/* The escape at p (a backslash) appended to d->b; returns what follows. */
static const char *dec_escape(struct dec *d, const char *p) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  char *o = buf_reserve(&d->b, 4);
  const char *simple = p[1] ? strchr(from, p[1]) : NULL;
  if (simple) {
    *o = to[simple - from];
    d->b.len++;
    return p + 2;
  }
  if (p[1] != 'u') return dec_fail(d, "invalid escape", p), p;
  long cp = hex4(p + 2);
  if (cp < 0) return dec_fail(d, "invalid \\u escape", p), p;
  const char *next = p + 6;
  if (cp >= 0xdc00 && cp <= 0xdfff) return dec_fail(d, "lone surrogate", p), p;
  if (cp >= 0xd800 && cp <= 0xdbff) {
    int lo = next[0] == '\\' && next[1] == 'u' ? hex4(next + 2) : -1;
    if (lo < 0xdc00 || lo > 0xdfff) return dec_fail(d, "lone surrogate", p), p;
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    next += 6;
  }
  d->b.len += utf8_encode((uint32_t)cp, o);
  return next;
}

/* The string at d->p (its opening quote), pushed. */
static void dec_string(struct dec *d) {
  const unsigned char *p = (const unsigned char *)d->p + 1, *start = p;
  const unsigned char *end = (const unsigned char *)d->end;
  int copying = 0;
  for (;;) {
    while (!dec_class[*p]) p++;
    if (*p == '"') break;
    if (*p >= 0x80) {
      size_t n = utf8_seq(p, (size_t)(end - p));
      if (!n) dec_fail(d, "invalid UTF-8", (const char *)p);
      p += n;
      continue;
    }
    if (*p != '\\') {
      if (p == end) dec_fail(d, "unterminated string", d->p);
      dec_fail(d, "control character in string", (const char *)p);
    }
    if (!copying) {
      copying = 1;
      d->b.len = 0;
    }
    buf_add(&d->b, (const char *)start, (size_t)(p - start));
    p = (const unsigned char *)dec_escape(d, (const char *)p);
    start = p;
  }
  if (copying) {
    buf_add(&d->b, (const char *)start, (size_t)(p - start));
    lua_pushlstring(d->L, d->b.p, d->b.len);
  } else {
    lua_pushlstring(d->L, (const char *)start, (size_t)(p - start));
  }
  d->p = (const char *)p + 1;
}

/* The number at d->p, pushed: an integer when it has neither fraction nor
 * exponent and fits int64, else a float. */
static void dec_number(struct dec *d) {
  int64_t i;
  double v;
  const char *end;
  int rc = dtoa_parse(d->p, &end, &i, &v);
  if (rc == DTOA_INT) lua_pushinteger(d->L, (lua_Integer)i);
  else if (rc == DTOA_FLOAT) lua_pushnumber(d->L, v);
  else if (rc == DTOA_EMINUS) dec_unexpected(d, end);
  else dec_fail(d, dtoa_strerror(rc), end);
  d->p = end;
}

static void dec_value(struct dec *d);

static void dec_open(struct dec *d) {
  if (++d->depth > MAX_DEPTH) dec_fail(d, "nesting deeper than 1000", d->p);
  luaL_checkstack(d->L, 4, "json: nesting too deep");
  d->p = skip_ws(d->p + 1);
}

static void dec_array(struct dec *d) {
  lua_State *L = d->L;
  const char *open = d->p;
  dec_open(d);
  lua_createtable(L, d->hint_arr[d->depth], 0);
  lua_Integer i = 0;
  if (*d->p != ']') {
    for (;;) {
      dec_value(d);
      lua_rawseti(L, -2, ++i);
      const char *p = skip_ws(d->p);
      if (*p == ']') {
        d->p = p;
        break;
      }
      if (*p != ',') dec_expected(d, "',' or ']'", p, open);
      d->p = skip_ws(p + 1);
      if (*d->p == ']') dec_fail(d, "trailing comma", p);
    }
  }
  d->hint_arr[d->depth] = (unsigned char)(i < 255 ? i : 255);
  d->p++;
  d->depth--;
  lua_pushvalue(L, UP_ARRAY_MT);
  lua_setmetatable(L, -2);
}

static void dec_object(struct dec *d) {
  lua_State *L = d->L;
  const char *open = d->p;
  dec_open(d);
  lua_createtable(L, 0, d->hint_obj[d->depth]);
  int n = 0;
  if (*d->p != '}') {
    for (;; n++) {
      if (*d->p != '"') dec_expected(d, "string key", d->p, open);
      dec_string(d);
      d->p = skip_ws(d->p);
      if (*d->p != ':') dec_expected(d, "':'", d->p, open);
      d->p++;
      dec_value(d);
      lua_rawset(L, -3);   /* a duplicate key: the last wins */
      const char *p = skip_ws(d->p);
      if (*p == '}') {
        d->p = p;
        break;
      }
      if (*p != ',') dec_expected(d, "',' or '}'", p, open);
      d->p = skip_ws(p + 1);
      if (*d->p == '}') dec_fail(d, "trailing comma", p);
    }
  }
  d->hint_obj[d->depth] = (unsigned char)(n < 255 ? n + 1 : 255);
  d->p++;
  d->depth--;
}

static void dec_literal(struct dec *d, const char *word, size_t n) {
  if (strncmp(d->p, word, n) != 0) dec_unexpected(d, d->p);
  d->p += n;
}

static void dec_value(struct dec *d) {
  d->p = skip_ws(d->p);
  switch (*d->p) {
  case '{': dec_object(d); break;
  case '[': dec_array(d); break;
  case '"': dec_string(d); break;
  case 't': dec_literal(d, "true", 4); lua_pushboolean(d->L, 1); break;
  case 'f': dec_literal(d, "false", 5); lua_pushboolean(d->L, 0); break;
  case 'n': dec_literal(d, "null", 4); lua_pushlightuserdata(d->L, NULL); break;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9': dec_number(d); break;
  default: dec_unexpected(d, d->p);
  }
}

/* json.decode(s) -> value */
static int decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 2);   /* 2: the scratch buffer */
  struct dec d;
  d.L = L;
  d.s = d.p = s;
  d.end = s + len;
  d.depth = 0;
  memset(d.hint_arr, 0, sizeof d.hint_arr);
  memset(d.hint_obj, 0, sizeof d.hint_obj);
  buf_init(&d.b, L, 2);
  dec_value(&d);
  const char *p = skip_ws(d.p);
  if (p != d.end) dec_fail(&d, "trailing garbage", p);
  buf_keep(&d.b);
  return 1;
}

/* ---- the module ---------------------------------------------------------- */

/* json.array([t]) -> t, marked to encode as an array */
static int array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushvalue(L, UP_ARRAY_MT);
  lua_setmetatable(L, 1);
  return 1;
}

static int new_module(lua_State *L);

static const luaL_Reg funcs[] = {
  {"encode", encode},
  {"decode", decode},
  {"array", array},
  {"new", new_module},
  {NULL, NULL}
};

/* Pushes a module table; the array metatable is at mt. */
static void push_module(lua_State *L, int mt) {
  lua_newtable(L);
  lua_pushvalue(L, mt);
  lua_pushboolean(L, 0);   /* the buffer cache: none yet */
  luaL_setfuncs(L, funcs, 2);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushvalue(L, mt);
  lua_setfield(L, -2, "array_mt");
  lua_pushvalue(L, mt);
  lua_setfield(L, -2, "empty_array_mt");   /* OpenResty's cjson name */
  lua_newtable(L);
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "empty_array");
  lua_pushliteral(L, "json");
  lua_setfield(L, -2, "_NAME");
  lua_pushliteral(L, LUAHOST_VERSION);
  lua_setfield(L, -2, "_VERSION");
}

/* json.new() -> a module table with its own buffer (cjson.new) */
static int new_module(lua_State *L) {
  push_module(L, UP_ARRAY_MT);
  return 1;
}

static void init_classes(void) {
  for (int c = 0; c < 256; c++) {
    enc_class[c] = c < 0x20 || c == '"' || c == '\\' ? 1 : c >= 0x80 ? 2 : 0;
    dec_class[c] = enc_class[c];
  }
}

int luaopen_json(lua_State *L) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_classes);
  lua_newtable(L);   /* the array metatable */
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  push_module(L, lua_absindex(L, -1));
  return 1;
}
