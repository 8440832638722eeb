/* response: status line and headers as written on the wire. */
#include "http/response.h"
#include "runner.h"

static char *head(const struct http_head *h) {
  struct rbuf b = {0};
  ASSERT_INT_EQ(http_format_head(&b, h), 0);
  ASSERT(rbuf_append(&b, "", 1) == 0);
  return b.p;
}

TEST(basic_head) {
  struct http_header hs[] = {{"Content-Type", 12, "text/plain", 10}, {"X-A", 3, "1", 1}};
  struct http_head h = {200, hs, 2, 5, "rid-1", 0, 0};
  char *s = head(&h);
  ASSERT(strncmp(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
                    "Content-Length: 5\r\nDate: ", 72) == 0);
  ASSERT(strstr(s, " GMT\r\nx-request-id: rid-1\r\n\r\n") != NULL);
  ASSERT(strstr(s, "Connection") == NULL);
  free(s);
}

TEST(host_owned_headers_dropped) {
  struct http_header hs[] = {{"content-length", 14, "999", 3},
                             {"Transfer-Encoding", 17, "chunked", 7},
                             {"x-request-id", 12, "spoof", 5},
                             {"date", 4, "yesterday", 9}};   /* one Date: the host's */
  struct http_head h = {201, hs, 4, 2, "r", 1, 0};
  char *s = head(&h);
  ASSERT(strstr(s, "999") == NULL && strstr(s, "chunked") == NULL && !strstr(s, "spoof"));
  ASSERT(strstr(s, "yesterday") == NULL && strstr(s, "Date: ") != NULL);
  ASSERT(strstr(s, "HTTP/1.1 201 Created\r\n") == s);
  ASSERT(strstr(s, "Content-Length: 2\r\n") != NULL);
  ASSERT(strstr(s, "Connection: close\r\n") != NULL);
  free(s);
}

TEST(bodiless_status) {
  struct http_head h = {204, NULL, 0, 10, "r", 0, 0};
  char *s = head(&h);
  ASSERT(strstr(s, "Content-Length") == NULL);
  ASSERT_INT_EQ(http_status_bodiless(304), 1);
  ASSERT_INT_EQ(http_status_bodiless(200), 0);
  free(s);
}

/* 204 and 304 carry no body, so no Content-Type or Content-Length, even
 * when the handler set one; other headers stay. */
TEST(bodiless_no_type) {
  struct http_header hs[] = {{"Content-Type", 12, "text/plain; charset=utf-8", 25},
                             {"ETag", 4, "\"v1\"", 4},
                             {"content-TYPE", 12, "application/json", 16}};
  for (int i = 0; i < 2; i++) {
    struct http_head h = {i ? 304 : 204, hs, 3, 7, "r", 0, 0};
    char *s = head(&h);
    ASSERT(strstr(s, i ? "HTTP/1.1 304 Not Modified\r\n" : "HTTP/1.1 204 No Content\r\n") == s);
    ASSERT(strcasestr(s, "content-type") == NULL);
    ASSERT(strcasestr(s, "content-length") == NULL);
    ASSERT(strstr(s, "ETag: \"v1\"\r\n") != NULL);
    free(s);
  }
  struct http_head ok = {200, hs, 3, 7, "r", 0, 0};
  char *s = head(&ok);
  ASSERT(strstr(s, "Content-Type: text/plain; charset=utf-8\r\n") != NULL);
  ASSERT(strstr(s, "Content-Length: 7\r\n") != NULL);
  free(s);
}

/* The same name several times: one line each, in order. */
TEST(repeated_headers) {
  struct http_header hs[] = {{"Set-Cookie", 10, "a=1; Path=/", 11},
                             {"X-Mid", 5, "m", 1},
                             {"Set-Cookie", 10, "b=2", 3}};
  struct http_head h = {200, hs, 3, 0, "r", 0, 0};
  char *s = head(&h);
  ASSERT(strstr(s, "\r\nSet-Cookie: a=1; Path=/\r\nX-Mid: m\r\nSet-Cookie: b=2\r\n") != NULL);
  free(s);
}

/* HEAD: the head a GET gets, Content-Length of the body not sent. */
TEST(head_keeps_length) {
  struct http_header hs[] = {{"Content-Type", 12, "text/html", 9}};
  struct http_head h = {200, hs, 1, 12345, "r", 0, 0};
  char *s = head(&h);
  ASSERT(strstr(s, "Content-Length: 12345\r\n") != NULL);
  ASSERT(strstr(s, "Content-Type: text/html\r\n") != NULL);
  free(s);
}

TEST(keep_alive_10) {
  struct http_head h = {200, NULL, 0, 0, "r", 0, 1};
  char *s = head(&h);
  ASSERT(strstr(s, "Connection: keep-alive\r\n") != NULL);
  free(s);
}

TEST(header_validation) {
  struct http_header ok = {"X-Ok", 4, "fine value", 10};
  struct http_header crlf = {"X-Bad", 5, "a\r\nSet-Cookie: x", 16};
  struct http_header space = {"Bad Name", 8, "v", 1};
  struct http_header empty = {"", 0, "v", 1};
  ASSERT_INT_EQ(http_header_valid(&ok), 1);
  ASSERT_INT_EQ(http_header_valid(&crlf), 0);
  ASSERT_INT_EQ(http_header_valid(&space), 0);
  ASSERT_INT_EQ(http_header_valid(&empty), 0);
}

TEST(reasons) {
  ASSERT_STR_EQ(http_reason(404), "Not Found");
  ASSERT_STR_EQ(http_reason(431), "Request Header Fields Too Large");
  ASSERT_STR_EQ(http_reason(205), "Reset Content");
  ASSERT_STR_EQ(http_reason(422), "Unprocessable Content");
  ASSERT_STR_EQ(http_reason(599), "Server Error");
}

TEST_LIST(T(basic_head), T(host_owned_headers_dropped), T(bodiless_status), T(bodiless_no_type),
          T(repeated_headers), T(head_keeps_length), T(keep_alive_10),
          T(header_validation), T(reasons));
