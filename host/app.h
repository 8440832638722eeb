/*
 * app: the three commands over the layers below: serve (server.c), run
 * (one script in a backend state) and test (luaunit files in host
 * states).  Each returns the process exit status.  Main thread.
 */
#ifndef LUAHOST_APP_H
#define LUAHOST_APP_H

#include "config.h"

int app_serve(const char *app_dir, const struct config_cli *cli);
int app_run(const char *script, int argc, char **argv);
/* role: "frontend" / "backend" or NULL (the app's, else frontend).
 * lu_args: luaunit options given to every file's run ("-p", PATTERN,
 * "-x", PATTERN, "-v"); borrowed for the call. */
int app_test(const char *app_dir, const char *role, char **paths, int npaths,
             char **lu_args, int nlu_args);

#endif
