/*
 * net/fetch: outbound HTTP(S) requests on a libuv loop (the net layer of
 * urlfetch, SPEC §10).  Two paths behind one API, chosen per fetch by the
 * URL's scheme:
 *   - http: luahost's own HTTP/1.1 client (fetch_h1.c: libuv sockets,
 *     llhttp), with a keep-alive pool per client keyed by (host, port) and
 *     a 60 s cache of resolved names (uv_getaddrinfo; IP literals, IPv6
 *     too, connect at once; a name's addresses are tried in order);
 *   - https: libcurl's multi-socket API driven by uv_poll and uv_timer,
 *     one CURLM per client (TLS with the system CA store, HTTP/2 where the
 *     server offers it, connections and DNS cache shared by the client).
 * A redirect from http to https hands the rest of the fetch (redirects and
 * time left) to curl.  When a proxy is set in the environment
 * (http_proxy, HTTP_PROXY, all_proxy or ALL_PROXY, read once by
 * fetch_client_new), or the URL carries credentials (user:pass@, sent by
 * curl as Basic authentication), http goes through curl as well, which
 * reads the proxy variables itself (no_proxy included).  Only http and
 * https, also for redirects.  Knows no Lua.
 *
 * Integration (what the caller does):
 *   - One struct fetch_client per uv loop: a worker's loop, or the small
 *     loop a background thread drives while it waits in place.  Every
 *     function here, and every callback, runs on that loop's thread; the
 *     loop must be run for fetches to progress.
 *   - fetch_request_init(&rq) for the defaults, fill in the fields, then
 *     fetch_start.  fetch_start copies everything it needs (url, method,
 *     headers, body): the request and its buffers may go once it returns.
 *     A malformed URL, a scheme other than http/https, or a bad header
 *     (name not a token; CR, LF or NUL in a name or value) is refused at
 *     once with FETCH_EINVAL_URL / FETCH_EINVAL_HEADER; nothing is started
 *     and no callback comes.
 *   - A started fetch gets exactly one callback, later (never from inside
 *     fetch_start), on the loop thread, unless fetch_cancel is called
 *     first.  The struct fetch_result and everything it points to (headers,
 *     body, final_url, message) are valid only during the callback: copy
 *     what you keep.  The struct fetch * is freed when the callback
 *     returns: drop it then, and do not cancel it from its own callback.
 *   - fetch_cancel(f): the waiter is gone (deadline, bt.cancel, dead
 *     coroutine).  The transfer is stopped (its connection closed, or
 *     removed from curl's multi handle) and freed at once; its callback is
 *     NOT called, neither now nor later.
 *   - fetch_client_close(c, done, ud): every fetch still in flight gets its
 *     callback, synchronously, with error FETCH_ECANCELLED; then the
 *     connections are closed and the uv handles closed asynchronously;
 *     done(ud) runs from the loop once the last handle is closed and the
 *     last name lookup has called back (getaddrinfo runs on libuv's
 *     threadpool and cannot always be cancelled), after which c is freed.
 *     Run the loop until then (a thread's private loop:
 *     uv_run(loop, UV_RUN_DEFAULT) returns after done).  After close,
 *     fetch_start returns FETCH_ECLOSED.  Callbacks may call fetch_start,
 *     fetch_cancel (of other fetches) and fetch_client_close.
 *   - Response memory (headers, body) comes from the request's allocator
 *     (same shape as lua_Alloc; NULL: realloc/free), so the binding can
 *     charge it to the calling state's memory limit; it is called on the
 *     loop thread whenever the loop runs between fetch_start and the
 *     callback (the calling coroutine is suspended then), and all of it is
 *     given back when the callback returns (or at fetch_cancel).  A
 *     refused allocation ends the fetch with FETCH_ENOMEM.
 *
 * On the wire: up to 64 idle connections are kept per client and path.
 * http: "METHOD /path?query HTTP/1.1", a Host header (with the port when
 * not 80), an Accept of any type as curl sends (unless the caller sends an
 * Accept), the caller's headers in order (a caller's Host replaces ours;
 * its Content-Length and Transfer-Encoding are dropped: the body is sent
 * whole with a Content-Length, also 0 for a POST, PUT or PATCH without
 * one), in one write.  No Expect, no Accept-Encoding (bodies come as sent).
 * A response header block over 64 KiB is refused (FETCH_EDOWNLOAD); 1xx
 * responses are skipped; a body may run to EOF.  A connection goes back to
 * the pool only after a complete response the peer keeps alive (not
 * Connection: close, not HTTP/1.0 without keep-alive, no stray bytes after
 * it); an idle one is closed when the peer closes it or sends anything.  A
 * request on a reused connection that fails before any response byte is
 * sent once more on a new connection (as curl does).  The connection of a
 * fetch that failed, timed out or was cancelled is closed.  Redirects:
 * 301/302 turn a POST, 303 anything but HEAD, into a GET without body;
 * 307/308 keep method and body; the caller's Host, Authorization and Cookie
 * go to the first origin only.  https (curl): a fetch to an origin whose
 * connection is still being set up waits to share it if it turns out to
 * speak HTTP/2; POST goes as curl's POST, other methods as given; curl's
 * "Expect: 100-continue" is suppressed unless the caller sends an Expect.
 *
 * curl_global_init runs once per process (pthread_once), from the first
 * fetch_client_new; curl_global_cleanup is never called.  The process
 * must ignore SIGPIPE (luahost's main does, for every command): libuv
 * writes with write(2), and a write to an upstream that closed must fail
 * with EPIPE, not kill the process.
 *
 * Errors: 0 or a negative FETCH_E*; fetch_strerror names them.  How the
 * binding maps them (SPEC §10): FETCH_EINVAL_URL -> urlfetch.InvalidURLError
 * (raised); FETCH_EINVAL_HEADER, FETCH_EINVAL -> urlfetch.Error (raised);
 * FETCH_EDOWNLOAD (DNS, connect, reset, protocol, too many redirects,
 * redirect to another scheme) -> DownloadError; FETCH_ETIMEDOUT ->
 * DeadlineExceededError; FETCH_ETOOLARGE -> ResponseTooLargeError;
 * FETCH_ESSLCERT -> SSLCertificateError; FETCH_ENOMEM -> a memory error;
 * FETCH_ECANCELLED -> nil, "cancelled" (client closed).
 */
#ifndef LUAHOST_NET_FETCH_H
#define LUAHOST_NET_FETCH_H

#include <stddef.h>
#include <uv.h>

enum {
  FETCH_OK = 0,
  FETCH_EINVAL_URL = -1,    /* malformed URL, or a scheme other than http(s) */
  FETCH_EINVAL_HEADER = -2, /* header name not a token, or CR/LF/NUL in it */
  FETCH_EINVAL = -3,        /* other misuse: bad method, NULL argument */
  FETCH_ENOMEM = -4,        /* malloc failed, or the allocator refused */
  FETCH_EDOWNLOAD = -5,     /* DNS, connect, reset, protocol, redirects */
  FETCH_ETIMEDOUT = -6,     /* timeout_ms passed */
  FETCH_ETOOLARGE = -7,     /* body over max_response_size */
  FETCH_ESSLCERT = -8,      /* the server's certificate did not verify */
  FETCH_ECANCELLED = -9,    /* the client was closed with the fetch in flight */
  FETCH_ECLOSED = -10,      /* fetch_start on a closing client */
};

#define FETCH_MAX_REDIRECTS 5
#define FETCH_DEFAULT_TIMEOUT_MS 5000
#define FETCH_DEFAULT_MAX_RESPONSE ((size_t)32 << 20)

/* Same contract as lua_Alloc: nsize 0 frees (returns NULL), otherwise
 * (re)allocates ptr of osize bytes (ptr NULL: osize means nothing), NULL
 * when refused (ptr still valid). */
typedef void *(*fetch_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* A header: bytes with lengths (not NUL-terminated on the request side;
 * NUL-terminated in a result). */
struct fetch_header {
  const char *name; size_t name_len;
  const char *value; size_t value_len;
};

struct fetch_request {
  const char *method;                 /* a token, e.g. "GET" (NULL: GET) */
  const char *url;                    /* NUL-terminated */
  const struct fetch_header *headers; /* sent in this order */
  size_t nheaders;
  const char *body; size_t body_len;  /* body NULL: none */
  long timeout_ms;                    /* whole transfer, redirects included; 0: none */
  int follow_redirects;               /* follow at most max_redirects */
  int max_redirects;
  int validate_certificate;           /* 0: accept any certificate and host name */
  size_t max_response_size;           /* body bytes */
  int allow_truncated;                /* 1: keep the first max_response_size bytes */
  fetch_alloc_fn alloc;               /* response memory; NULL: realloc/free */
  void *alloc_ud;
};

/* What a fetch ended with.  Valid only during the callback.  When error
 * is not 0, only error, message, status (0, or that of a response cut
 * short) and final_url are set: no headers, no body. */
struct fetch_result {
  int error;                          /* 0 or FETCH_E* */
  const char *message;                /* error: what happened; "" when ok */
  long status;                        /* final HTTP status (any status is a result) */
  /* The final response's headers (after redirects), in the order received;
   * names lower-cased, values trimmed; repeated names appear repeatedly. */
  const struct fetch_header *headers;
  size_t nheaders;
  const char *body; size_t body_len;  /* body NULL when empty */
  const char *final_url;              /* after redirects */
  int truncated;                      /* allow_truncated cut the body */
};

struct fetch_client;
struct fetch;

typedef void (*fetch_done_cb)(void *ud, const struct fetch_result *res);
typedef void (*fetch_closed_cb)(void *ud);

/* NULL when out of memory or curl cannot be initialised. */
struct fetch_client *fetch_client_new(uv_loop_t *loop);
/* See the contract above; done may be NULL.  A second call does nothing. */
void fetch_client_close(struct fetch_client *c, fetch_closed_cb done, void *ud);

/* The spec's defaults: GET, 5 s, follow up to 5 redirects, validate
 * certificates, 32 MiB, no truncation, realloc/free. */
void fetch_request_init(struct fetch_request *rq);
/* 0 and *out set (out may be NULL), or a FETCH_E* and nothing started. */
int fetch_start(struct fetch_client *c, const struct fetch_request *rq, fetch_done_cb cb,
                void *ud, struct fetch **out);
/* Abandons a started fetch whose callback has not run: no callback. */
void fetch_cancel(struct fetch *f);

/* Fetches in flight on c (tests, metrics). */
size_t fetch_client_active(const struct fetch_client *c);
const char *fetch_strerror(int err);

#endif
