/*
 * static: serves files of a static_dir route.  The part of the path after
 * the route's match is percent-decoded and resolved inside root; "..",
 * NUL bytes and symlinks leading outside root answer 404.  Any thread
 * (the read is a plain blocking read).
 */
#ifndef LUAHOST_STATIC_H
#define LUAHOST_STATIC_H

#include <stddef.h>

#include "http/http.h"

const char *http_content_type(const char *path);
/* The file for `rest` under root (an absolute, symlink-free directory
 * path: realpath): 200 with *data (malloc'd, the caller frees) and *type,
 * or 404/405 with *data NULL.  The request runner (dispatch.c) answers
 * static routes with it, for serve and apptest alike. */
int http_static_load(const char *method, const char *root, const char *rest,
                     size_t rest_len, char **data, size_t *len, const char **type);

#endif
