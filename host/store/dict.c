/*
 * store/dict: chained hash tables, split in stripes that each have their
 * own mutex (so workers touching different keys do not contend), with one
 * byte capacity per dict kept in an atomic counter.
 */
#include "store/dict.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "store/caps.h"

#define ENTRY_OVERHEAD 48   /* charged per entry besides key and value bytes */
#define STRIPES 16          /* a power of two */

struct entry {
  struct entry *next;
  uint64_t hash;
  uint64_t expire_ms;          /* 0: never */
  uint32_t klen, vlen;
  uint8_t type, b;
  union { int64_t i; double f; } num;
  char data[];                 /* key, then the string value */
};

/* One part of a dict's keys.  Everything in it is guarded by its lock. */
struct stripe {
  pthread_mutex_t lock;
  struct entry **buckets;
  size_t nbuckets, count;
  size_t expiring;             /* entries with an expiry (0: no clock needed) */
} __attribute__((aligned(64)));

struct dict {
  struct stripe stripes[STRIPES];
  atomic_size_t used;          /* bytes charged, all stripes (reserved before storing) */
  size_t capacity;             /* set at creation, read-only */
  atomic_int refs;
  struct dict *next_dict;      /* registry list (registry lock) */
  char name[];
};

/* The registry: names to dicts.  Guarded by reg_lock. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dict *all;
static struct store_caps caps = STORE_CAPS_INIT;

static uint64_t hash_key(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static struct stripe *stripe_of(struct dict *d, uint64_t h) {
  return &d->stripes[(h >> 56) & (STRIPES - 1)];
}

static uint64_t now_ms(void) { return clock_now_ns() / 1000000; }

/* The time to compare expiries with; 0 (nothing expires) when no entry of
 * the stripe has an expiry, which spares the clock read.  Under s->lock. */
static uint64_t now_for(const struct stripe *s) { return s->expiring ? now_ms() : 0; }

int dict_configure(const char *name, size_t capacity) {
  return store_caps_set(&caps, name, capacity);
}

static void free_dict(struct dict *d);

struct dict *dict_open(const char *name, size_t len) {
  pthread_mutex_lock(&reg_lock);
  struct dict *d;
  for (d = all; d; d = d->next_dict)
    if (strlen(d->name) == len && memcmp(d->name, name, len) == 0) break;
  if (!d && (d = aligned_alloc(64, (sizeof *d + len + 1 + 63) / 64 * 64))) {
    memset(d, 0, sizeof *d + len + 1);
    int ok = 1;
    /* critical sections are tens of nanoseconds: spin briefly before
     * sleeping in the kernel (as nginx's shared-memory mutex does) */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    for (int i = 0; i < STRIPES; i++) {
      struct stripe *s = &d->stripes[i];
      pthread_mutex_init(&s->lock, &ma);
      s->nbuckets = 8;
      if (!(s->buckets = calloc(s->nbuckets, sizeof *s->buckets))) ok = 0;
    }
    pthread_mutexattr_destroy(&ma);
    memcpy(d->name, name, len);
    d->capacity = store_caps_get(&caps, name, len, DICT_DEFAULT_CAPACITY);
    atomic_init(&d->used, 0);
    atomic_init(&d->refs, 1);   /* the registry's */
    if (!ok) {
      free_dict(d);
      d = NULL;
    } else {
      d->next_dict = all;
      all = d;
    }
  }
  if (d) atomic_fetch_add(&d->refs, 1);
  pthread_mutex_unlock(&reg_lock);
  return d;
}

void dict_retain(struct dict *d) { atomic_fetch_add(&d->refs, 1); }
/* The registry keeps one reference until dict_free_all. */
void dict_release(struct dict *d) { atomic_fetch_sub(&d->refs, 1); }
const char *dict_name(const struct dict *d) { return d->name; }

/* ---- capacity (atomic, any stripe) ------------------------------------- */

static size_t charge(const struct entry *e) { return ENTRY_OVERHEAD + e->klen + e->vlen; }

/* Reserves n more bytes: 1, or 0 when that would pass the capacity. */
static int reserve(struct dict *d, size_t n) {
  size_t cur = atomic_load_explicit(&d->used, memory_order_relaxed);
  do {
    if (cur + n > d->capacity) return 0;
  } while (!atomic_compare_exchange_weak_explicit(&d->used, &cur, cur + n,
                                                  memory_order_relaxed, memory_order_relaxed));
  return 1;
}

static void unreserve(struct dict *d, size_t n) {
  atomic_fetch_sub_explicit(&d->used, n, memory_order_relaxed);
}

/* ---- under s->lock ---------------------------------------------------- */

static void unlink_free(struct dict *d, struct stripe *s, struct entry **slot) {
  struct entry *e = *slot;
  *slot = e->next;
  unreserve(d, charge(e));
  s->count--;
  if (e->expire_ms) s->expiring--;
  free(e);
}

/* The slot holding key k (live), or the empty slot at the end of its
 * chain.  Expired entries met on the way are dropped. */
static struct entry **find(struct dict *d, struct stripe *s, const char *k, size_t kl,
                           uint64_t h, uint64_t now) {
  struct entry **slot = &s->buckets[h & (s->nbuckets - 1)];
  while (*slot) {
    struct entry *e = *slot;
    if (e->expire_ms && now && e->expire_ms <= now) { unlink_free(d, s, slot); continue; }
    if (e->hash == h && e->klen == kl && memcmp(e->data, k, kl) == 0) return slot;
    slot = &e->next;
  }
  return slot;
}

static void sweep_expired(struct dict *d, struct stripe *s, uint64_t now) {
  for (size_t b = 0; b < s->nbuckets && s->expiring; b++) {
    struct entry **slot = &s->buckets[b];
    while (*slot) {
      if ((*slot)->expire_ms && (*slot)->expire_ms <= now) unlink_free(d, s, slot);
      else slot = &(*slot)->next;
    }
  }
}

/* When full: expired entries of the other stripes go too (those whose
 * lock is free right now; never waiting while holding ours). */
static void sweep_others(struct dict *d, struct stripe *mine, uint64_t now) {
  for (int i = 0; i < STRIPES; i++) {
    struct stripe *s = &d->stripes[i];
    if (s == mine || pthread_mutex_trylock(&s->lock) != 0) continue;
    sweep_expired(d, s, now);
    pthread_mutex_unlock(&s->lock);
  }
}

static void grow(struct stripe *s) {
  size_t n = s->nbuckets * 2;
  struct entry **nb = calloc(n, sizeof *nb);
  if (!nb) return;   /* longer chains, still correct */
  for (size_t b = 0; b < s->nbuckets; b++) {
    struct entry *e = s->buckets[b], *next;
    for (; e; e = next) {
      next = e->next;
      e->next = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
    }
  }
  free(s->buckets);
  s->buckets = nb;
  s->nbuckets = n;
}

/* Replaces (or inserts at) *slot with k = v. */
static int store(struct dict *d, struct stripe *s, struct entry **slot, const char *k,
                 size_t kl, uint64_t h, const struct dict_val *v, uint64_t expire_ms,
                 uint64_t now) {
  size_t vlen = v->type == DV_STR ? v->len : 0;
  size_t need = ENTRY_OVERHEAD + kl + vlen;
  struct entry *old = *slot;
  if (old && old->vlen == vlen) {   /* same size: rewrite in place, no allocation */
    s->expiring += (expire_ms != 0) - (old->expire_ms != 0);
    old->expire_ms = expire_ms;
    old->type = (uint8_t)v->type;
    old->b = (uint8_t)v->b;
    if (v->type == DV_INT) old->num.i = v->i;
    else if (v->type == DV_FLOAT) old->num.f = v->f;
    if (vlen) memcpy(old->data + kl, v->s, vlen);
    return LH_OK;
  }
  size_t freed = old ? charge(old) : 0;
  if (need > freed && !reserve(d, need - freed)) {
    uint64_t t = now ? now : now_ms();
    sweep_expired(d, s, t);
    sweep_others(d, s, t);
    slot = find(d, s, k, kl, h, t);   /* the sweep may have moved things */
    old = *slot;
    freed = old ? charge(old) : 0;
    if (need > freed && !reserve(d, need - freed)) return LH_ENOMEM;
  }
  struct entry *e = malloc(sizeof *e + kl + vlen);
  if (!e) {
    if (need > freed) unreserve(d, need - freed);
    return LH_ENOMEM;
  }
  e->hash = h;
  e->expire_ms = expire_ms;
  e->klen = (uint32_t)kl;
  e->vlen = (uint32_t)vlen;
  e->type = (uint8_t)v->type;
  e->b = (uint8_t)v->b;
  if (v->type == DV_INT) e->num.i = v->i;
  else if (v->type == DV_FLOAT) e->num.f = v->f;
  memcpy(e->data, k, kl);
  if (vlen) memcpy(e->data + kl, v->s, vlen);
  if (expire_ms) s->expiring++;
  if (old) {
    e->next = old->next;
    if (old->expire_ms) s->expiring--;
    free(old);
    *slot = e;
    if (freed > need) unreserve(d, freed - need);
  } else {
    e->next = NULL;
    *slot = e;
    s->count++;
    if (s->count > s->nbuckets) grow(s);
  }
  return LH_OK;
}

static void to_val(const struct entry *e, struct dict_val *out) {
  out->type = e->type;
  out->b = e->b;
  if (e->type == DV_INT) out->i = e->num.i;
  else if (e->type == DV_FLOAT) out->f = e->num.f;
}

/* ---- API -------------------------------------------------------------- */

int dict_get(struct dict *d, const char *k, size_t kl, struct dict_val *out,
             struct dict_buf *buf) {
  uint64_t h = hash_key(k, kl);
  struct stripe *s = stripe_of(d, h);
  int rc = LH_OK;
  pthread_mutex_lock(&s->lock);
  struct entry *e = *find(d, s, k, kl, h, now_for(s));
  out->type = DV_NIL;
  if (e) {
    to_val(e, out);
    if (e->type == DV_STR) {
      if (buf->cap < e->vlen + 1) {
        char *p = realloc(buf->p, e->vlen + 1);
        if (!p) { rc = LH_ENOMEM; goto done; }
        buf->p = p;
        buf->cap = e->vlen + 1;
      }
      memcpy(buf->p, e->data + e->klen, e->vlen);
      out->s = buf->p;
      out->len = e->vlen;
    }
  }
done:
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static int put(struct dict *d, const char *k, size_t kl, const struct dict_val *v,
               uint64_t ttl_ms, int only_new) {
  uint64_t h = hash_key(k, kl);
  struct stripe *s = stripe_of(d, h);
  int rc;
  pthread_mutex_lock(&s->lock);
  uint64_t now = ttl_ms ? now_ms() : now_for(s);
  struct entry **slot = find(d, s, k, kl, h, now);
  if (only_new && *slot) rc = LH_EEXISTS;
  else if (v->type == DV_NIL) { if (*slot) unlink_free(d, s, slot); rc = LH_OK; }
  else rc = store(d, s, slot, k, kl, h, v, ttl_ms ? now + ttl_ms : 0, now);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int dict_set(struct dict *d, const char *k, size_t kl, const struct dict_val *v,
             uint64_t ttl_ms) {
  return put(d, k, kl, v, ttl_ms, 0);
}

int dict_add(struct dict *d, const char *k, size_t kl, const struct dict_val *v,
             uint64_t ttl_ms) {
  return put(d, k, kl, v, ttl_ms, 1);
}

int dict_incr(struct dict *d, const char *k, size_t kl, const struct dict_val *n,
              const struct dict_val *init, struct dict_val *out) {
  uint64_t h = hash_key(k, kl);
  struct stripe *s = stripe_of(d, h);
  int rc = LH_OK;
  pthread_mutex_lock(&s->lock);
  uint64_t now = now_for(s);
  struct entry **slot = find(d, s, k, kl, h, now);
  struct entry *e = *slot;
  struct dict_val cur;
  if (e) {
    if (e->type != DV_INT && e->type != DV_FLOAT) { rc = LH_ENOTNUM; goto done; }
    to_val(e, &cur);
  } else if (init) {
    cur = *init;
  } else {
    rc = LH_ENOTFOUND;
    goto done;
  }
  if (cur.type == DV_INT && n->type == DV_INT) {
    out->type = DV_INT;
    if (__builtin_add_overflow(cur.i, n->i, &out->i)) { rc = LH_EOVERFLOW; goto done; }
  } else {
    out->type = DV_FLOAT;
    out->f = (cur.type == DV_INT ? (double)cur.i : cur.f) +
             (n->type == DV_INT ? (double)n->i : n->f);
  }
  if (e) {   /* in place: same size, same expiry */
    e->type = (uint8_t)out->type;
    if (out->type == DV_INT) e->num.i = out->i; else e->num.f = out->f;
  } else {
    rc = store(d, s, slot, k, kl, h, out, 0, now);
  }
done:
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int dict_delete(struct dict *d, const char *k, size_t kl) {
  struct dict_val nil = {DV_NIL, 0, 0, 0, NULL, 0};
  return put(d, k, kl, &nil, 0, 0);
}

void dict_flush_all(struct dict *d) {
  for (int i = 0; i < STRIPES; i++) {
    struct stripe *s = &d->stripes[i];
    pthread_mutex_lock(&s->lock);
    for (size_t b = 0; b < s->nbuckets; b++)
      while (s->buckets[b]) unlink_free(d, s, &s->buckets[b]);
    pthread_mutex_unlock(&s->lock);
  }
}

size_t dict_keys(struct dict *d, size_t max, void (*fn)(void *, const char *, size_t),
                 void *ud) {
  size_t n = 0;
  for (int i = 0; i < STRIPES && (max == 0 || n < max); i++) {
    struct stripe *s = &d->stripes[i];
    pthread_mutex_lock(&s->lock);
    uint64_t now = now_for(s);
    for (size_t b = 0; b < s->nbuckets && (max == 0 || n < max); b++)
      for (struct entry *e = s->buckets[b]; e && (max == 0 || n < max); e = e->next)
        if (!e->expire_ms || e->expire_ms > now) {
          fn(ud, e->data, e->klen);
          n++;
        }
    pthread_mutex_unlock(&s->lock);
  }
  return n;
}

size_t dict_used(struct dict *d) { return atomic_load(&d->used); }

/* Lock order: reg_lock, then one stripe lock at a time (as dict_open and
 * the operations never hold a stripe lock while taking reg_lock). */
void dict_each(void (*fn)(void *ud, const char *name, size_t bytes, size_t entries),
               void *ud) {
  pthread_mutex_lock(&reg_lock);
  for (struct dict *d = all; d; d = d->next_dict) {
    size_t entries = 0;
    for (int i = 0; i < STRIPES; i++) {
      pthread_mutex_lock(&d->stripes[i].lock);
      entries += d->stripes[i].count;
      pthread_mutex_unlock(&d->stripes[i].lock);
    }
    fn(ud, d->name, atomic_load(&d->used), entries);
  }
  pthread_mutex_unlock(&reg_lock);
}

static void free_dict(struct dict *d) {
  for (int i = 0; i < STRIPES; i++) {
    struct stripe *s = &d->stripes[i];
    if (s->buckets)
      for (size_t b = 0; b < s->nbuckets; b++)
        while (s->buckets[b]) unlink_free(d, s, &s->buckets[b]);
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
  }
  free(d);
}

void dict_free_all(void) {
  pthread_mutex_lock(&reg_lock);
  while (all) {
    struct dict *d = all;
    all = d->next_dict;
    free_dict(d);
  }
  pthread_mutex_unlock(&reg_lock);
  store_caps_free(&caps);
}
