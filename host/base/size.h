/*
 * size: parsing of byte sizes as written in app.lua and on the command
 * line: "512", "64k", "128m", "1g" (case-insensitive, optional "b").
 * Pure functions, any thread.
 */
#ifndef LUAHOST_SIZE_H
#define LUAHOST_SIZE_H

#include <stddef.h>

/* 0 and *out set on success; -1 on a malformed or overflowing size. */
int size_parse(const char *s, size_t *out);

#endif
