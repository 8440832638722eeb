/* main: the command line of luahost (SPEC §2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "base/fault.h"
#include "base/instance.h"

static const char usage[] =
  "usage:\n"
  "  luahost serve [APP_DIR] [--listen HOST:PORT] [--role frontend|backend]\n"
  "                [--workers N] [--max-background-threads N]\n"
  "                [--memory-limit SIZE] [--request-deadline SECONDS]\n"
  "                [--shutdown-grace SECONDS] [--log-format text|json]\n"
  "  luahost run SCRIPT.lua [ARGS...]\n"
  "  luahost test [--app APP_DIR] [--role frontend|backend] [PATH...]\n"
  "  luahost --version | --help\n"
  "\n"
  "serve without APP_DIR serves the bundled example app.\n"
  "test fails (exit 1, \"no tests found\") when no test ran: an empty run is never a pass.\n"
  "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "luahost: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n\n%s", usage);
  return 2;
}

/* Matches "--name value" and "--name=value"; advances *i past the value. */
static int option(int argc, char **argv, int *i, const char *name, const char **out,
                  int *bad) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') { *out = a + n + 1; return 1; }
  if (a[n] != '\0') return 0;
  if (*i + 1 >= argc) { *bad = 1; return 1; }
  *out = argv[++*i];
  return 1;
}

static int cmd_serve(int argc, char **argv) {
  struct config_cli cli;
  const char *app_dir = NULL;
  memset(&cli, 0, sizeof cli);
  for (int i = 0; i < argc; i++) {
    int bad = 0;
    if (option(argc, argv, &i, "--listen", &cli.listen, &bad) ||
        option(argc, argv, &i, "--role", &cli.role, &bad) ||
        option(argc, argv, &i, "--workers", &cli.workers, &bad) ||
        option(argc, argv, &i, "--max-background-threads", &cli.max_background_threads, &bad) ||
        option(argc, argv, &i, "--memory-limit", &cli.memory_limit, &bad) ||
        option(argc, argv, &i, "--request-deadline", &cli.request_deadline, &bad) ||
        option(argc, argv, &i, "--shutdown-grace", &cli.shutdown_grace, &bad) ||
        option(argc, argv, &i, "--log-format", &cli.log_format, &bad)) {
      if (bad) return usage_error("option %s: expected a value after it", argv[i]);
    } else if (argv[i][0] == '-') {
      return usage_error("serve: unknown option '%s'", argv[i]);
    } else if (app_dir) {
      return usage_error("serve: expected one APP_DIR, got a second one '%s'", argv[i]);
    } else {
      app_dir = argv[i];
    }
  }
  return app_serve(app_dir ? app_dir : LUAHOST_EXAMPLE_DIR, &cli);
}

static int cmd_test(int argc, char **argv) {
  const char *app = NULL, *role = NULL;
  char **paths = calloc((size_t)argc + 1, sizeof *paths);
  int npaths = 0, rc;
  for (int i = 0; i < argc; i++) {
    int bad = 0;
    if (option(argc, argv, &i, "--app", &app, &bad) ||
        option(argc, argv, &i, "--role", &role, &bad)) {
      if (bad) { free(paths); return usage_error("option %s: expected a value after it", argv[i]); }
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      free(paths);
      return usage_error("test: unknown option '%s'", argv[i]);
    } else {
      paths[npaths++] = argv[i];
    }
  }
  rc = app_test(app, role, paths, npaths);
  free(paths);
  return rc;
}

#ifdef LUAHOST_FAULT_INJECTION
#define BUILD_NOTE ", fault injection build"
#else
#define BUILD_NOTE ""
#endif

int main(int argc, char **argv) {
  instance_init();
#ifdef LUAHOST_FAULT_INJECTION
  char ferr[256];
  if (fault_arm_spec(getenv("LUAHOST_FAULTS"), ferr, sizeof ferr) < 0) {
    fprintf(stderr, "luahost: %s\n", ferr);
    return 2;
  }
#endif
  if (argc < 2) return usage_error("%s", "expected a command: serve, run or test");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
    printf("luahost %s (%s%s)\n", LUAHOST_VERSION, "Lua 5.4", BUILD_NOTE);
    return 0;
  }
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
  if (!strcmp(cmd, "test")) return cmd_test(argc - 2, argv + 2);
  if (!strcmp(cmd, "run")) {
    if (argc < 3) return usage_error("%s", "run: expected SCRIPT.lua");
    return app_run(argv[2], argc - 3, argv + 3);
  }
  return usage_error("unknown command '%s' (expected serve, run or test)", cmd);
}
