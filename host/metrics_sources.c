/* metrics_sources: gauge callbacks over http, threads and the stores. */
#include "metrics_sources.h"

#include "http/http.h"
#include "metrics.h"
#include "store/dict.h"
#include "store/queue.h"
#include "threads.h"

static void connections_open(void *ud, struct metrics_sink *s) {
  metrics_sample(s, NULL, http_open_connections());
}

static void threads_active_now(void *ud, struct metrics_sink *s) {
  metrics_sample(s, NULL, threads_active());
}

struct dict_pass { struct metrics_sink *s; int entries; };

static void one_dict(void *ud, const char *name, size_t bytes, size_t entries) {
  struct dict_pass *p = ud;
  metrics_sample(p->s, name, (double)(p->entries ? entries : bytes));
}

static void dict_bytes(void *ud, struct metrics_sink *s) {
  struct dict_pass p = {s, 0};
  dict_each(one_dict, &p);
}

static void dict_entries(void *ud, struct metrics_sink *s) {
  struct dict_pass p = {s, 1};
  dict_each(one_dict, &p);
}

static void one_queue(void *ud, const char *name, size_t len) {
  metrics_sample(ud, name, (double)len);
}

static void queue_lengths(void *ud, struct metrics_sink *s) { queue_each(one_queue, s); }

void metrics_sources_init(int shared_remote) {
  metrics_gauge_add("luahost_http_connections_open", "Client connections open now.", NULL,
                    connections_open, NULL);
  metrics_gauge_add("luahost_background_threads_active", "Background threads running now.",
                    NULL, threads_active_now, NULL);
  if (shared_remote) return;
  metrics_gauge_add("luahost_shared_dict_bytes", "Bytes charged against each shared dict's "
                    "capacity.", "dict", dict_bytes, NULL);
  metrics_gauge_add("luahost_shared_dict_entries", "Entries in each shared dict.", "dict",
                    dict_entries, NULL);
  metrics_gauge_add("luahost_shared_queue_length", "Items in each shared queue.", "queue",
                    queue_lengths, NULL);
}
