/*
 * metrics_sources: the gauges of /_ah/metrics that other parts of the host
 * own, read at scrape time: open connections (http), active background
 * threads (threads), shared dict bytes and entries (store/dict), shared
 * queue lengths (store/queue).  Main thread, once, before workers start.
 */
#ifndef LUAHOST_METRICS_SOURCES_H
#define LUAHOST_METRICS_SOURCES_H

/* shared_remote: shared is on Redis, which holds the dicts and queues:
 * their gauges are left out rather than read from the empty memory store. */
void metrics_sources_init(int shared_remote);

#endif
