/*
 * cidr: address ranges written as "10.0.0.0/8", "2001:db8::/32" or a bare
 * address (a /32 or /128), and whether a peer's address (as text, the way
 * http/conn records it) is inside one.  An IPv4-mapped IPv6 peer
 * (::ffff:10.1.2.3) matches IPv4 ranges.  Knows no Lua.
 *
 * Threads: pure functions on caller-owned values; any thread.
 */
#ifndef LUAHOST_CIDR_H
#define LUAHOST_CIDR_H

#define CIDR_EINVAL (-1)

struct cidr {
  int family;                /* AF_INET or AF_INET6 */
  unsigned char addr[16];    /* network order; bits past the prefix cleared */
  int bits;                  /* prefix length: 0..32 or 0..128 */
};

/* 0, or CIDR_EINVAL when text is not an address with an optional
 * "/prefix" in range (no spaces, no signs, no leading zeros but "0"). */
int cidr_parse(struct cidr *c, const char *text);
/* 1 when the address addr (text, IPv4 or IPv6) is inside c; 0 otherwise,
 * also when addr is not an address. */
int cidr_match(const struct cidr *c, const char *addr);
/* 1 when any of the n ranges holds addr. */
int cidr_match_any(const struct cidr *c, int n, const char *addr);
/* 1 for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
int cidr_is_loopback(const char *addr);
/* "addr/bits" of c into out (at least 50 bytes). */
void cidr_format(const struct cidr *c, char *out, unsigned long len);

#endif
