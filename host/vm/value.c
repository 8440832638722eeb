/* vm/value: deep copy of Lua values through a neutral byte format.
 *
 * Format (in-process only: native byte order, never stored on disk).  A
 * struct value holds exactly one record; a record is a tag byte and a body:
 *
 *   0x00 NIL       (no body)
 *   0x01 FALSE     (no body)
 *   0x02 TRUE      (no body)
 *   0x03 INT       varint(zigzag(i))                 lua_Integer, 64-bit
 *   0x04 FLOAT     8 bytes: the double's bits        NaN, -0.0 kept
 *   0x05 STR       varint(len) bytes
 *   0x06 TABLE     u32 narr, u32 nhash, narr records (the values of keys
 *                  1..narr, none nil), nhash pairs of records (key, value;
 *                  neither nil, no NaN key)
 *   0x07 TABLE0    an empty table (no body)
 *   0x08 FUNC      u32 len, the lua_dump of the function (strip = 0)
 *   0x09 HANDLE    varint(i): the host handle struct value.refs[i]
 *   0x0a REF       varint(id): the object with ordinal id again
 *
 * varint: little-endian base 128, at most 10 bytes; u32: 4 bytes, native.
 * Objects (TABLE, TABLE0, FUNC, HANDLE records) are numbered 0, 1, 2...
 * in the order their records start.  When the encoder meets an object a
 * second time it writes REF and sets bit 0x80 (SHARED) on the tag of the
 * object's first record, so the decoder keeps only shared objects in its
 * id table, and only when there is one.  A cycle is a REF to an enclosing
 * table, which the decoder registered before reading its contents.
 * narr and nhash are patched in once the table has been walked (one
 * lua_next pass: keys 1, 2, 3... met before any other key go to the array
 * part).  Decoding checks every length, count and id against the bytes
 * left and the objects seen, bounds nesting by VALUE_MAX_DEPTH and refuses
 * trailing bytes.
 *
 * Encoding runs inside lua_pcall of a C function (the registry lookups
 * that identify handles and the handle type's get may raise); values that
 * cannot hold a table or a function skip that.  Objects already seen are
 * found in a small open-addressing hash keyed by lua_topointer, on the C
 * stack until it outgrows 32 slots. */
#include "vm/value.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static_assert(sizeof(lua_Number) == 8, "FLOAT records hold 8-byte doubles");

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_TABLE0, T_FUNC,
  T_HANDLE, T_REF, T_SHARED = 0x80
};

#define MAX_HANDLE_TYPES 8
#define INLINE_SLOTS 32
#define MAX_OBJECTS 0x7fffffffu

/* Registered handle types: written under reg_lock, slot before count
 * (release); read by any thread up to the count it loads (acquire). */
static const struct value_handle_type *handle_types[MAX_HANDLE_TYPES];
static atomic_int n_handle_types;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- encoding -------------------------------------------------------- */

struct enc_slot {
  const void *p;        /* NULL: free */
  uint32_t id;
  size_t pos;           /* offset of the object's first tag byte */
};

struct enc_frame {
  int key;              /* stack index of the key, or 0: the key is i */
  lua_Integer i;
};

struct enc {
  lua_State *L;
  struct value *out;
  const char *root;
  char *err;
  size_t errlen;
  int status;           /* -1 until the walk succeeds */
  int depth;            /* tables entered */
  uint32_t nobj;
  size_t mask;          /* slots - 1 */
  size_t used;
  struct enc_slot *slots;
  struct enc_frame *path;   /* VALUE_MAX_DEPTH frames, on enc_protected's stack */
  struct enc_slot inl[INLINE_SLOTS];
};

static int enc_value(struct enc *e, int idx);

static int buf_grow(struct value *v, size_t need) {
  size_t cap = v->cap ? v->cap : 256;
  while (cap - v->len < need) {
    if (cap > SIZE_MAX / 2) return -1;
    cap *= 2;
  }
  char *d = realloc(v->data, cap);
  if (!d) return -1;
  v->data = d;
  v->cap = cap;
  return 0;
}

static inline int buf_reserve(struct value *v, size_t n) {
  return v->cap - v->len >= n ? 0 : buf_grow(v, n);
}

/* Writes x as a varint at p (10 bytes of room); returns the bytes used. */
static inline size_t put_varint(unsigned char *p, uint64_t x) {
  size_t n = 0;
  while (x >= 0x80) {
    p[n++] = (unsigned char)(x | 0x80);
    x >>= 7;
  }
  p[n++] = (unsigned char)x;
  return n;
}

/* Appends a tag and a varint (room for them must be reserved). */
static inline void put_tag_varint(struct value *o, int tag, uint64_t x) {
  unsigned char *p = (unsigned char *)o->data + o->len;
  p[0] = (unsigned char)tag;
  o->len += 1 + put_varint(p + 1, x);
}

static const char *const reserved[] = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
  "true", "until", "while"};

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (strlen(reserved[i]) == n && memcmp(reserved[i], s, n) == 0) return 0;
  return 1;
}

/* A bounded string builder over the caller's err buffer. */
struct msg {
  char *p;
  size_t cap, len;
};

static void msg_add(struct msg *m, const char *fmt, ...) {
  if (m->len + 1 >= m->cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
  va_end(ap);
  if (n > 0) m->len += (size_t)n < m->cap - m->len ? (size_t)n : m->cap - m->len - 1;
}

/* ["..."] with the key quoted as %q would, except that control bytes are
 * always \ddd and newlines \n, so the message stays on one line. */
static void msg_quoted_key(struct msg *m, const char *s, size_t n) {
  msg_add(m, "[\"");
  for (size_t i = 0; i < n && m->len + 1 < m->cap; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
    case '"': msg_add(m, "\\\""); break;
    case '\\': msg_add(m, "\\\\"); break;
    case '\n': msg_add(m, "\\n"); break;
    case '\r': msg_add(m, "\\r"); break;
    case '\t': msg_add(m, "\\t"); break;
    default:
      if (c < 0x20 || c == 0x7f) msg_add(m, "\\%03d", c);
      else msg_add(m, "%c", c);
    }
  }
  msg_add(m, "\"]");
}

/* Sets err to "<path>: <message>" (the path down to the current depth, or
 * the root alone when with_path is 0); returns -1. */
static int enc_fail_at(struct enc *e, int with_path, const char *fmt, ...) {
  if (!e->err || e->errlen == 0) return -1;
  /* the reason first: a long path is cut ("...") so the reason always fits */
  char reason[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  size_t tail = strlen(reason) + 2 + 3;   /* ": " reason, "..." */
  struct msg m = {e->err, e->errlen > tail + 1 ? e->errlen - tail : 1, 0};
  e->err[0] = '\0';
  msg_add(&m, "%s", e->root);
  for (int d = 0; with_path && d < e->depth; d++) {
    const struct enc_frame *f = &e->path[d];
    if (f->key == 0) {
      msg_add(&m, "[%lld]", (long long)f->i);
    } else if (lua_type(e->L, f->key) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(e->L, f->key, &n);
      if (is_identifier(s, n)) msg_add(&m, ".%s", s);
      else msg_quoted_key(&m, s, n);
    } else if (lua_isinteger(e->L, f->key)) {
      msg_add(&m, "[%lld]", (long long)lua_tointeger(e->L, f->key));
    } else {
      msg_add(&m, "[?]");
    }
  }
  int cut = m.len + 1 >= m.cap;
  m.cap = e->errlen;
  if (cut) msg_add(&m, "...");
  msg_add(&m, ": %s", reason);
  return -1;
}

#define enc_fail(e, ...) enc_fail_at((e), 1, __VA_ARGS__)

static inline size_t slot_hash(const void *p, size_t mask) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15u;
  return (size_t)(h >> 32) & mask;
}

static int enc_cache_grow(struct enc *e) {
  size_t n = (e->mask + 1) * 2;
  struct enc_slot *s = calloc(n, sizeof *s);
  if (!s) return -1;
  for (size_t i = 0; i <= e->mask; i++) {
    if (!e->slots[i].p) continue;
    size_t j = slot_hash(e->slots[i].p, n - 1);
    while (s[j].p) j = (j + 1) & (n - 1);
    s[j] = e->slots[i];
  }
  if (e->slots != e->inl) free(e->slots);
  e->slots = s;
  e->mask = n - 1;
  return 0;
}

/* The object p is about to be written.  Seen before: writes a REF to it,
 * marks its first record SHARED and returns 1.  New: numbers it and
 * returns 0 (its record starts at the current length).  -1 on failure. */
static int enc_seen(struct enc *e, const void *p) {
  size_t j = slot_hash(p, e->mask);
  for (; e->slots[j].p; j = (j + 1) & e->mask) {
    if (e->slots[j].p != p) continue;
    if (buf_reserve(e->out, 11) < 0) return enc_fail(e, "out of memory");
    e->out->data[e->slots[j].pos] |= (char)T_SHARED;
    put_tag_varint(e->out, T_REF, e->slots[j].id);
    return 1;
  }
  if (e->nobj >= MAX_OBJECTS) return enc_fail(e, "too many tables and functions");
  if ((e->used + 1) * 2 > e->mask + 1) {
    if (enc_cache_grow(e) < 0) return enc_fail(e, "out of memory");
    j = slot_hash(p, e->mask);
    while (e->slots[j].p) j = (j + 1) & e->mask;
  }
  e->slots[j] = (struct enc_slot){p, e->nobj++, e->out->len};
  e->used++;
  return 0;
}

/* One lua_next pass.  Keys 1, 2, 3... met before any other key form the
 * array part (Lua visits its array part first, in order); the rest are
 * written as key, value pairs.  Stack: unchanged (key and value are pushed
 * and popped per entry). */
static int enc_table(struct enc *e, int idx) {
  lua_State *L = e->L;
  struct value *o = e->out;
  if (lua_getmetatable(L, idx)) {   /* refused, unless marked VALUE_PLAIN_MT */
    lua_pushliteral(L, VALUE_PLAIN_MT);
    int plain = lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (!plain) return enc_fail(e, "cannot copy a table with a metatable");
  }
  int r = enc_seen(e, lua_topointer(L, idx));
  if (r) return r < 0 ? -1 : 0;
  if (e->depth >= VALUE_MAX_DEPTH)
    return enc_fail_at(e, 0, "table nested deeper than %d levels", VALUE_MAX_DEPTH);
  if (!lua_checkstack(L, 4)) return enc_fail(e, "Lua stack exhausted");
  if (buf_reserve(o, 9) < 0) return enc_fail(e, "out of memory");
  size_t at = o->len;
  o->data[at] = T_TABLE;
  o->len += 9;
  struct enc_frame *f = &e->path[e->depth++];
  uint64_t narr = 0, nhash = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {              /* stack: ... key value */
    int top = lua_gettop(L);
    if (nhash == 0 && lua_isinteger(L, -2) && (uint64_t)lua_tointeger(L, -2) == narr + 1) {
      f->key = 0;
      f->i = (lua_Integer)++narr;
    } else {
      f->key = top - 1;
      if (enc_value(e, top - 1) < 0) return -1;
      nhash++;
    }
    if (enc_value(e, top) < 0) return -1;
    lua_pop(L, 1);                        /* stack: ... key */
  }
  e->depth--;
  if (narr > UINT32_MAX || nhash > UINT32_MAX) return enc_fail(e, "table too large");
  if (narr == 0 && nhash == 0) {
    o->data[at] = (char)((o->data[at] & T_SHARED) | T_TABLE0);
    o->len = at + 1;
    return 0;
  }
  uint32_t n32[2] = {(uint32_t)narr, (uint32_t)nhash};
  memcpy(o->data + at + 1, n32, 8);
  return 0;
}

static int enc_writer(lua_State *L, const void *p, size_t n, void *ud) {
  struct value *o = ud;
  if (buf_reserve(o, n) < 0) return 1;
  memcpy(o->data + o->len, p, n);
  o->len += n;
  return 0;
}

static int enc_function(struct enc *e, int idx) {
  lua_State *L = e->L;
  struct value *o = e->out;
  if (lua_iscfunction(L, idx)) return enc_fail(e, "cannot copy a C function");
  const char *name;
  for (int i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
    if (i != 1 || strcmp(name, "_ENV") != 0) {
      enc_fail(e, "cannot copy a function with upvalue '%s'", name);
      lua_pop(L, 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  int r = enc_seen(e, lua_topointer(L, idx));
  if (r) return r < 0 ? -1 : 0;
  if (buf_reserve(o, 5) < 0) return enc_fail(e, "out of memory");
  size_t at = o->len;
  o->data[at] = T_FUNC;
  o->len += 5;
  lua_pushvalue(L, idx);
  int st = lua_dump(L, enc_writer, o, 0);
  lua_pop(L, 1);
  if (st != 0) return enc_fail(e, "out of memory");
  size_t n = o->len - at - 5;
  if (n > UINT32_MAX) return enc_fail(e, "function too large");
  uint32_t n32 = (uint32_t)n;
  memcpy(o->data + at + 1, &n32, 4);
  return 0;
}

/* The registered type whose metatable the userdata at idx has, or NULL. */
static const struct value_handle_type *handle_type_of(lua_State *L, int idx) {
  int n = atomic_load_explicit(&n_handle_types, memory_order_acquire);
  if (n == 0 || !lua_getmetatable(L, idx)) return NULL;
  const struct value_handle_type *found = NULL;
  for (int i = 0; i < n && !found; i++) {
    lua_getfield(L, LUA_REGISTRYINDEX, handle_types[i]->mt_name);
    if (lua_rawequal(L, -1, -2)) found = handle_types[i];
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return found;
}

static int enc_userdata(struct enc *e, int idx) {
  struct value *o = e->out;
  if (!lua_checkstack(e->L, 2)) return enc_fail(e, "Lua stack exhausted");
  const struct value_handle_type *t = handle_type_of(e->L, idx);
  void *obj = t ? t->get(e->L, idx) : NULL;
  if (!obj) return enc_fail(e, "cannot copy a userdata");
  int r = enc_seen(e, lua_topointer(e->L, idx));
  if (r) return r < 0 ? -1 : 0;
  if (o->nrefs == o->refs_cap) {
    int cap = o->refs_cap ? o->refs_cap * 2 : 4;
    struct value_ref *refs = cap > 0 ? realloc(o->refs, (size_t)cap * sizeof *refs) : NULL;
    if (!refs) return enc_fail(e, "out of memory");
    o->refs = refs;
    o->refs_cap = cap;
  }
  if (buf_reserve(o, 11) < 0) return enc_fail(e, "out of memory");
  t->retain(obj);
  o->refs[o->nrefs] = (struct value_ref){t, obj};
  put_tag_varint(o, T_HANDLE, (uint64_t)o->nrefs++);
  return 0;
}

/* Appends the record of the value at idx (an absolute index). */
static int enc_value(struct enc *e, int idx) {
  lua_State *L = e->L;
  struct value *o = e->out;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TBOOLEAN:
    if (buf_reserve(o, 1) < 0) return enc_fail(e, "out of memory");
    o->data[o->len++] = lua_isnil(L, idx) ? T_NIL : lua_toboolean(L, idx) ? T_TRUE : T_FALSE;
    return 0;
  case LUA_TNUMBER:
    if (buf_reserve(o, 11) < 0) return enc_fail(e, "out of memory");
    if (lua_isinteger(L, idx)) {
      uint64_t u = (uint64_t)lua_tointeger(L, idx);
      put_tag_varint(o, T_INT, (u << 1) ^ (0 - (u >> 63)));
    } else {
      lua_Number d = lua_tonumber(L, idx);
      o->data[o->len] = T_FLOAT;
      memcpy(o->data + o->len + 1, &d, 8);
      o->len += 9;
    }
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (n > SIZE_MAX - 11 || buf_reserve(o, n + 11) < 0) return enc_fail(e, "out of memory");
    put_tag_varint(o, T_STR, n);
    memcpy(o->data + o->len, s, n);
    o->len += n;
    return 0;
  }
  case LUA_TTABLE: return enc_table(e, idx);
  case LUA_TFUNCTION: return enc_function(e, idx);
  case LUA_TUSERDATA: return enc_userdata(e, idx);
  case LUA_TLIGHTUSERDATA: return enc_fail(e, "cannot copy a light userdata");
  case LUA_TTHREAD: return enc_fail(e, "cannot copy a thread (coroutine)");
  default: return enc_fail(e, "cannot copy a %s", luaL_typename(L, idx));
  }
}

/* Runs the walk in protected mode.  Stack: 1 = struct enc, 2 = the value.
 * The path lives here, not in value_encode's frame: a thread that only
 * ever encodes scalars never touches those stack pages. */
static int enc_protected(lua_State *L) {
  struct enc_frame path[VALUE_MAX_DEPTH];
  struct enc *e = lua_touserdata(L, 1);
  e->L = L;
  e->path = path;
  e->status = enc_value(e, 2);
  e->path = NULL;
  return 0;
}

int value_encode(lua_State *L, int idx, const char *root, struct value *out,
                 char *err, size_t errlen) {
  struct enc e;
  e.L = L;
  e.out = out;
  e.root = root ? root : "value";
  e.err = err;
  e.errlen = errlen;
  e.status = -1;
  e.depth = 0;
  e.path = NULL;
  e.nobj = 0;
  e.mask = INLINE_SLOTS - 1;
  e.used = 0;
  e.slots = e.inl;
  size_t len0 = out->len;
  int nrefs0 = out->nrefs;
  if (err && errlen) err[0] = '\0';
  idx = lua_absindex(L, idx);
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING) {
    e.status = enc_value(&e, idx);      /* nothing here can raise */
  } else if (!lua_checkstack(L, 3)) {
    enc_fail(&e, "Lua stack exhausted");
  } else {
    memset(e.inl, 0, sizeof e.inl);
    lua_pushcfunction(L, enc_protected);
    lua_pushlightuserdata(L, &e);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error";
      e.depth = 0;
      enc_fail(&e, "%s", m);
      e.status = -1;
      lua_pop(L, 1);
    }
    if (e.slots != e.inl) free(e.slots);
  }
  if (e.status < 0) {
    out->len = len0;
    while (out->nrefs > nrefs0) {
      struct value_ref *r = &out->refs[--out->nrefs];
      r->type->release(r->obj);
    }
  }
  return e.status;
}

/* ---- decoding -------------------------------------------------------- */

struct dec {
  lua_State *L;
  const unsigned char *p, *end;
  const struct value *v;
  int allow_functions;
  int ids;              /* stack slot of the id table (nil until needed) */
  int have_ids;
  int depth;
  uint32_t nobj;
};

static int dec_value(struct dec *d);

static int get_varint(struct dec *d, uint64_t *x) {
  uint64_t r = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (d->p >= d->end) return -1;
    unsigned c = *d->p++;
    if (shift == 63 && c > 1) return -1;
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *x = r;
      return 0;
    }
  }
  return -1;
}

static int get_u32(struct dec *d, uint32_t *x) {
  if (d->end - d->p < 4) return -1;
  memcpy(x, d->p, 4);
  d->p += 4;
  return 0;
}

/* Numbers the object at the top; a SHARED one goes into the id table. */
static void dec_register(struct dec *d, int shared) {
  uint32_t id = d->nobj++;
  if (!shared) return;
  lua_State *L = d->L;
  if (!d->have_ids) {
    lua_newtable(L);
    lua_replace(L, d->ids);
    d->have_ids = 1;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->ids, (lua_Integer)id + 1);
}

static int dec_table(struct dec *d, int shared) {
  lua_State *L = d->L;
  uint32_t narr, nhash;
  if (d->depth >= VALUE_MAX_DEPTH || get_u32(d, &narr) < 0 || get_u32(d, &nhash) < 0)
    return -1;
  /* every record takes a byte at least */
  if ((uint64_t)narr + 2 * (uint64_t)nhash > (uint64_t)(d->end - d->p)) return -1;
  if (narr + (uint64_t)nhash == 0 || !lua_checkstack(L, 6)) return -1;
  lua_createtable(L, narr > INT_MAX ? INT_MAX : (int)narr, nhash > INT_MAX ? INT_MAX : (int)nhash);
  int t = lua_gettop(L);
  dec_register(d, shared);
  d->depth++;
  for (uint32_t i = 1; i <= narr; i++) {
    if (dec_value(d) < 0 || lua_isnil(L, -1)) return -1;
    lua_rawseti(L, t, i);
  }
  for (uint32_t i = 0; i < nhash; i++) {
    if (dec_value(d) < 0) return -1;       /* stack: t key */
    int kt = lua_type(L, -1);
    if (kt == LUA_TNIL) return -1;
    if (kt == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number k = lua_tonumber(L, -1);
      if (k != k) return -1;
    }
    if (dec_value(d) < 0 || lua_isnil(L, -1)) return -1;   /* stack: t key value */
    lua_rawset(L, t);
  }
  d->depth--;
  return 0;
}

static int dec_function(struct dec *d, int shared) {
  lua_State *L = d->L;
  uint32_t n;
  if (!d->allow_functions || get_u32(d, &n) < 0 || n > (uint64_t)(d->end - d->p)) return -1;
  int st = luaL_loadbufferx(L, (const char *)d->p, n, "=(copied function)", "b");
  if (st == LUA_ERRMEM) lua_error(L);
  if (st != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  d->p += n;
  if (lua_getupvalue(L, -1, 2)) {          /* only _ENV may come along */
    lua_pop(L, 2);
    return -1;
  }
  dec_register(d, shared);
  return 0;
}

/* Pushes the value of the next record.  -1 when it is malformed (the stack
 * may then hold partial results: value_decode resets it). */
static int dec_value(struct dec *d) {
  lua_State *L = d->L;
  uint64_t x;
  if (d->p >= d->end) return -1;
  int tag = *d->p++;
  int shared = tag & T_SHARED;
  tag &= ~T_SHARED;
  if (shared && tag != T_TABLE && tag != T_TABLE0 && tag != T_FUNC && tag != T_HANDLE)
    return -1;
  switch (tag) {
  case T_NIL: lua_pushnil(L); return 0;
  case T_FALSE: lua_pushboolean(L, 0); return 0;
  case T_TRUE: lua_pushboolean(L, 1); return 0;
  case T_INT:
    if (get_varint(d, &x) < 0) return -1;
    lua_pushinteger(L, (lua_Integer)((x >> 1) ^ (0 - (x & 1))));
    return 0;
  case T_FLOAT: {
    lua_Number n;
    if (d->end - d->p < 8) return -1;
    memcpy(&n, d->p, 8);
    d->p += 8;
    lua_pushnumber(L, n);
    return 0;
  }
  case T_STR:
    if (get_varint(d, &x) < 0 || x > (uint64_t)(d->end - d->p)) return -1;
    lua_pushlstring(L, (const char *)d->p, (size_t)x);
    d->p += x;
    return 0;
  case T_TABLE: return dec_table(d, shared);
  case T_TABLE0:
    if (d->depth >= VALUE_MAX_DEPTH) return -1;
    lua_newtable(L);
    dec_register(d, shared);
    return 0;
  case T_FUNC: return dec_function(d, shared);
  case T_HANDLE: {
    if (get_varint(d, &x) < 0 || x >= (uint64_t)(d->v->nrefs > 0 ? d->v->nrefs : 0)) return -1;
    const struct value_ref *r = &d->v->refs[x];
    if (!r->type || !lua_checkstack(L, 8)) return -1;
    r->type->push(L, r->obj);
    dec_register(d, shared);
    return 0;
  }
  case T_REF:
    if (get_varint(d, &x) < 0 || x >= d->nobj || !d->have_ids) return -1;
    if (lua_rawgeti(L, d->ids, (lua_Integer)x + 1) == LUA_TNIL) return -1;
    return 0;
  default: return -1;
  }
}

int value_decode(lua_State *L, const struct value *v, int allow_functions) {
  if (!v->data || v->len == 0 || !lua_checkstack(L, 4)) return -1;
  int base = lua_gettop(L);
  lua_pushnil(L);                            /* stack: ids(nil) */
  struct dec d = {L, (const unsigned char *)v->data, (const unsigned char *)v->data + v->len,
                  v, allow_functions, base + 1, 0, 0, 0};
  if (dec_value(&d) < 0 || d.p != d.end) {
    lua_settop(L, base);
    return -1;
  }
  lua_replace(L, base + 1);                  /* stack: value */
  return 0;
}

/* ---- ownership -------------------------------------------------------- */

int value_register_handle_type(const struct value_handle_type *t) {
  int rc = 0;
  pthread_mutex_lock(&reg_lock);
  int n = atomic_load_explicit(&n_handle_types, memory_order_relaxed);
  for (int i = 0; i < n; i++)
    if (handle_types[i] == t) goto done;
  if (n == MAX_HANDLE_TYPES) { rc = -1; goto done; }
  handle_types[n] = t;
  atomic_store_explicit(&n_handle_types, n + 1, memory_order_release);
done:
  pthread_mutex_unlock(&reg_lock);
  return rc;
}

static void release_refs(struct value *v) {
  for (int i = 0; i < v->nrefs; i++) v->refs[i].type->release(v->refs[i].obj);
  v->nrefs = 0;
}

void value_reset(struct value *v) {
  release_refs(v);
  v->len = 0;
}

void value_free(struct value *v) {
  release_refs(v);
  free(v->data);
  free(v->refs);
  memset(v, 0, sizeof *v);
}
