/* log: leveled host/app log on stderr, access log on stdout. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Set once by the main thread before any worker starts; read-only after. */
static int json_mode;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void log_set_json(int on) { json_mode = on; }

/* A bounded line buffer; output past its end is cut, never overflows. */
struct line { char buf[8192]; size_t n; };

static void put(struct line *l, const char *s, size_t len) {
  size_t room = sizeof(l->buf) - 1 - l->n;
  if (len > room) len = room;
  memcpy(l->buf + l->n, s, len);
  l->n += len;
}

static void puts_(struct line *l, const char *s) { put(l, s, strlen(s)); }

static void putf(struct line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...) {
  va_list ap;
  size_t room = sizeof(l->buf) - 1 - l->n;
  va_start(ap, fmt);
  int k = vsnprintf(l->buf + l->n, room + 1, fmt, ap);
  va_end(ap);
  if (k > 0) l->n += (size_t)k > room ? room : (size_t)k;
}

/* JSON string body (without quotes); control bytes escaped, others raw. */
static void put_json(struct line *l, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; put(l, e, 2); }
    else if (c == '\n') put(l, "\\n", 2);
    else if (c == '\t') put(l, "\\t", 2);
    else if (c < 0x20 || c == 0x7f) putf(l, "\\u%04x", c);
    else put(l, (const char *)&c, 1);
  }
}

/* Text mode: printable bytes raw, others as \xNN (no log injection). */
static void put_text(struct line *l, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 && c != '\n' && c != '\t') putf(l, "\\x%02x", c);
    else if (c == 0x7f) put(l, "\\x7f", 4);
    else put(l, (const char *)&c, 1);
  }
}

static void put_time(struct line *l) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  putf(l, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
       ts.tv_nsec / 1000000);
}

static void emit(int fd, struct line *l) {
  l->buf[l->n++] = '\n';
  const char *p = l->buf;
  size_t left = l->n;
  while (left > 0) {
    ssize_t k = write(fd, p, left);
    if (k <= 0) return;   /* a full disk or closed pipe must not stop serving */
    p += k; left -= (size_t)k;
  }
}

void log_text(int level, const char *ctx_key, const char *ctx_val,
              const char *msg, size_t len) {
  struct line l;
  l.n = 0;
  if (json_mode) {
    puts_(&l, "{\"time\":\""); put_time(&l);
    putf(&l, "\",\"level\":\"%s\"", level_names[level]);
    if (ctx_key && ctx_val) {
      putf(&l, ",\"%s\":\"", ctx_key);
      put_json(&l, ctx_val, strlen(ctx_val));
      puts_(&l, "\"");
    }
    puts_(&l, ",\"msg\":\"");
    if (len > sizeof(l.buf) - 256) len = sizeof(l.buf) - 256;
    put_json(&l, msg, len);
    puts_(&l, "\"}");
  } else {
    put_time(&l);
    putf(&l, " %s", level_names[level]);
    if (ctx_key && ctx_val) putf(&l, " [%s=%s]", ctx_key, ctx_val);
    puts_(&l, " ");
    put_text(&l, msg, len);
  }
  emit(2, &l);
}

void log_msg(int level, const char *ctx_key, const char *ctx_val,
             const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  log_text(level, ctx_key, ctx_val, buf,
           (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
}

void log_access(const struct log_access_rec *r) {
  struct line l;
  l.n = 0;
  size_t plen = r->path_len > 2048 ? 2048 : r->path_len;
  if (json_mode) {
    puts_(&l, "{\"time\":\""); put_time(&l);
    puts_(&l, "\",\"remote_addr\":\""); put_json(&l, r->remote, strlen(r->remote));
    puts_(&l, "\",\"method\":\""); put_json(&l, r->method, strlen(r->method));
    puts_(&l, "\",\"path\":\""); put_json(&l, r->path, plen);
    putf(&l, "\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,"
         "\"request_id\":\"%s\"}", r->status, (unsigned long long)r->bytes,
         (double)r->duration_us / 1000.0, r->request_id);
  } else {
    put_time(&l);
    putf(&l, " %s %s ", r->remote, r->method);
    put_text(&l, r->path, plen);
    putf(&l, " %d %llu %.3fms %s", r->status, (unsigned long long)r->bytes,
         (double)r->duration_us / 1000.0, r->request_id);
  }
  emit(1, &l);
}
