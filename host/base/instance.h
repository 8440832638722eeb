/*
 * instance: process-wide identity and state of this instance: its ID,
 * request IDs, and the shutting-down flag.  Any thread.
 */
#ifndef LUAHOST_INSTANCE_H
#define LUAHOST_INSTANCE_H

#include <stdint.h>

#define INSTANCE_RID_LEN 20   /* request ID length, without the NUL */

void instance_init(void);                 /* main thread, once, first */
const char *instance_id(void);            /* 32 hex digits */
/* A new request ID; returns its sequence number (never 0), from which
 * instance_format_request_id rebuilds the same text. */
uint64_t instance_request_id(char out[INSTANCE_RID_LEN + 1]);
void instance_format_request_id(uint64_t seq, char out[INSTANCE_RID_LEN + 1]);
int instance_shutting_down(void);
void instance_set_shutting_down(void);

#endif
