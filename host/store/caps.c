/* store/caps: name -> capacity. */
#include "store/caps.h"

#include <stdlib.h>
#include <string.h>

struct store_cap { struct store_cap *next; size_t capacity; size_t len; char name[]; };

int store_caps_set(struct store_caps *c, const char *name, size_t capacity) {
  size_t n = strlen(name);
  struct store_cap *e = malloc(sizeof *e + n + 1);
  if (!e) return -1;
  memcpy(e->name, name, n + 1);
  e->len = n;
  e->capacity = capacity;
  pthread_mutex_lock(&c->lock);
  e->next = c->head;
  c->head = e;
  pthread_mutex_unlock(&c->lock);
  return 0;
}

size_t store_caps_get(struct store_caps *c, const char *name, size_t len, size_t dflt) {
  size_t v = dflt;
  pthread_mutex_lock(&c->lock);
  for (struct store_cap *e = c->head; e; e = e->next)
    if (e->len == len && memcmp(e->name, name, len) == 0) { v = e->capacity; break; }
  pthread_mutex_unlock(&c->lock);
  return v;
}

void store_caps_free(struct store_caps *c) {
  pthread_mutex_lock(&c->lock);
  while (c->head) {
    struct store_cap *e = c->head;
    c->head = e->next;
    free(e);
  }
  pthread_mutex_unlock(&c->lock);
}
