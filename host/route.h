/*
 * route: what a route may say and what it allows.  Checks a route's url
 * (a Lua pattern, statically, by the rules of Lua 5.4's lstrlib, so that a
 * pattern that would raise on some path is refused at start-up), its
 * script name (not one of Lua's libraries or the host's modules) and its
 * methods (HTTP tokens); answers whether a route takes a method and
 * builds the Allow header of a 405.  Knows no Lua state.  Pure; any
 * thread (the routes are read-only after config_load).
 *
 * Methods: names are upper-cased when the config is loaded ("get" is
 * "GET"), as HTTP methods are case-sensitive and every client sends them
 * in upper case; a route that lists GET also takes HEAD (its response is
 * the GET response without a body).  A route without `methods` takes
 * every method.
 */
#ifndef LUAHOST_ROUTE_H
#define LUAHOST_ROUTE_H

#include <stddef.h>

struct route;

#define ROUTE_MAX_CAPTURES 32   /* LUA_MAXCAPTURES */

/* 0 when pat[0..n) is a valid Lua pattern for string.find; else LH_EINVAL with
 * the reason in err, in Lua's words ("malformed pattern (missing ']')",
 * "invalid capture index %2", ...), except that a capture never closed
 * is "malformed pattern (unfinished capture)" (Lua says so only when a
 * path matches).  *ncaptures = the number of captures (may be NULL). */
int route_check_pattern(const char *pat, size_t n, int *ncaptures, char *err, size_t errlen);

/* When a module named script would shadow a standard library or a host
 * module (require would return that instead of the app's file): what it
 * shadows ("Lua's debug library", "the host's json module"); else NULL. */
const char *route_shadowed(const char *script);

/* 1 when s[0..n) is a non-empty HTTP token (RFC 9110 tchar). */
int route_is_token(const char *s, size_t n);

/* 1 when route r takes method m (HEAD where GET is listed). */
int route_allows(const struct route *r, const char *m);

/* Appends to an Allow list the methods of r not yet in it (HEAD after GET
 * when GET is listed): list is a ", "-separated NUL-terminated string in
 * buf[cap].  A route that takes every method adds nothing.  Returns 0, or
 * LH_ELIMIT when buf is too small (the list is then left as it was). */
int route_allow_add(const struct route *r, char *buf, size_t cap);

#endif
