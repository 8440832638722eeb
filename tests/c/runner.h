/*
 * runner: a tiny test runner in the manner of libuv's: every TEST runs in
 * its own forked process with a timeout; assertions print both operands.
 * A test file defines TESTs and lists them with TEST_LIST(...).
 */
#ifndef LUAHOST_TEST_RUNNER_H
#define LUAHOST_TEST_RUNNER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case { const char *name; void (*fn)(void); };
extern const struct test_case test_cases[];

#define TEST(name) static void test_##name(void)
#define T(name) {#name, test_##name}
#define TEST_LIST(...) const struct test_case test_cases[] = {__VA_ARGS__, {NULL, NULL}}

#define FAIL_AT(...)                                                   \
  do {                                                                 \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                    \
    fprintf(stderr, __VA_ARGS__);                                      \
    fputc('\n', stderr);                                               \
    exit(1);                                                           \
  } while (0)

#define ASSERT(c) do { if (!(c)) FAIL_AT("assertion failed: %s", #c); } while (0)
#define ASSERT_INT_EQ(a, b)                                            \
  do {                                                                 \
    long long a_ = (long long)(a), b_ = (long long)(b);                \
    if (a_ != b_) FAIL_AT("%s == %s: %lld != %lld", #a, #b, a_, b_);   \
  } while (0)
#define ASSERT_STR_EQ(a, b)                                            \
  do {                                                                 \
    const char *a_ = (a), *b_ = (b);                                   \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                             \
      FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",  \
              b_ ? b_ : "(null)");                                     \
  } while (0)
#define ASSERT_MEM_EQ(a, alen, b)                                      \
  do {                                                                 \
    size_t l_ = strlen(b);                                             \
    if ((size_t)(alen) != l_ || memcmp((a), (b), l_) != 0)             \
      FAIL_AT("%s == %s: \"%.*s\" != \"%s\"", #a, #b, (int)(alen), (a), (b)); \
  } while (0)

#endif
