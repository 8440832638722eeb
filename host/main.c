/* main: the command line of luahost (SPEC §2). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "base/fault.h"
#include "base/instance.h"

/* One usage text per command; `luahost --help` prints them all. */
static const char serve_usage[] =
  "  luahost serve [APP_DIR] [--listen HOST:PORT] [--role frontend|backend]\n"
  "                [--workers N] [--max-background-threads N]\n"
  "                [--memory-limit SIZE] [--request-deadline SECONDS]\n"
  "                [--shutdown-grace SECONDS] [--log-format text|json] [--reload]\n";
static const char serve_help[] =
  "Serves APP_DIR (default: the bundled example app) over HTTP.\n"
  "Options override app.lua; app.lua overrides the defaults.\n"
  "  --listen HOST:PORT          address to listen on (port 0: any free port)\n"
  "  --role frontend|backend     the instance's role\n"
  "  --workers N                 request-handling threads\n"
  "  --max-background-threads N  background threads active at once\n"
  "  --memory-limit SIZE         Lua heap per state (512, 64k, 128m, 1g)\n"
  "  --request-deadline SECONDS  how long a handler may run\n"
  "  --shutdown-grace SECONDS    time given to requests and threads at shutdown\n"
  "  --log-format text|json      format of the host log and the access log\n"
  "  --reload                    reload whenever a file of the app changes\n"
  "  -h, --help                  print this help\n"
  "Signals: SIGTERM/SIGINT shut down (after `drain` seconds); SIGHUP reloads.\n";
static const char run_usage[] =
  "  luahost run SCRIPT.lua [ARGS...]\n";
static const char run_help[] =
  "Runs one script with the host modules (role backend), ARGS in `arg` and `...`,\n"
  "then waits for its background threads.  Exit 0, or 1 if the script raised.\n"
  "  -h, --help                  print this help\n";
static const char test_usage[] =
  "  luahost test [--app APP_DIR] [--role frontend|backend]\n"
  "               [--filter PATTERN] [--exclude PATTERN] [-v] [PATH...]\n";
static const char test_help[] =
  "Runs luaunit test files (a directory: every test_*.lua under it) in host states.\n"
  "  --app APP_DIR               reach the app's handlers with require \"apptest\"\n"
  "  --role frontend|backend     the role of the test states\n"
  "  --filter PATTERN, -p        run only tests whose name matches the Lua PATTERN\n"
  "                              (luaunit's --pattern; may be repeated)\n"
  "  --exclude PATTERN, -x       skip tests whose name matches (may be repeated)\n"
  "  -v, --verbose               list each test as it runs\n"
  "  -h, --help                  print this help\n";
static const char tail[] =
  "  luahost --version | --help\n"
  "\n"
  "serve without APP_DIR serves the bundled example app.\n"
  "`luahost COMMAND --help` describes one command.\n"
  "test fails (exit 1, \"no tests found\") when no test ran: an empty run is never a pass.\n"
  "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n";

static void print_usage(FILE *f) {
  fprintf(f, "usage:\n%s%s%s%s", serve_usage, run_usage, test_usage, tail);
}

/* `luahost CMD --help`: that command's usage and options, exit 0. */
static int command_help(const char *usage, const char *help) {
  printf("usage:\n%s\n%s", usage, help);
  return 0;
}

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "luahost: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n\n");
  print_usage(stderr);
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
    if (is_help(argv[i])) return command_help(serve_usage, serve_help);
    if (!strcmp(argv[i], "--reload")) {
      cli.reload = 1;
    } else if (option(argc, argv, &i, "--listen", &cli.listen, &bad) ||
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

/* test: --filter/--exclude/-v become luaunit's own -p/-x/-v. */
static int cmd_test(int argc, char **argv) {
  const char *app = NULL, *role = NULL, *pat = NULL;
  char **paths = calloc((size_t)argc + 1, sizeof *paths);
  char **lu = calloc((size_t)argc * 2 + 1, sizeof *lu);
  int npaths = 0, nlu = 0, rc = 0;
  if (!paths || !lu) abort();
  for (int i = 0; i < argc && rc == 0; i++) {
    int bad = 0;
    if (is_help(argv[i])) {
      rc = command_help(test_usage, test_help);
      goto done;
    }
    if (option(argc, argv, &i, "--app", &app, &bad) ||
        option(argc, argv, &i, "--role", &role, &bad)) {
      if (bad) rc = usage_error("option %s: expected a value after it", argv[i]);
    } else if (option(argc, argv, &i, "--filter", &pat, &bad) ||
               option(argc, argv, &i, "--pattern", &pat, &bad) ||
               option(argc, argv, &i, "-p", &pat, &bad)) {
      if (bad) rc = usage_error("option %s: expected a Lua pattern after it", argv[i]);
      else { lu[nlu++] = "-p"; lu[nlu++] = (char *)pat; }
    } else if (option(argc, argv, &i, "--exclude", &pat, &bad) ||
               option(argc, argv, &i, "-x", &pat, &bad)) {
      if (bad) rc = usage_error("option %s: expected a Lua pattern after it", argv[i]);
      else { lu[nlu++] = "-x"; lu[nlu++] = (char *)pat; }
    } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
      lu[nlu++] = "-v";
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      rc = usage_error("test: unknown option '%s'", argv[i]);
    } else {
      paths[npaths++] = argv[i];
    }
  }
  if (rc == 0) rc = app_test(app, role, paths, npaths, lu, nlu);
done:
  free(paths);
  free(lu);
  return rc;
}

#ifdef LUAHOST_FAULT_INJECTION
#define BUILD_NOTE ", fault injection build"
#else
#define BUILD_NOTE ""
#endif

int main(int argc, char **argv) {
  instance_init();
  /* Every command may talk to peers (serve's clients; urlfetch and redis
   * in run and test too): a peer that closes first must give EPIPE on the
   * write, not end the process. */
  signal(SIGPIPE, SIG_IGN);
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
  if (is_help(cmd) || !strcmp(cmd, "help")) {
    if (argc > 2 && !strcmp(argv[2], "serve")) return command_help(serve_usage, serve_help);
    if (argc > 2 && !strcmp(argv[2], "run")) return command_help(run_usage, run_help);
    if (argc > 2 && !strcmp(argv[2], "test")) return command_help(test_usage, test_help);
    print_usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
  if (!strcmp(cmd, "test")) return cmd_test(argc - 2, argv + 2);
  if (!strcmp(cmd, "run")) {
    if (argc < 3) return usage_error("%s", "run: expected SCRIPT.lua");
    if (is_help(argv[2])) return command_help(run_usage, run_help);
    return app_run(argv[2], argc - 3, argv + 3);
  }
  return usage_error("unknown command '%s' (expected serve, run or test)", cmd);
}
