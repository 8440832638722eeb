/*
 * log: the host's two outputs.  log_msg() writes leveled lines (host and
 * app messages) to stderr; log_access() writes the access log to stdout.
 * Both as text or one JSON object per line (log_set_json).  Each line is
 * one write(2), so lines from different threads never interleave.
 * Any thread may call any function; log_set_* only before threads start.
 */
#ifndef LUAHOST_LOG_H
#define LUAHOST_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR };

/* One access-log line.  Strings are borrowed for the call; query and
 * user_agent may be NULL (none).  json: this line as a JSON object even
 * when the host log is text (app.lua access_log = "json"). */
struct log_access_rec {
  const char *remote; const char *method;
  const char *path; size_t path_len;
  const char *query; size_t query_len;
  int status; uint64_t bytes; uint64_t duration_us;
  const char *request_id;
  const char *user_agent; size_t user_agent_len;
  int json;
};

void log_set_json(int on);
/* ctx_key/ctx_val name the context ("request_id", "thread_id"); may be NULL */
void log_msg(int level, const char *ctx_key, const char *ctx_val,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_text(int level, const char *ctx_key, const char *ctx_val,
              const char *msg, size_t len);
void log_access(const struct log_access_rec *r);

#endif
