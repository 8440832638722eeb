/*
 * server: `luahost serve`: builds the workers, listens, runs the backend
 * start request, then waits for SIGINT/SIGTERM and shuts down within the
 * grace period.  Main thread only.
 */
#ifndef LUAHOST_SERVER_H
#define LUAHOST_SERVER_H

#include <lauxlib.h>

#include "config.h"

/* Returns the process exit status (0 after a clean shutdown, 1 on a
 * runtime failure). */
int server_run(const struct config *cfg, const luaL_Reg *preload);

#endif
