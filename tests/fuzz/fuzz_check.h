/*
 * fuzz_check: the one assertion of the fuzz targets: on failure it names
 * the target, the place and the condition, then aborts so that libFuzzer
 * keeps the input.  FUZZ_NAME is the target's name; FUZZ_ON_FAIL(), if
 * defined, prints more context first.
 */
#ifndef LUAHOST_FUZZ_CHECK_H
#define LUAHOST_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_ON_FAIL
#define FUZZ_ON_FAIL() ((void)0)
#endif

#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s: %s:%d: check failed: %s: ", FUZZ_NAME, __FILE__, \
              __LINE__, #cond);                                             \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                \
      FUZZ_ON_FAIL();                                                       \
      abort();                                                              \
    }                                                                       \
  } while (0)

#endif
