/* listener: one listening socket, accepted from by every worker loop. */
#include "http/listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"

int listener_open(const char *host, int port, int *bound_port, char *err, size_t errlen) {
  struct addrinfo hints, *res = NULL;
  char portstr[16];
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof portstr, "%d", port);
  int rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve listen host '%s': %s", host, gai_strerror(rc));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) goto fail;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
  freeaddrinfo(res);
  return fd;
fail:
  snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return -1;
}

static void on_readable(uv_poll_t *p, int status, int events);

static void on_backoff(uv_timer_t *t) {
  struct listener_poll *lp = t->data;
  if (lp->active) uv_poll_start(&lp->poll, UV_READABLE, on_readable);
}

/* Accepts a few connections per wake-up: enough to keep up, few enough
 * that the other loops get their share. */
static void on_readable(uv_poll_t *p, int status, int events) {
  struct listener_poll *lp = p->data;
  for (int i = 0; i < 4; i++) {
    int fd;
    if (fault_hit(FAULT_ACCEPT)) { fd = -1; errno = EMFILE; }
    else fd = accept4(lp->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log_msg(LOG_WARNING, NULL, NULL, "accept: %s; pausing accepts for 100 ms",
                strerror(errno));
        uv_poll_stop(&lp->poll);
        uv_timer_start(&lp->backoff, on_backoff, 100, 0);
      }
      return;   /* EAGAIN: another loop took it */
    }
    lp->accepted(lp->ud, fd);
  }
}

int listener_start(struct listener_poll *lp, uv_loop_t *loop, int fd,
                   listener_accept_fn accepted, void *ud) {
  lp->accepted = accepted;
  lp->ud = ud;
  lp->fd = fd;
  lp->active = 1;
  uv_timer_init(loop, &lp->backoff);
  lp->backoff.data = lp;
  int r = uv_poll_init(loop, &lp->poll, fd);
  if (r < 0) return r;
  lp->poll.data = lp;
  return uv_poll_start(&lp->poll, UV_READABLE, on_readable);
}

void listener_stop(struct listener_poll *lp) {
  if (!lp->active) return;
  lp->active = 0;
  uv_close((uv_handle_t *)&lp->poll, NULL);
  uv_close((uv_handle_t *)&lp->backoff, NULL);
}
