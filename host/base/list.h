/*
 * base/list: the one intrusive doubly linked list of the host (as libuv's
 * uv__queue): a struct list_node inside each element, a struct list as the
 * head.  O(1) insert and remove, no allocation.  Not thread-safe: each
 * list says which thread or lock guards it.
 */
#ifndef LUAHOST_BASE_LIST_H
#define LUAHOST_BASE_LIST_H

#include <stddef.h>

struct list_node { struct list_node *prev, *next; };
struct list { struct list_node head; };

#define list_entry(node, type, member) \
  ((type *)((char *)(node) - offsetof(type, member)))

/* Every node of l; the current one may be removed inside the loop. */
#define list_each(l, it, tmp)                                   \
  for (struct list_node *it = (l)->head.next, *tmp = it->next;  \
       it != &(l)->head; it = tmp, tmp = it->next)

static inline void list_init(struct list *l) { l->head.prev = l->head.next = &l->head; }
static inline int list_empty(const struct list *l) { return l->head.next == &l->head; }
static inline void list_node_init(struct list_node *n) { n->prev = n->next = NULL; }
static inline int list_linked(const struct list_node *n) { return n->next != NULL; }

static inline struct list_node *list_first(struct list *l) {
  return list_empty(l) ? NULL : l->head.next;
}

static inline void list_push_back(struct list *l, struct list_node *n) {
  n->prev = l->head.prev;
  n->next = &l->head;
  n->prev->next = n;
  l->head.prev = n;
}

static inline void list_push_front(struct list *l, struct list_node *n) {
  n->next = l->head.next;
  n->prev = &l->head;
  n->next->prev = n;
  l->head.next = n;
}

/* Unlinks n (linked); n is left unlinked (list_linked is 0). */
static inline void list_remove(struct list_node *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = NULL;
}

#endif
