/*
 * metrics_sources: the gauges of /_ah/metrics that other parts of the host
 * own, read at scrape time: open connections (http), active background
 * threads (threads), shared dict bytes and entries (store/dict), shared
 * queue lengths (store/queue).  Main thread, once, before workers start.
 */
#ifndef LUAHOST_METRICS_SOURCES_H
#define LUAHOST_METRICS_SOURCES_H

void metrics_sources_init(void);

#endif
