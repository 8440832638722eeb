/*
 * net/redis_url: where a Redis server is and how to log in, parsed from
 * the URL an app names it by.  Pure; any thread.
 *
 * Accepted forms (user, password and socket path may be %XX-encoded):
 *
 *   redis://HOST[:PORT][/DB]                 HOST: name, IPv4, or [IPv6]
 *   redis://:PASSWORD@HOST[:PORT][/DB]       AUTH PASSWORD
 *   redis://USER:PASSWORD@HOST[:PORT][/DB]   AUTH USER PASSWORD (Redis 6 ACL)
 *   unix:///PATH/TO/SOCKET[?db=DB]           a unix socket (absolute path)
 *   unix://:PASSWORD@/PATH[?db=DB]           ... with a password (or USER:PASSWORD@)
 *
 * PORT defaults to 6379, DB to 0 (SELECT is sent only when DB != 0).
 * "?db=N" is accepted after either form instead of "/N".  Refused, each
 * with a message naming what is wrong: other schemes (rediss:// says TLS
 * is not supported), an empty host, a port outside 1..65535, a DB that is
 * not a number in 0..2147483647, "user@" without ":password", a relative
 * or too long socket path, an unknown query parameter.
 */
#ifndef LUAHOST_REDIS_URL_H
#define LUAHOST_REDIS_URL_H

#include <stddef.h>

struct redis_url {
  int is_unix;            /* 1: connect to path; 0: to host:port */
  char host[256];         /* TCP: name or address (IPv6 without brackets) */
  int port;               /* TCP: 1..65535 */
  char path[108];         /* unix: socket path (sun_path's size) */
  char user[128];         /* "" unless USER:PASSWORD@ */
  char password[256];
  int has_password;       /* 1: send AUTH after connecting */
  int db;                 /* SELECT db after connecting when != 0 */
};

/* Parses url into *out.  Returns 0, or -1 with a sentence in err (which
 * never repeats the password). */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

/* Writes where u points without its credentials ("127.0.0.1:6379/0",
 * "[::1]:6379/2", "unix:/tmp/r.sock/0"), for messages. */
void redis_url_describe(const struct redis_url *u, char *buf, size_t len);

#endif
