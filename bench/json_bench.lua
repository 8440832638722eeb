-- bench/json_bench.lua: luahost's json against Debian's lua-cjson, in one
-- process, on three generated documents (~1 KB API object, ~100 KB array
-- of records, ~1 MB numeric document).  Run by bench/json; prints one line
-- per document and operation:
--   <doc> <op> json <ops/s> cjson <ops/s> ratio <json/cjson>
-- Arguments: [seconds per measurement (default 0.5)] [rounds (default 3)].
-- Each figure is the best of the rounds (json and cjson alternate), timed
-- with os.clock (CPU time of this single-threaded run).
local json = require "json"
local ok, cjson = pcall(require, "cjson")
if not ok then
  local f = package.loadlib("/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so", "luaopen_cjson")
  assert(f, "lua-cjson not found: apt-get install lua-cjson")
  cjson = f()
end
local secs = tonumber(arg and arg[1]) or 0.5
local rounds = tonumber(arg and arg[2]) or 3

local seed = 12345
local function rnd(n)   -- deterministic: the same documents every run
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n
end
local words = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
               "hotel", "india", "juliet", "kilo", "lima", "mike", "november"}
local function word() return words[rnd(#words) + 1] end

local function api_object()
  return {
    id = 48213, login = "someone", name = "Some One", company = json.null,
    email = "someone@example.com", site_admin = false, score = 87.5,
    created_at = "2024-03-01T12:00:00Z", followers = 1234, following = 56,
    bio = "Writes \"JSON\" parsers\nfor fun/profit \u{e9}\u{4e16}",
    tags = {"lua", "c", "json", "http"},
    plan = {name = "pro", space = 976562499, collaborators = 0, private_repos = 9999},
    repos = {
      {id = 1, name = "luahost", stars = 512, fork = false, size = 1048.25},
      {id = 2, name = "dtoa", stars = 17, fork = true, size = 12.5},
      {id = 3, name = "notes", stars = 0, fork = false, size = 0.75},
    },
    urls = {html = "https://example.com/someone", api = "https://api.example.com/users/someone",
            avatar = "https://avatars.example.com/u/48213?v=4", events = "https://api.example.com/users/someone/events{/privacy}"},
    limits = {core = {limit = 5000, remaining = 4999, reset = 1700000000, used = 1},
              search = {limit = 30, remaining = 18, reset = 1700000060, used = 12}},
    verified = true, two_factor = true, ratio = 0.3333333333333333, hireable = json.null,
  }
end

local function records(n)
  local t = {}
  for i = 1, n do
    t[i] = {id = i, name = word() .. " " .. word(), active = rnd(2) == 1,
            balance = rnd(1000000) / 100, age = 18 + rnd(60),
            email = word() .. i .. "@example.org", tags = {word(), word()},
            address = {city = word(), zip = tostring(10000 + rnd(89999))}}
  end
  return t
end

local function numeric(n)
  local pts = {}
  for i = 1, n do
    pts[i] = {i, rnd(1000000) / 1000, (rnd(2000000) - 1000000) / 7, rnd(100000) * 1e-5,
              rnd(2147483647) * 2147483647}
  end
  return {series = pts, scale = 0.001, count = n}
end

local docs = {
  {"api_1KB", api_object()},
  {"records_100KB", records(580)},
  {"numeric_1MB", numeric(15000)},
}

-- the best ops/s of f over the rounds
local function rate(f, arg1)
  local n, t0 = 0, os.clock()
  local el
  repeat
    for _ = 1, 8 do f(arg1) end
    n = n + 8
    el = os.clock() - t0
  until el >= secs
  return n / el
end

for _, d in ipairs(docs) do
  local name, value = d[1], d[2]
  local text = json.encode(value)
  local ctext = cjson.encode(value)
  local sorted = {sort_keys = true}
  assert(json.encode(json.decode(text), sorted) == json.encode(value, sorted), name .. ": round trip")
  local best = {je = 0, ce = 0, jd = 0, cd = 0}
  for _ = 1, rounds do
    best.je = math.max(best.je, rate(json.encode, value))
    best.ce = math.max(best.ce, rate(cjson.encode, value))
    best.jd = math.max(best.jd, rate(json.decode, text))
    best.cd = math.max(best.cd, rate(cjson.decode, text))
  end
  print(string.format("%-14s %-6s json %10.1f cjson %10.1f ratio %.2f  (%d bytes)",
                      name, "encode", best.je, best.ce, best.je / best.ce, #text))
  print(string.format("%-14s %-6s json %10.1f cjson %10.1f ratio %.2f  (%d bytes)",
                      name, "decode", best.jd, best.cd, best.jd / best.cd, #ctext))
end
