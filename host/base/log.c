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

static void put_str(struct line *l, const char *s) { put(l, s, strlen(s)); }

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

/* The length of the valid UTF-8 sequence at s (1 to 4), or 0 when the
 * bytes there are not one (overlong forms and surrogates included). */
static size_t utf8_len(const unsigned char *s, size_t len) {
  size_t n;
  unsigned min;
  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) { n = 2; min = 0x80; }
  else if (s[0] >= 0xe0 && s[0] <= 0xef) { n = 3; min = 0x800; }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) { n = 4; min = 0x10000; }
  else return 0;
  if (len < n) return 0;
  unsigned cp = s[0] & (0x7f >> n);
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/* JSON string body (without quotes), at most max bytes of output and
 * never half an escape: control bytes escaped, valid UTF-8 raw, any other
 * byte as \u00XX (so the line stays valid JSON whatever a client sent). */
static void put_json_max(struct line *l, const char *s, size_t len, size_t max) {
  const unsigned char *u = (const unsigned char *)s;
  size_t end = l->n + max;
  for (size_t i = 0; i < len;) {
    char e[8];
    size_t k = utf8_len(u + i, len - i), el;
    if (k == 1 && (u[i] == '"' || u[i] == '\\')) { e[0] = '\\'; e[1] = (char)u[i]; el = 2; }
    else if (k == 1 && u[i] == '\n') { memcpy(e, "\\n", 2); el = 2; }
    else if (k == 1 && u[i] == '\t') { memcpy(e, "\\t", 2); el = 2; }
    else if (k == 0 || u[i] < 0x20 || u[i] == 0x7f) {
      snprintf(e, sizeof e, "\\u%04x", u[i]);
      el = 6;
      k = 1;
    } else {
      memcpy(e, u + i, k);
      el = k;
    }
    if (l->n + el > end || l->n + el > sizeof(l->buf) - 1) return;
    put(l, e, el);
    i += k;
  }
}

static void put_json(struct line *l, const char *s, size_t len) {
  put_json_max(l, s, len, sizeof l->buf);
}

/* Text mode: printable bytes raw, others as \xNN (no log injection); at
 * most max bytes of output, never half an escape. */
static void put_text_max(struct line *l, const char *s, size_t len, size_t max) {
  size_t end = l->n + max;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char e[8];
    size_t el = 1;
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      snprintf(e, sizeof e, "\\x%02x", c);
      el = 4;
    } else {
      e[0] = (char)c;
    }
    if (l->n + el > end || l->n + el > sizeof(l->buf) - 1) return;
    put(l, e, el);
  }
}

static void put_text(struct line *l, const char *s, size_t len) {
  put_text_max(l, s, len, sizeof l->buf);
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
    put_str(&l, "{\"time\":\""); put_time(&l);
    putf(&l, "\",\"level\":\"%s\"", level_names[level]);
    if (ctx_key && ctx_val) {
      putf(&l, ",\"%s\":\"", ctx_key);
      put_json(&l, ctx_val, strlen(ctx_val));
      put_str(&l, "\"");
    }
    put_str(&l, ",\"msg\":\"");
    put_json_max(&l, msg, len, sizeof(l.buf) - l.n - 8);   /* room for the close */
    put_str(&l, "\"}");
  } else {
    put_time(&l);
    putf(&l, " %s", level_names[level]);
    if (ctx_key && ctx_val) putf(&l, " [%s=%s]", ctx_key, ctx_val);
    put_str(&l, " ");
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

/* Text mode, inside double quotes: as put_text, and '"' and '\' escaped
 * so the quoted field ends where the quote does; at most max bytes. */
static void put_quoted(struct line *l, const char *s, size_t len, size_t max) {
  size_t end = l->n + max - 1;
  put(l, "\"", 1);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char e[8];
    size_t el = 1;
    if (c == '"' || c == '\\') { e[0] = '\\'; e[1] = (char)c; el = 2; }
    else if (c < 0x20 || c == 0x7f) { snprintf(e, sizeof e, "\\x%02x", c); el = 4; }
    else e[0] = (char)c;
    if (l->n + el > end) break;
    put(l, e, el);
  }
  put(l, "\"", 1);
}

/* Output bytes each request-controlled field may take in one line, so the
 * fields after it always fit (8 KiB line). */
enum { ACC_PATH = 2048, ACC_QUERY = 2048, ACC_AGENT = 1024 };

/* Text: time remote method path[?query] status bytes duration id "agent"
 * (path and query as put_text writes them; llhttp splits the request line
 * on spaces, so none is in them; "-" for no user agent).
 * JSON: one object, every string escaped, user_agent null when none. */
void log_access(const struct log_access_rec *r) {
  struct line l;
  l.n = 0;
  size_t qlen = r->query ? r->query_len : 0;
  if (json_mode || r->json) {
    put_str(&l, "{\"time\":\""); put_time(&l);
    put_str(&l, "\",\"remote_addr\":\""); put_json_max(&l, r->remote, strlen(r->remote), 128);
    put_str(&l, "\",\"method\":\""); put_json_max(&l, r->method, strlen(r->method), 64);
    put_str(&l, "\",\"path\":\""); put_json_max(&l, r->path, r->path_len, ACC_PATH);
    put_str(&l, "\",\"query\":\""); put_json_max(&l, r->query ? r->query : "", qlen, ACC_QUERY);
    putf(&l, "\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,"
         "\"request_id\":\"%s\",\"user_agent\":", r->status, (unsigned long long)r->bytes,
         (double)r->duration_us / 1000.0, r->request_id);
    if (r->user_agent) {
      put_str(&l, "\"");
      put_json_max(&l, r->user_agent, r->user_agent_len, ACC_AGENT);
      put_str(&l, "\"}");
    } else {
      put_str(&l, "null}");
    }
  } else {
    put_time(&l);
    putf(&l, " %s %s ", r->remote, r->method);
    put_text_max(&l, r->path, r->path_len, ACC_PATH);
    if (qlen > 0) { put(&l, "?", 1); put_text_max(&l, r->query, qlen, ACC_QUERY); }
    putf(&l, " %d %llu %.3fms %s ", r->status, (unsigned long long)r->bytes,
         (double)r->duration_us / 1000.0, r->request_id);
    if (r->user_agent) put_quoted(&l, r->user_agent, r->user_agent_len, ACC_AGENT);
    else put(&l, "-", 1);
  }
  emit(1, &l);
}
