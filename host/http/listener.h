/*
 * listener: the listening socket, shared by every worker loop.  Each worker
 * polls the same descriptor and accepts one connection per wake-up, so a
 * worker busy in a long handler simply stops accepting and the others take
 * the new connections.  listener_open runs on the main thread; a struct
 * listener_poll belongs to one worker's loop thread.
 */
#ifndef LUAHOST_LISTENER_H
#define LUAHOST_LISTENER_H

#include <uv.h>

#include "http/http.h"

/* Binds and listens on "host:port" ("[::1]:8080" for IPv6).  Returns the
 * descriptor and writes the bound port, or -1 with a message in err. */
int listener_open(const char *host, int port, int *bound_port, char *err, size_t errlen);

/* Receives each accepted connection (the owner opens it with
 * http_conn_open, here or on another loop). */
typedef void (*listener_accept_fn)(void *ud, int fd);

struct listener_poll {
  uv_poll_t poll;
  uv_timer_t backoff;        /* pauses accepting after EMFILE */
  listener_accept_fn accepted;
  void *ud;
  int fd;
  int active;
};

int listener_start(struct listener_poll *lp, uv_loop_t *loop, int fd,
                   listener_accept_fn accepted, void *ud);
void listener_stop(struct listener_poll *lp);   /* closes its handles */

#endif
