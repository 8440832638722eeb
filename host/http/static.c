/* static: files from a static_dir, never from outside it. */
#include "http/static.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/url.h"

#define STATIC_MAX_FILE (256u * 1024 * 1024)

static const struct { const char *ext, *type; } types[] = {
  {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
  {"css", "text/css; charset=utf-8"}, {"js", "application/javascript; charset=utf-8"},
  {"mjs", "application/javascript; charset=utf-8"}, {"json", "application/json"},
  {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"},
  {"xml", "application/xml"}, {"csv", "text/csv; charset=utf-8"},
  {"svg", "image/svg+xml"}, {"png", "image/png"}, {"jpg", "image/jpeg"},
  {"jpeg", "image/jpeg"}, {"gif", "image/gif"}, {"webp", "image/webp"},
  {"ico", "image/x-icon"}, {"wasm", "application/wasm"}, {"pdf", "application/pdf"},
  {"woff", "font/woff"}, {"woff2", "font/woff2"}, {"ttf", "font/ttf"},
  {"mp4", "video/mp4"}, {"mp3", "audio/mpeg"}, {"wav", "audio/wav"},
  {"zip", "application/zip"}, {"gz", "application/gzip"}, {"lua", "text/plain; charset=utf-8"},
};

const char *http_content_type(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  if (dot)
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
      if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
  return "application/octet-stream";
}

/* 1 when a decoded relative path has a ".." segment or a NUL byte. */
static int unsafe(const char *p, size_t n) {
  if (memchr(p, '\0', n) || memchr(p, '\\', n)) return 1;
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && p[j] != '/') j++;
    if (j - i == 2 && p[i] == '.' && p[i + 1] == '.') return 1;
    i = j + 1;
  }
  return 0;
}

/* Reads a whole regular file; NULL when missing, unreadable or too big. */
static char *slurp(const char *path, size_t *len) {
  /* O_NONBLOCK: a FIFO or device must not stall the worker; only regular
   * files pass the fstat check below. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return NULL;
  struct stat st;
  char *buf = NULL;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > STATIC_MAX_FILE)
    goto fail;
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) goto fail;
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
    if (k <= 0) goto fail;
    got += (size_t)k;
  }
  close(fd);
  *len = got;
  return buf;
fail:
  free(buf);
  close(fd);
  return NULL;
}

int http_static_load(const char *method, const char *root, const char *rest,
                     size_t rest_len, char **data, size_t *len, const char **type) {
  char rel[PATH_MAX], full[PATH_MAX + 16], real[PATH_MAX];
  *data = NULL;
  *type = HTTP_TEXT_PLAIN;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return 405;
  if (rest_len >= sizeof rel) return 404;
  size_t n = url_decode(rel, rest, rest_len, 0);
  rel[n] = '\0';
  size_t rootlen = strlen(root);
  if (unsafe(rel, n) || rootlen + n + 12 >= sizeof full) return 404;
  snprintf(full, sizeof full, "%s%s%s", root, (n > 0 && rel[0] == '/') ? "" : "/", rel);
  struct stat st;
  if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) strcat(full, "/index.html");
  /* The file as resolved, symlinks followed, must still lie under root. */
  if (!realpath(full, real) || strncmp(real, root, rootlen) != 0 || real[rootlen] != '/')
    return 404;
  *data = slurp(real, len);
  if (!*data) return 404;
  *type = http_content_type(real);
  return 200;
}
