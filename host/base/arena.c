/* arena: size-class blocks from a few chunks, for one lua_State. */
#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer the unused and freed parts of a chunk are
 * poisoned, so that a use after free inside the arena is still caught. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SMALL(n) ((n) <= ARENA_SMALL_MAX)
#define CLASS(n) (((n) + 15) / 16 - 1)        /* n in 1..ARENA_SMALL_MAX */
#define CLASS_SIZE(c) (16 * ((size_t)(c) + 1))

/* p, a small block, came from the chunks (until one spilled to malloc,
 * every small block did) */
static int in_chunks(const struct arena *a, const void *p) {
  if (!a->spilled) return 1;
  for (int i = a->nchunks - 1; i >= 0; i--)
    if ((uintptr_t)p - (uintptr_t)a->chunk[i] < ARENA_CHUNK) return 1;
  return 0;
}

/* The rest of the current chunk goes on a free list (whole 16-byte
 * blocks: the chunk and every block size are multiples of 16). */
static void retire_rest(struct arena *a) {
  size_t rest = (size_t)(a->end - a->next);
  if (rest >= 16) {
    if (rest > ARENA_SMALL_MAX) rest = ARENA_SMALL_MAX;
    int c = (int)(rest / 16) - 1;
    UNPOISON(a->next, sizeof(void *));
    *(void **)a->next = a->free[c];
    a->free[c] = a->next;
    POISON(a->next, CLASS_SIZE(c));
  }
  a->next = a->end;
}

/* A block of class c from the free list or the chunks; NULL when the
 * chunks are used up (the caller then takes malloc's). */
static void *take(struct arena *a, int c) {
  size_t size = CLASS_SIZE(c);
  void *p = a->free[c];
  if (p) {
    UNPOISON(p, size);
    a->free[c] = *(void **)p;
    return p;
  }
  if (!a->next || (size_t)(a->end - a->next) < size) {
    if (a->nchunks == ARENA_CHUNKS) return NULL;
    char *chunk = malloc(ARENA_CHUNK);
    if (!chunk) return NULL;
    if (a->next) retire_rest(a);
    POISON(chunk, ARENA_CHUNK);
    a->chunk[a->nchunks++] = chunk;
    a->next = chunk;
    a->end = chunk + ARENA_CHUNK;
  }
  p = a->next;
  a->next += size;
  UNPOISON(p, size);
  return p;
}

void *arena_alloc(struct arena *a, size_t n) {
  if (!SMALL(n)) return malloc(n);
  void *p = take(a, CLASS(n));
  if (!p && (p = malloc(n))) a->spilled = 1;
  return p;
}

void arena_free(struct arena *a, void *p, size_t n) {
  if (!p) return;
  if (!SMALL(n) || !in_chunks(a, p)) {
    free(p);
    return;
  }
  int c = CLASS(n);
  if (a->closing) {   /* goes with its chunk */
    POISON(p, CLASS_SIZE(c));
    return;
  }
  *(void **)p = a->free[c];
  a->free[c] = p;
  POISON(p, CLASS_SIZE(c));
}

void *arena_realloc(struct arena *a, void *p, size_t o, size_t n) {
  if (!p) return arena_alloc(a, n);
  int mine = SMALL(o) && in_chunks(a, p);
  if (mine && SMALL(n) && CLASS(n) == CLASS(o)) return p;
  if (!mine && !SMALL(n)) return realloc(p, n);
  void *q = arena_alloc(a, n);
  if (!q) {
    if (n > o) return NULL;
    /* A shrink keeps its block rather than fail: it is later freed as
     * size n (a chunk block goes to a smaller class; one of malloc's must
     * then be told from the chunks' by address). */
    if (!mine) a->spilled = 1;
    return p;
  }
  memcpy(q, p, o < n ? o : n);
  arena_free(a, p, o);
  return q;
}

void arena_closing(struct arena *a) { a->closing = 1; }

void arena_release(struct arena *a) {
  for (int i = 0; i < a->nchunks; i++) {
    UNPOISON(a->chunk[i], ARENA_CHUNK);
    free(a->chunk[i]);
  }
  memset(a, 0, sizeof *a);
}
