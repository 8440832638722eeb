/*
 * store/caps: capacities configured by name (app.lua `shared`), for the
 * dict and queue registries.  Written by the main thread at start-up,
 * read by any thread; guarded by its own mutex.
 */
#ifndef LUAHOST_CAPS_H
#define LUAHOST_CAPS_H

#include <pthread.h>
#include <stddef.h>

struct store_cap;
struct store_caps { pthread_mutex_t lock; struct store_cap *head; };
#define STORE_CAPS_INIT {PTHREAD_MUTEX_INITIALIZER, NULL}

int store_caps_set(struct store_caps *c, const char *name, size_t capacity);  /* 0 or -1 */
/* The capacity configured for name[0..len), or dflt. */
size_t store_caps_get(struct store_caps *c, const char *name, size_t len, size_t dflt);
void store_caps_free(struct store_caps *c);

#endif
