/* config: the operating keys (SPEC §3, §13): drain, metrics_allow,
 * access_log = "json", and serve --reload's flag. */
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "runner.h"

static char dir[64];

static void app(const char *lua) {
  char p[128];
  snprintf(dir, sizeof dir, "/tmp/luahost-cfgopsXXXXXX");
  ASSERT(mkdtemp(dir));
  snprintf(p, sizeof p, "%s/app.lua", dir);
  FILE *f = fopen(p, "w");
  ASSERT(f);
  fputs(lua, f);
  fclose(f);
}

static int load(struct config *c, const char *lua, const struct config_cli *cli, char *err) {
  struct config_cli none = {0};
  app(lua);
  return config_load(c, dir, cli ? cli : &none, err, 512);
}

static void expect_error(const char *lua, const char *needle1, const char *needle2) {
  struct config c;
  char err[512] = "";
  if (load(&c, lua, NULL, err) != LH_EINVAL) FAIL_AT("accepted: %s", lua);
  if (!strstr(err, needle1)) FAIL_AT("error \"%s\" lacks \"%s\"", err, needle1);
  if (needle2 && !strstr(err, needle2)) FAIL_AT("error \"%s\" lacks \"%s\"", err, needle2);
  config_free(&c);
}

TEST(defaults) {
  struct config c;
  char err[512];
  ASSERT_INT_EQ(load(&c, "return {}", NULL, err), 0);
  ASSERT(c.drain == 0);
  ASSERT_INT_EQ(c.nmetrics_allow, 0);
  ASSERT_INT_EQ(c.access_log, 1);
  ASSERT_INT_EQ(c.reload, 0);
  config_free(&c);
}

TEST(values) {
  struct config c;
  char err[512] = "";
  int rc = load(&c, "return { drain = 2.5, access_log = 'json',"
                    " metrics_allow = {'10.0.0.0/8', '192.0.2.7', '2001:db8::/32'} }", NULL, err);
  if (rc != 0) FAIL_AT("refused: %s", err);
  ASSERT(c.drain == 2.5);
  ASSERT_INT_EQ(c.access_log, 2);
  ASSERT_INT_EQ(c.nmetrics_allow, 3);
  ASSERT_INT_EQ(cidr_match(&c.metrics_allow[0], "10.200.1.1"), 1);
  ASSERT_INT_EQ(cidr_match(&c.metrics_allow[1], "192.0.2.7"), 1);
  ASSERT_INT_EQ(cidr_match(&c.metrics_allow[1], "192.0.2.8"), 0);
  ASSERT_INT_EQ(cidr_match_any(c.metrics_allow, c.nmetrics_allow, "2001:db8:1::1"), 1);
  ASSERT_INT_EQ(cidr_match_any(c.metrics_allow, c.nmetrics_allow, "172.16.0.1"), 0);
  config_free(&c);
  ASSERT_INT_EQ(load(&c, "return { drain = 0, access_log = false, metrics_allow = {} }",
                     NULL, err), 0);
  ASSERT(c.drain == 0);
  ASSERT_INT_EQ(c.access_log, 0);
  ASSERT_INT_EQ(c.nmetrics_allow, 0);
  config_free(&c);
}

TEST(reload_flag_from_cli) {
  struct config c;
  struct config_cli cli = {0};
  char err[512];
  cli.reload = 1;
  ASSERT_INT_EQ(load(&c, "return {}", &cli, err), 0);
  ASSERT_INT_EQ(c.reload, 1);
  config_free(&c);
}

TEST(errors_name_the_key) {
  expect_error("return { drain = -1 }", "'drain'", ">= 0");
  expect_error("return { drain = 'soon' }", "'drain'", "seconds");
  expect_error("return { drain = 0/0 }", "'drain'", NULL);
  expect_error("return { access_log = 'yes' }", "'access_log'", "\"json\"");
  expect_error("return { access_log = 'JSON' }", "'access_log'", NULL);
  expect_error("return { access_log = 1 }", "'access_log'", NULL);
  expect_error("return { metrics_allow = '10.0.0.0/8' }", "'metrics_allow'", "array of CIDR");
  expect_error("return { metrics_allow = {'10.0.0.0/33'} }", "'metrics_allow[1]'", "10.0.0.0/33");
  expect_error("return { metrics_allow = {'10.0.0.0/8', 'example.com'} }",
               "'metrics_allow[2]'", "example.com");
  expect_error("return { metrics_allow = {'10.0.0.0/8', 42} }", "'metrics_allow[2]'", NULL);
  expect_error("return { metrics_allow = {allow = '10.0.0.0/8'} }", "'metrics_allow'", NULL);
  expect_error("return { metrics_allow = {'10.0.0.0/8', nil, '11.0.0.0/8'} }",
               "'metrics_allow", NULL);
  expect_error("return { metrics_allow = {'10.0.0.0/8\\0junk'} }", "'metrics_allow[1]'", NULL);
}

TEST_LIST(T(defaults), T(values), T(reload_flag_from_cli), T(errors_name_the_key));
