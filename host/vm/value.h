/*
 * vm/value: the one way a Lua value crosses from one lua_State to another.
 * The sending thread serialises the value into a neutral byte string
 * (value_encode); the receiving thread rebuilds it in its own state
 * (value_decode).  No thread ever touches another thread's state.
 *
 * What crosses (SPEC §5): nil, booleans, integers and floats (subtype
 * kept), strings (binary-safe), tables (shape, shared references and cycles
 * kept; a metatable is refused, except one whose field VALUE_PLAIN_MT is
 * true: it is dropped and the copy is a plain table of the fields the
 * table holds, as for a request's `req`), Lua functions whose only upvalue is _ENV
 * (their code, via lua_dump; they get the receiver's globals), and host
 * handles of a registered type (by reference: the encoded value holds a
 * retain on each).  Anything else is refused with a message naming its
 * path ("args[2].conn: cannot copy a userdata").
 *
 * Threads: value_encode and value_decode run on the thread that owns the
 * lua_State they are given.  A struct value belongs to whoever holds it and
 * may move between threads; it is freed with value_free.  Handle types are
 * registered by any thread (once each, e.g. by the first state that loads
 * the module owning them) and are never removed.  The byte format is in-process only (native byte order); it is
 * described at the top of value.c.
 */
#ifndef LUAHOST_VM_VALUE_H
#define LUAHOST_VM_VALUE_H

#include <stddef.h>

#include <lua.h>

/* Host objects that cross states by reference (shared dicts and queues).
 * Registered by any thread; registration is locked and published
 * atomically, so other threads may encode at the same time. */
struct value_handle_type {
  const char *mt_name;                       /* metatable name of its proxy userdata */
  void *(*get)(lua_State *L, int idx);       /* the C object behind the proxy at idx */
  void (*retain)(void *obj);                 /* refcount +1 (thread-safe) */
  void (*release)(void *obj);                /* refcount -1 (thread-safe) */
  void (*push)(lua_State *L, void *obj);     /* pushes a new proxy for obj (retains) */
};
/* 0, or -1 when the table of types is full (8).  Registering the same type
 * twice is harmless. */
int value_register_handle_type(const struct value_handle_type *t);

/* An encoded value: bytes plus the handles it holds a reference on. Owned by
 * whoever holds it; movable between threads; freed with value_free.  A
 * zeroed struct is an empty value. */
struct value {
  char *data;
  size_t len, cap;
  struct value_ref {
    const struct value_handle_type *type;
    void *obj;
  } *refs;
  int nrefs, refs_cap;
};

#define VALUE_MAX_DEPTH 200

/* Encodes the Lua value at idx of L into out, appending to what out holds
 * (decode expects one value per struct value, so give it a zeroed or reset
 * one).  root names the value in messages ("args", "value").  0, or -1 with
 * err set to a message naming the path and the type, e.g.
 * "args[2].conn: cannot copy a userdata"; out is then as it was.  Never
 * raises, even at memory limits, and leaves L's stack as it found it. */
int value_encode(lua_State *L, int idx, const char *root, struct value *out,
                 char *err, size_t errlen);

/* Pushes the decoded value onto L.  0, or -1 (nothing pushed) when the
 * bytes are malformed; arbitrary bytes never crash it.  May raise a Lua
 * memory error (run it in protected mode).  Functions are loaded with
 * luaL_loadbufferx(..., "b") and get L's globals as their _ENV;
 * allow_functions = 0 refuses function records (-1): use it for bytes that
 * did not come from value_encode in this process. */
int value_decode(lua_State *L, const struct value *v, int allow_functions);

/* len = 0 and the held handles released; the buffers are kept. */
void value_reset(struct value *v);
/* Releases the held handles and frees the buffers; v is then zeroed. */
void value_free(struct value *v);

/* The metatable field that lets a table cross as a plain table. */
#define VALUE_PLAIN_MT "__luahost_plain"

#endif
