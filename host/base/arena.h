/*
 * arena: a small-block allocator for one owner, released all at once.
 *
 * Blocks of up to ARENA_SMALL_MAX bytes are carved from a few chunks
 * (ARENA_CHUNKS of ARENA_CHUNK bytes at most, made on demand) in 16-byte
 * size classes; a freed block goes on its class's free list and serves
 * the next request of that class.  Larger blocks, and small ones once the
 * chunks are used up, are malloc's.  The caller passes a block's size back
 * on free and realloc (as Lua's allocator interface does), so blocks carry
 * no header.  arena_release frees the chunks; the caller must have freed
 * its malloc'd blocks (Lua does, in lua_close).
 *
 * Why: a fresh lua_State makes some 600 small blocks while it is built
 * and frees them all when it is closed; a bump pointer and a free-list
 * push are cheaper than malloc's bins.  The chunk cap bounds the memory an
 * arena keeps on its free lists: a state that lives long and churns
 * allocates past it from malloc, which coalesces and returns memory.
 *
 * Threads: an arena belongs to one thread at a time, as the lua_State it
 * serves does; it takes no lock.
 */
#ifndef LUAHOST_BASE_ARENA_H
#define LUAHOST_BASE_ARENA_H

#include <stddef.h>

#define ARENA_SMALL_MAX 512
#define ARENA_CLASSES (ARENA_SMALL_MAX / 16)
#define ARENA_CHUNK (16u << 10)
#define ARENA_CHUNKS 4

struct arena {
  char *next, *end;                 /* the newest chunk's unused part */
  void *free[ARENA_CLASSES];        /* class c: blocks of 16 * (c + 1) bytes */
  char *chunk[ARENA_CHUNKS];        /* made so far, oldest first */
  int nchunks;
  int spilled;                      /* some small blocks are malloc's */
  int closing;                      /* set by arena_closing */
};

/* An all-zero struct arena is empty and ready. */
void *arena_alloc(struct arena *a, size_t n);                 /* n > 0; NULL: out of memory */
void arena_free(struct arena *a, void *p, size_t n);          /* p NULL or of size n */
/* As realloc, for p of size o (p NULL: o ignored), n > 0.  NULL (p still
 * valid) when out of memory. */
void *arena_realloc(struct arena *a, void *p, size_t o, size_t n);
/* From now on freeing a block of the chunks does nothing: they all go at
 * arena_release (the owner is tearing down, as lua_close does). */
void arena_closing(struct arena *a);
void arena_release(struct arena *a);                          /* empty again */

#endif
