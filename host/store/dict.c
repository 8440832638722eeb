/* store/dict: chained hash tables behind a mutex, with byte capacities. */
#include "store/dict.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "store/caps.h"

#define ENTRY_OVERHEAD 48   /* charged per entry besides key and value bytes */

struct entry {
  struct entry *next;
  uint64_t hash;
  uint64_t expire_ms;          /* 0: never */
  uint32_t klen, vlen;
  uint8_t type, b;
  union { int64_t i; double f; } num;
  char data[];                 /* key, then the string value */
};

struct dict {
  pthread_mutex_t lock;        /* guards everything below */
  struct entry **buckets;
  size_t nbuckets, count;
  size_t used, capacity;       /* bytes */
  size_t expiring;             /* entries with an expiry (0: no clock needed) */
  atomic_int refs;
  struct dict *next_dict;      /* registry list (registry lock) */
  char name[];
};

/* The registry: names to dicts, and configured capacities.  Guarded by
 * reg_lock; configured entries are written before threads start. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dict *all;
static struct store_caps caps = STORE_CAPS_INIT;

static uint64_t hash_key(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t now_ms(void) { return clock_now_ns() / 1000000; }

/* The time to compare expiries with; 0 (nothing expires) when no entry of
 * d has an expiry, which spares the clock read.  Under d->lock. */
static uint64_t now_for(const struct dict *d) { return d->expiring ? now_ms() : 0; }

int dict_configure(const char *name, size_t capacity) {
  return store_caps_set(&caps, name, capacity);
}

struct dict *dict_open(const char *name, size_t len) {
  pthread_mutex_lock(&reg_lock);
  struct dict *d;
  for (d = all; d; d = d->next_dict)
    if (strlen(d->name) == len && memcmp(d->name, name, len) == 0) break;
  if (!d) {
    size_t capacity = store_caps_get(&caps, name, len, DICT_DEFAULT_CAPACITY);
    d = calloc(1, sizeof *d + len + 1);
    if (d) {
      d->nbuckets = 64;
      d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
      if (!d->buckets) {
        free(d);
        d = NULL;
      } else {
        memcpy(d->name, name, len);
        d->capacity = capacity;
        pthread_mutex_init(&d->lock, NULL);
        atomic_init(&d->refs, 1);   /* the registry's */
        d->next_dict = all;
        all = d;
      }
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

/* ---- under d->lock ---------------------------------------------------- */

static size_t charge(const struct entry *e) { return ENTRY_OVERHEAD + e->klen + e->vlen; }

static void unlink_free(struct dict *d, struct entry **slot) {
  struct entry *e = *slot;
  *slot = e->next;
  d->used -= charge(e);
  d->count--;
  if (e->expire_ms) d->expiring--;
  free(e);
}

/* The slot holding key k (live or expired), or the empty slot at the end
 * of its chain.  Expired entries met on the way are dropped. */
static struct entry **find(struct dict *d, const char *k, size_t kl, uint64_t h, uint64_t now) {
  struct entry **slot = &d->buckets[h & (d->nbuckets - 1)];
  while (*slot) {
    struct entry *e = *slot;
    if (e->expire_ms && now && e->expire_ms <= now) { unlink_free(d, slot); continue; }
    if (e->hash == h && e->klen == kl && memcmp(e->data, k, kl) == 0) return slot;
    slot = &e->next;
  }
  return slot;
}

static void sweep_expired(struct dict *d, uint64_t now) {
  for (size_t b = 0; b < d->nbuckets; b++) {
    struct entry **slot = &d->buckets[b];
    while (*slot) {
      if ((*slot)->expire_ms && now && (*slot)->expire_ms <= now) unlink_free(d, slot);
      else slot = &(*slot)->next;
    }
  }
}

static void grow(struct dict *d) {
  size_t n = d->nbuckets * 2;
  struct entry **nb = calloc(n, sizeof *nb);
  if (!nb) return;   /* longer chains, still correct */
  for (size_t b = 0; b < d->nbuckets; b++) {
    struct entry *e = d->buckets[b], *next;
    for (; e; e = next) {
      next = e->next;
      e->next = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
    }
  }
  free(d->buckets);
  d->buckets = nb;
  d->nbuckets = n;
}

/* Replaces (or inserts at) *slot with a new entry for k = v. */
static int store(struct dict *d, struct entry **slot, const char *k, size_t kl, uint64_t h,
                 const struct dict_val *v, uint64_t expire_ms, uint64_t now) {
  size_t vlen = v->type == DV_STR ? v->len : 0;
  size_t need = ENTRY_OVERHEAD + kl + vlen;
  struct entry *old = *slot;
  if (old && old->vlen == vlen) {   /* same size: rewrite in place, no allocation */
    d->expiring += (expire_ms != 0) - (old->expire_ms != 0);
    old->expire_ms = expire_ms;
    old->type = (uint8_t)v->type;
    old->b = (uint8_t)v->b;
    if (v->type == DV_INT) old->num.i = v->i;
    else if (v->type == DV_FLOAT) old->num.f = v->f;
    if (vlen) memcpy(old->data + kl, v->s, vlen);
    return DICT_OK;
  }
  size_t freed = old ? charge(old) : 0;
  if (d->used - freed + need > d->capacity) {
    sweep_expired(d, now);
    slot = find(d, k, kl, h, now);   /* the sweep may have moved things */
    freed = *slot ? charge(*slot) : 0;
    if (d->used - freed + need > d->capacity) return DICT_NOMEM;
  }
  struct entry *e = malloc(sizeof *e + kl + vlen);
  if (!e) return DICT_NOMEM;
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
  if (expire_ms) d->expiring++;
  if (*slot) {
    e->next = (*slot)->next;
    d->used -= charge(*slot);
    if ((*slot)->expire_ms) d->expiring--;
    free(*slot);
    *slot = e;
  } else {
    e->next = NULL;
    *slot = e;
    d->count++;
    if (d->count > d->nbuckets) grow(d);
  }
  d->used += need;
  return DICT_OK;
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
  int rc = DICT_OK;
  pthread_mutex_lock(&d->lock);
  uint64_t now = now_for(d);
  struct entry *e = *find(d, k, kl, h, now);
  out->type = DV_NIL;
  if (e) {
    to_val(e, out);
    if (e->type == DV_STR) {
      if (buf->cap < e->vlen + 1) {
        char *p = realloc(buf->p, e->vlen + 1);
        if (!p) { rc = DICT_NOMEM; goto done; }
        buf->p = p;
        buf->cap = e->vlen + 1;
      }
      memcpy(buf->p, e->data + e->klen, e->vlen);
      out->s = buf->p;
      out->len = e->vlen;
    }
  }
done:
  pthread_mutex_unlock(&d->lock);
  return rc;
}

static int put(struct dict *d, const char *k, size_t kl, const struct dict_val *v,
               uint64_t ttl_ms, int only_new) {
  uint64_t h = hash_key(k, kl);
  int rc;
  pthread_mutex_lock(&d->lock);
  uint64_t now = ttl_ms ? now_ms() : now_for(d);
  struct entry **slot = find(d, k, kl, h, now);
  if (only_new && *slot) rc = DICT_EXISTS;
  else if (v->type == DV_NIL) { if (*slot) unlink_free(d, slot); rc = DICT_OK; }
  else rc = store(d, slot, k, kl, h, v, ttl_ms ? now + ttl_ms : 0, now);
  pthread_mutex_unlock(&d->lock);
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
  int rc = DICT_OK;
  pthread_mutex_lock(&d->lock);
  uint64_t now = now_for(d);
  struct entry **slot = find(d, k, kl, h, now);
  struct entry *e = *slot;
  struct dict_val cur;
  if (e) {
    if (e->type != DV_INT && e->type != DV_FLOAT) { rc = DICT_NOTNUM; goto done; }
    to_val(e, &cur);
  } else if (init) {
    cur = *init;
  } else {
    rc = DICT_NOTFOUND;
    goto done;
  }
  if (cur.type == DV_INT && n->type == DV_INT) {
    out->type = DV_INT;
    out->i = (int64_t)((uint64_t)cur.i + (uint64_t)n->i);   /* wraps, as Lua does */
  } else {
    out->type = DV_FLOAT;
    out->f = (cur.type == DV_INT ? (double)cur.i : cur.f) +
             (n->type == DV_INT ? (double)n->i : n->f);
  }
  if (e) {   /* in place: same size, same expiry */
    e->type = (uint8_t)out->type;
    if (out->type == DV_INT) e->num.i = out->i; else e->num.f = out->f;
  } else {
    rc = store(d, slot, k, kl, h, out, 0, now);
  }
done:
  pthread_mutex_unlock(&d->lock);
  return rc;
}

int dict_delete(struct dict *d, const char *k, size_t kl) {
  struct dict_val nil = {DV_NIL, 0, 0, 0, NULL, 0};
  return put(d, k, kl, &nil, 0, 0);
}

void dict_flush_all(struct dict *d) {
  pthread_mutex_lock(&d->lock);
  for (size_t b = 0; b < d->nbuckets; b++)
    while (d->buckets[b]) unlink_free(d, &d->buckets[b]);
  pthread_mutex_unlock(&d->lock);
}

size_t dict_keys(struct dict *d, size_t max, void (*fn)(void *, const char *, size_t),
                 void *ud) {
  size_t n = 0;
  pthread_mutex_lock(&d->lock);
  uint64_t now = now_for(d);
  for (size_t b = 0; b < d->nbuckets && (max == 0 || n < max); b++)
    for (struct entry *e = d->buckets[b]; e && (max == 0 || n < max); e = e->next)
      if (!e->expire_ms || e->expire_ms > now) {
        fn(ud, e->data, e->klen);
        n++;
      }
  pthread_mutex_unlock(&d->lock);
  return n;
}

size_t dict_used(struct dict *d) {
  pthread_mutex_lock(&d->lock);
  size_t u = d->used;
  pthread_mutex_unlock(&d->lock);
  return u;
}

void dict_free_all(void) {
  pthread_mutex_lock(&reg_lock);
  while (all) {
    struct dict *d = all;
    all = d->next_dict;
    for (size_t b = 0; b < d->nbuckets; b++)
      while (d->buckets[b]) unlink_free(d, &d->buckets[b]);
    free(d->buckets);
    pthread_mutex_destroy(&d->lock);
    free(d);
  }
  pthread_mutex_unlock(&reg_lock);
  store_caps_free(&caps);
}
