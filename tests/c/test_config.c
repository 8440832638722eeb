/* config: defaults, app.lua validation, command-line overrides. */
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "config.h"
#include "route.h"
#include "runner.h"
#include "vm/state.h"

static char dir[64];

static void app(const char *lua) {
  char p[128];
  snprintf(dir, sizeof dir, "/tmp/luahost-cfgXXXXXX");
  ASSERT(mkdtemp(dir));
  snprintf(p, sizeof p, "%s/app.lua", dir);
  FILE *f = fopen(p, "w");
  ASSERT(f);
  fputs(lua, f);
  fclose(f);
}

static int load(struct config *c, const struct config_cli *cli, char *err) {
  struct config_cli none = {0};
  return config_load(c, dir, cli ? cli : &none, err, 512);
}

/* Loading must fail with a message containing every needle. */
static void expect_error(const char *lua, const struct config_cli *cli, const char *needle) {
  struct config c;
  char err[512] = "";
  app(lua);
  if (load(&c, cli, err) != LH_EINVAL) FAIL_AT("accepted: %s", lua);
  if (!strstr(err, needle)) FAIL_AT("error \"%s\" lacks \"%s\"", err, needle);
  config_free(&c);
}

TEST(defaults) {
  struct config c;
  char err[512];
  app("return {}");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  ASSERT_INT_EQ(c.role, VM_FRONTEND);
  ASSERT_STR_EQ(c.listen_host, "127.0.0.1");
  ASSERT_INT_EQ(c.listen_port, 8080);
  ASSERT_INT_EQ(c.max_background_threads, 10);
  ASSERT_INT_EQ(c.memory_limit, 128u << 20);
  ASSERT_INT_EQ(c.request_deadline, 60);
  ASSERT_INT_EQ(c.shutdown_grace, 30);
  ASSERT_INT_EQ(c.max_body, 32u << 20);
  ASSERT_INT_EQ(c.access_log, 1);
  ASSERT_INT_EQ(c.nroutes, 1);
  ASSERT_STR_EQ(c.routes[0].url, "^/");
  ASSERT_STR_EQ(c.routes[0].script, "main");
  ASSERT(c.workers >= 1);
  config_free(&c);
}

TEST(backend_deadline_default) {
  struct config c;
  char err[512];
  app("return {role = 'backend'}");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  ASSERT_INT_EQ(c.request_deadline, 86400);
  config_free(&c);
}

TEST(values_and_routes) {
  struct config c;
  char err[512];
  app("return {listen = '[::1]:0', workers = 3, memory_limit = '16m', max_body = 1024,"
      " access_log = false, request_deadline = 1.5, shared = {dicts = {d = '1m'}, queues = {q = 5}},"
      " handlers = {{url = '^/api/', script = 'api'}, {url = '^/x$', script = 'x'},"
      " {url = '^/u/(%d+)', script = 'u'}}}");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  ASSERT_STR_EQ(c.listen_host, "::1");
  ASSERT_INT_EQ(c.listen_port, 0);
  ASSERT_INT_EQ(c.workers, 3);
  ASSERT_INT_EQ(c.memory_limit, 16u << 20);
  ASSERT_INT_EQ(c.max_body, 1024);
  ASSERT_INT_EQ(c.access_log, 0);
  ASSERT(c.request_deadline == 1.5);
  ASSERT_INT_EQ(c.ndicts, 1);
  ASSERT_INT_EQ(c.dicts[0].size, 1u << 20);
  ASSERT_INT_EQ(c.queues[0].size, 5);
  ASSERT_STR_EQ(c.routes[0].literal, "/api/");
  ASSERT_INT_EQ(c.routes[0].exact, 0);
  ASSERT_STR_EQ(c.routes[1].literal, "/x");
  ASSERT_INT_EQ(c.routes[1].exact, 1);
  ASSERT(c.routes[2].literal == NULL);
  config_free(&c);
}

TEST(cli_overrides_app_lua) {
  struct config c;
  char err[512];
  struct config_cli cli = {0};
  cli.workers = "5";
  cli.role = "backend";
  cli.listen = "127.0.0.1:9999";
  cli.memory_limit = "1g";
  app("return {workers = 2, role = 'frontend'}");
  ASSERT_INT_EQ(load(&c, &cli, err), 0);
  ASSERT_INT_EQ(c.workers, 5);
  ASSERT_INT_EQ(c.role, VM_BACKEND);
  ASSERT_INT_EQ(c.listen_port, 9999);
  ASSERT_INT_EQ(c.memory_limit, 1u << 30);
  config_free(&c);
}

TEST(errors_name_key_and_expectation) {
  expect_error("return {bogus = 1}", NULL, "unknown key 'bogus'");
  expect_error("return {1, 2}", NULL, "unknown key '[1]'");   /* an array is not a config */
  expect_error("return {workers = 'x'}", NULL, "app.lua key 'workers': expected an integer");
  expect_error("return {workers = 0}", NULL, "'workers'");
  expect_error("return {workers = 2e35}", NULL, "'workers': expected an integer");
  expect_error("return {workers = 0/0}", NULL, "'workers': expected an integer");
  expect_error("return {role = 'middle'}", NULL, "\"frontend\" or \"backend\"");
  expect_error("return {listen = 'nohost'}", NULL, "HOST:PORT");
  expect_error("return {listen = '1.2.3.4:70000'}", NULL, "HOST:PORT");
  expect_error("return {memory_limit = '12q'}", NULL, "'memory_limit': expected a size");
  expect_error("return {request_deadline = 0}", NULL, "positive number of seconds");
  expect_error("return {shutdown_grace = -1}", NULL, "'shutdown_grace'");
  expect_error("return {access_log = 'yes'}", NULL, "true or false");
  expect_error("return {handlers = {}}", NULL, "at least one route");
  expect_error("return {handlers = {{url = '^/'}}}", NULL, "exactly one of 'script' and 'static_dir'");
  expect_error("return {handlers = {{script = 'm'}}}", NULL, "'url'");
  expect_error("return {handlers = {{url = '[', script = 'm'}}}", NULL,
               "app.lua: handlers[1].url: malformed pattern (missing ']')");
  expect_error("return {handlers = {{url = '^/', script = 'm', extra = 1}}}", NULL,
               "only the keys url, script, static_dir and methods");
  expect_error("return {handlers = {{url = '^/', static_dir = 'nope'}}}", NULL,
               "handlers[1].static_dir");
  expect_error("return {shared = {dicts = {d = 'x'}}}", NULL, "shared.dicts.d");
  expect_error("return 42", NULL, "return a table");
  expect_error("return {", NULL, "app.lua");
  expect_error("error('boom')", NULL, "boom");
}

TEST(hostile_app_lua_values_give_messages) {
  /* metamethods never run while checking; errors are messages, not panics */
  expect_error("return { handlers = setmetatable({}, {__len = function() error('x') end}) }",
               NULL, "at least one route");
  expect_error("return { handlers = { setmetatable({}, {__index = function() error('i') end}) } }",
               NULL, "'url'");
  expect_error("return { [setmetatable({}, {__tostring = function() error('boom') end})] = 1 }",
               NULL, "unknown key 'table'");
  expect_error("return { handlers = {{ url = '\\0^/x', script = 'main' }} }", NULL,
               "without NUL bytes");
  expect_error("return { shared = { dicts = { ['a\\0b'] = '1m' } } }", NULL, "NUL");
}

/* The third route's pattern is url: the message names it and says why. */
static void bad_pattern(const char *url, const char *why) {
  char lua[256], want[200];
  snprintf(lua, sizeof lua, "return {handlers = {{url = '^/a$', script = 'a'}, "
           "{url = '^/b', static_dir = '.'}, {url = [=[%s]=], script = 'c'}}}", url);
  snprintf(want, sizeof want, "app.lua: handlers[3].url: %s", why);
  expect_error(lua, NULL, want);
}

/* Every pattern Lua would raise on for some path is refused at start-up,
 * in Lua's words (string.find on "" let "^/(" through). */
TEST(route_patterns) {
  bad_pattern("^/(", "malformed pattern (unfinished capture)");
  bad_pattern("^/users/(%d+", "malformed pattern (unfinished capture)");
  bad_pattern("^/((a)", "malformed pattern (unfinished capture)");
  bad_pattern("^/x%", "malformed pattern (ends with '%')");
  bad_pattern("^/[a-z", "malformed pattern (missing ']')");
  bad_pattern("[]", "malformed pattern (missing ']')");
  bad_pattern("[^]", "malformed pattern (missing ']')");
  bad_pattern("[a%", "malformed pattern (missing ']')");
  bad_pattern("^/)", "invalid pattern capture");
  bad_pattern("^/(a))", "invalid pattern capture");
  bad_pattern("%1", "invalid capture index %1");
  bad_pattern("(a%1)", "invalid capture index %1");
  bad_pattern("(a)%2", "invalid capture index %2");
  bad_pattern("%0", "invalid capture index %0");
  bad_pattern("^/%bx", "malformed pattern (missing arguments to '%b')");
  bad_pattern("^/%fa", "missing '[' after '%f' in pattern");
  bad_pattern("^/%f", "missing '[' after '%f' in pattern");
  bad_pattern("((((((((((((((((((((((((((((((((()))))))))))))))))))))))))))))))))",
              "too many captures");
  /* valid ones, each checked against Lua's own string.find */
  const char *good[] = {"^/users/(%d+)$", "()", "(a)%1", "[]]", "[^]]", "%f[%w]x", "%bxy",
                        "^/a$b", "^/$", "[%]]", "(()%2)", "^/(.-)/(.*)$", "%%", "a-b*c?d+",
                        "^^", NULL};
  for (int i = 0; good[i]; i++) {
    char err[128];
    int nc = -1;
    if (route_check_pattern(good[i], strlen(good[i]), &nc, err, sizeof err) < 0)
      FAIL_AT("'%s' refused: %s", good[i], err);
  }
  int nc = 0;
  char err[128];
  ASSERT_INT_EQ(route_check_pattern("^/(%w+)/()(x)", 13, &nc, err, sizeof err), 0);
  ASSERT_INT_EQ(nc, 3);
}

/* The checker agrees with Lua on a family of patterns: for each, Lua's
 * string.find raises on some subject exactly when the checker refuses. */
TEST(route_patterns_agree_with_lua) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  const char *atoms[] = {"(", ")", "%", "[", "]", "^", "$", "a", "%1", "%2", "%b", "%f", "()",
                         "-", "*", "%d", "[^", "%]"};
  int na = (int)(sizeof atoms / sizeof atoms[0]);
  const char *subjects[] = {"", "a", "aa", "(a)", "]a[", "a%b", "x1$", "^a)", NULL};
  for (int x = 0; x < na; x++)
    for (int y = 0; y < na; y++)
      for (int z = 0; z < na; z++) {
        char pat[16];
        snprintf(pat, sizeof pat, "%s%s%s", atoms[x], atoms[y], atoms[z]);
        char err[128];
        int refused = route_check_pattern(pat, strlen(pat), NULL, err, sizeof err) < 0;
        int raised = 0;
        for (int s = 0; subjects[s] && !raised; s++) {
          lua_getglobal(L, "string");
          lua_getfield(L, -1, "find");
          lua_pushstring(L, subjects[s]);
          lua_pushstring(L, pat);
          raised = lua_pcall(L, 2, 0, 0) != LUA_OK;
          lua_settop(L, 0);
        }
        /* Lua raises only on paths it reaches: refused may be wider */
        if (raised && !refused) FAIL_AT("'%s': Lua raises, the checker accepts", pat);
      }
  lua_close(L);
}

TEST(route_scripts_that_shadow) {
  expect_error("return {handlers = {{url = '^/a', script = 'a'}, {url = '^/', script = 'debug'}}}",
               NULL, "app.lua: handlers[2].script: 'debug' shadows Lua's debug library; "
                     "rename the module");
  expect_error("return {handlers = {{url = '^/', script = 'json'}}}", NULL,
               "handlers[1].script: 'json' shadows the host's json module; rename the module");
  const char *names[] = {"string", "table", "math", "io", "os", "coroutine", "utf8", "package",
                         "runtime", "shared", "background_thread", "apptest", "urlfetch",
                         "redis", "luaunit", NULL};
  for (int i = 0; names[i]; i++) ASSERT(route_shadowed(names[i]) != NULL);
  ASSERT(route_shadowed("main") == NULL);
  ASSERT(route_shadowed("debugging") == NULL);
  ASSERT(route_shadowed("json.handler") == NULL);
}

TEST(route_methods) {
  struct config c;
  char err[512];
  app("return {handlers = {{url = '^/a', script = 'a', methods = {'get', 'Post', 'PURGE'}},"
      "{url = '^/b', script = 'b'}}}");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  const struct route *r = &c.routes[0];
  ASSERT_INT_EQ(r->nmethods, 3);
  ASSERT_STR_EQ(r->methods[0], "GET");
  ASSERT_STR_EQ(r->methods[1], "POST");
  ASSERT_STR_EQ(r->methods[2], "PURGE");
  ASSERT_INT_EQ(route_allows(r, "GET"), 1);
  ASSERT_INT_EQ(route_allows(r, "HEAD"), 1);    /* where GET is */
  ASSERT_INT_EQ(route_allows(r, "POST"), 1);
  ASSERT_INT_EQ(route_allows(r, "DELETE"), 0);
  ASSERT_INT_EQ(route_allows(r, "get"), 0);     /* requests are case-sensitive */
  ASSERT(c.routes[1].methods == NULL);
  ASSERT_INT_EQ(route_allows(&c.routes[1], "DELETE"), 1);
  char allow[64] = "";
  ASSERT_INT_EQ(route_allow_add(r, allow, sizeof allow), 0);
  ASSERT_STR_EQ(allow, "GET, HEAD, POST, PURGE");
  ASSERT_INT_EQ(route_allow_add(&c.routes[1], allow, sizeof allow), 0);
  ASSERT_STR_EQ(allow, "GET, HEAD, POST, PURGE");
  char tiny[8] = "";
  ASSERT_INT_EQ(route_allow_add(r, tiny, sizeof tiny), LH_ELIMIT);
  ASSERT_STR_EQ(tiny, "");
  config_free(&c);

  app("return {handlers = {{url = '^/a', script = 'a', methods = {'PUT'}},"
      "{url = '^/a', script = 'b', methods = {'DELETE', 'PUT', 'GET'}}}}");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  char both[64] = "";
  ASSERT_INT_EQ(route_allow_add(&c.routes[0], both, sizeof both), 0);
  ASSERT_INT_EQ(route_allow_add(&c.routes[1], both, sizeof both), 0);
  ASSERT_STR_EQ(both, "PUT, DELETE, GET, HEAD");
  ASSERT_INT_EQ(route_allows(&c.routes[0], "HEAD"), 0);
  config_free(&c);

  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {'GET', 'GE T'}}}}", NULL,
               "app.lua: handlers[1].methods[2]: expected an HTTP method");
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {'GET', 'POST\\r\\n'}}}}",
               NULL, "handlers[1].methods[2]");
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {''}}}}", NULL,
               "handlers[1].methods[1]");
  /* a token, but requests with it never parse: refused, not a dead route */
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {'GET', 'FOO'}}}}", NULL,
               "handlers[1].methods[2]: expected a method the HTTP parser accepts");
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {42}}}}", NULL,
               "handlers[1].methods[1]: expected an HTTP method");
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = 'GET'}}}", NULL,
               "'handlers[1].methods': expected an array of HTTP methods");
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {}}}}", NULL,
               "'handlers[1].methods': expected an array of HTTP methods");
  expect_error("return {handlers = {{url = '^/', script = 'm', methods = {'GET', x = 'POST'}}}}",
               NULL, "'handlers[1].methods': expected an array");
}

TEST(cli_errors_name_option) {
  struct config_cli cli = {0};
  cli.workers = "many";
  expect_error("return {}", &cli, "option --workers");
  struct config_cli cli2 = {0};
  cli2.log_format = "xml";
  expect_error("return {}", &cli2, "option --log-format");
  struct config_cli cli3 = {0};
  cli3.request_deadline = "-3";
  expect_error("return {}", &cli3, "option --request-deadline");
}

TEST(missing_app_dir) {
  struct config c;
  struct config_cli cli = {0};
  char err[512];
  ASSERT_INT_EQ(config_load(&c, "/nonexistent/app", &cli, err, sizeof err), LH_EINVAL);
  ASSERT(strstr(err, "expected an existing directory"));
  config_free(&c);
}

TEST(redis_and_store_keys) {
  struct config c;
  char err[512];
  app("return { redis = { main = 'redis://:pw@127.0.0.1:7000/2', sock = 'unix:///tmp/r.sock' },"
      " shared = { store = 'main', timeout = 0.25, queues = { jobs = 5 } } }");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  ASSERT_INT_EQ(c.nredis, 2);
  ASSERT_STR_EQ(c.store, "main");
  ASSERT(c.store_timeout == 0.25);
  /* store_prefix defaults to the app directory's base name */
  ASSERT_STR_EQ(c.store_prefix, strrchr(dir, '/') + 1);
  config_free(&c);
  app("return { store_prefix = 'myapp' }");
  ASSERT_INT_EQ(load(&c, NULL, err), 0);
  ASSERT_STR_EQ(c.store_prefix, "myapp");
  ASSERT(c.store == NULL);
  ASSERT(c.store_timeout == CONFIG_DEFAULT_STORE_TIMEOUT);
  config_free(&c);
  expect_error("return { redis = { main = 'rediss://h' } }", NULL, "app.lua key 'redis.main'");
  expect_error("return { redis = { main = 'redis://h:99999' } }", NULL, "redis.main");
  expect_error("return { redis = { main = 42 } }", NULL, "app.lua key 'redis.main': expected a URL");
  expect_error("return { redis = 'redis://h' }", NULL, "app.lua key 'redis'");
  expect_error("return { shared = { store = 'nope' } }", NULL, "app.lua key 'shared.store'");
  expect_error("return { redis = { a = 'redis://h' }, shared = { store = 'b' } }", NULL,
               "got 'b'");
  expect_error("return { shared = { timeout = 0 } }", NULL, "app.lua key 'shared.timeout'");
  expect_error("return { shared = { other = 1 } }", NULL, "dicts, queues, store and timeout");
  expect_error("return { store_prefix = '' }", NULL, "app.lua key 'store_prefix'");
}

TEST_LIST(T(defaults), T(redis_and_store_keys), T(backend_deadline_default), T(values_and_routes),
          T(cli_overrides_app_lua), T(errors_name_key_and_expectation), T(cli_errors_name_option),
          T(hostile_app_lua_values_give_messages), T(route_patterns),
          T(route_patterns_agree_with_lua), T(route_scripts_that_shadow), T(route_methods),
          T(missing_app_dir));
