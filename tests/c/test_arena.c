/* arena: size classes, reuse, the chunk cap, and contents kept across
 * realloc; a random run against a shadow copy of every block. */
#include <stdint.h>

#include "base/arena.h"
#include "runner.h"

#define CLASS_OF(n) (((n) + 15) / 16 - 1)

static int in_arena(const struct arena *a, const void *p) {
  for (int i = 0; i < a->nchunks; i++)
    if ((uintptr_t)p - (uintptr_t)a->chunk[i] < ARENA_CHUNK) return 1;
  return 0;
}

TEST(a_freed_block_serves_the_next_request_of_its_class) {
  struct arena a = {0};
  char *p = arena_alloc(&a, 24);
  ASSERT(p && in_arena(&a, p));
  arena_free(&a, p, 24);
  ASSERT(arena_alloc(&a, 17) == p);            /* 17..32: one class */
  char *q = arena_alloc(&a, 33);               /* the next class: a new block */
  ASSERT(q && q != p);
  ASSERT((uintptr_t)p % 16 == 0 && (uintptr_t)q % 16 == 0);
  arena_free(&a, q, 33);
  arena_free(&a, p, 17);
  arena_release(&a);
  ASSERT_INT_EQ(a.nchunks, 0);
}

TEST(large_blocks_are_mallocs) {
  struct arena a = {0};
  char *p = arena_alloc(&a, ARENA_SMALL_MAX + 1);
  ASSERT(p && !in_arena(&a, p));
  memset(p, 7, ARENA_SMALL_MAX + 1);
  arena_free(&a, p, ARENA_SMALL_MAX + 1);
  arena_release(&a);
}

TEST(realloc_keeps_contents_across_classes_and_sizes) {
  struct arena a = {0};
  char *p = arena_alloc(&a, 10);
  memcpy(p, "abcdefghi", 10);
  ASSERT(arena_realloc(&a, p, 10, 16) == p);   /* same class: in place */
  char *q = arena_realloc(&a, p, 16, 100);     /* another class */
  ASSERT(q && q != p && in_arena(&a, q));
  ASSERT_STR_EQ(q, "abcdefghi");
  char *r = arena_realloc(&a, q, 100, 5000);   /* to malloc's */
  ASSERT(r && !in_arena(&a, r));
  ASSERT_STR_EQ(r, "abcdefghi");
  char *s = arena_realloc(&a, r, 5000, 9000);
  ASSERT_STR_EQ(s, "abcdefghi");
  char *t = arena_realloc(&a, s, 9000, 10);    /* back into the arena */
  ASSERT(t && in_arena(&a, t));
  ASSERT_MEM_EQ(t, 9, "abcdefghi");
  arena_free(&a, t, 10);
  arena_release(&a);
}

TEST(past_the_chunk_cap_small_blocks_come_from_malloc) {
  struct arena a = {0};
  enum { N = ARENA_CHUNKS * ARENA_CHUNK / 64 + 100 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = arena_alloc(&a, 64);
    ASSERT(blocks[i]);
    memset(blocks[i], i & 0xff, 64);
  }
  ASSERT_INT_EQ(a.nchunks, ARENA_CHUNKS);
  ASSERT(!in_arena(&a, blocks[N - 1]));
  for (int i = 0; i < N; i++) {
    ASSERT_INT_EQ(((unsigned char *)blocks[i])[63], i & 0xff);
    arena_free(&a, blocks[i], 64);   /* malloc's go back to free(): no leak */
  }
  arena_release(&a);
}

/* Every live block holds its own byte pattern: a block handed out twice,
 * or a copy that lost bytes, shows as a changed pattern. */
struct live { unsigned char *p; size_t n; unsigned char tag; };

static void fill(struct live *l) { memset(l->p, l->tag, l->n); }
static void check(const struct live *l) {
  for (size_t i = 0; i < l->n; i++)
    if (l->p[i] != l->tag) FAIL_AT("block %p (size %zu) byte %zu: %d, expected %d",
                                   (void *)l->p, l->n, i, l->p[i], l->tag);
}

TEST(random_use_against_a_shadow) {
  enum { SLOTS = 512, OPS = 60000 };
  static struct live live[SLOTS];
  struct arena a = {0};
  uint32_t seed = 12345;
  for (int op = 0; op < OPS; op++) {
    seed = seed * 1103515245u + 12345u;
    struct live *l = &live[(seed >> 8) % SLOTS];
    size_t n = (seed >> 20) % 8 == 0 ? 1 + (seed >> 4) % 3000 : 1 + (seed >> 4) % 300;
    if (!l->p) {
      l->p = arena_alloc(&a, n);
      ASSERT(l->p);
      l->n = n;
      l->tag = (unsigned char)op;
      fill(l);
    } else if ((seed >> 16) % 3 == 0) {
      check(l);
      arena_free(&a, l->p, l->n);
      l->p = NULL;
    } else {
      check(l);
      unsigned char *q = arena_realloc(&a, l->p, l->n, n);
      ASSERT(q);
      l->p = q;
      if (n < l->n) l->n = n;
      check(l);                          /* the kept prefix */
      l->n = n;
      l->tag = (unsigned char)(op * 7);
      fill(l);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (live[i].p) {
      check(&live[i]);
      arena_free(&a, live[i].p, live[i].n);
    }
  arena_release(&a);
}

TEST(a_released_arena_is_empty_and_reusable) {
  struct arena a = {0};
  for (int i = 0; i < 100; i++) ASSERT(arena_alloc(&a, 200));   /* in the chunks: left to release */
  ASSERT(a.nchunks > 0);
  arena_release(&a);
  ASSERT_INT_EQ(a.nchunks, 0);
  ASSERT(a.next == NULL && a.free[0] == NULL);
  void *p = arena_alloc(&a, 8);
  ASSERT(p && in_arena(&a, p));
  arena_release(&a);
}

TEST(closing_drops_chunk_frees_and_still_frees_mallocs) {
  struct arena a = {0};
  char *small = arena_alloc(&a, 40), *big = arena_alloc(&a, 4000);
  ASSERT(small && big);
  arena_closing(&a);
  arena_free(&a, small, 40);                  /* dropped: goes with the chunks */
  ASSERT(a.free[CLASS_OF(40)] == NULL);
  ASSERT(arena_alloc(&a, 40) != small);       /* not handed out again */
  arena_free(&a, big, 4000);                  /* malloc's: freed (LSan checks) */
  arena_release(&a);
}

TEST_LIST(T(a_freed_block_serves_the_next_request_of_its_class), T(large_blocks_are_mallocs),
          T(realloc_keeps_contents_across_classes_and_sizes),
          T(past_the_chunk_cap_small_blocks_come_from_malloc), T(random_use_against_a_shadow),
          T(a_released_arena_is_empty_and_reusable),
          T(closing_drops_chunk_frees_and_still_frees_mallocs));
