-- spawn_bench.lua — the luahost half of bench/spawn, run as
--   luahost run spawn_bench.lua LAT_N WARMUP JOBS IDLE INFLIGHT
-- (INFLIGHT: comma-separated, e.g. "2,64") from a directory whose app.lua
-- sets max_background_threads high enough for IDLE parked threads.
-- Prints `key value` lines on stdout (all keys start with lh_).
--
-- 1. Latency, one at a time: t0 = runtime.monotonic() just before
--    bt.start_new_background_thread(target, {t0}); the target's first line
--    reads runtime.monotonic() and returns t1 - t0; the creator joins it
--    before the next start. WARMUP starts first, not counted. Also the time
--    start_new_background_thread took to return (lh_ret_*).
-- 2. Throughput with K in flight: trivial targets (function() return 1 end);
--    when K are in flight the creator joins the oldest; JOBS jobs timed from
--    the first start to the last join.
-- 3. RSS per idle thread: IDLE threads each push to queue "ready" and then
--    block in shared.queue("park"):pop(); once all are parked (IDLE values
--    on "ready" and bt.active_count() up by IDLE) the process RSS
--    (runtime.memory_usage().process) is compared with the RSS before.
local bt = require "background_thread"
local runtime = require "runtime"
local shared = require "shared"

local function posint(i, name)
  local v = tonumber(arg[i])
  if not v or v < 1 or v ~= math.floor(v) then
    error(string.format("spawn_bench.lua: argument %d (%s) must be a positive integer, got %s",
                        i, name, tostring(arg[i])), 0)
  end
  return math.tointeger(v)
end

local LAT_N = posint(1, "LAT_N")
local WARMUP = posint(2, "WARMUP")
local JOBS = posint(3, "JOBS")
local IDLE = posint(4, "IDLE")
local INFLIGHT = {}
for k in tostring(arg[5] or "2,64"):gmatch("[^,]+") do
  INFLIGHT[#INFLIGHT + 1] = math.tointeger(tonumber(k)) or error("bad INFLIGHT entry '" .. k .. "'", 0)
end

local now = runtime.monotonic
local JOIN_TIMEOUT = 30          -- seconds; a join that times out is an error

local function out(key, fmt, v)
  print(key .. " " .. string.format(fmt, v))
  io.stdout:flush()
end

local function join_ok(id, what)
  local ok, res = bt.join(id, JOIN_TIMEOUT)
  if ok ~= true then
    error(string.format("%s: bt.join(%d) gave %s, %s", what, id, tostring(ok), tostring(res)), 0)
  end
  return res
end

-- nearest rank, as spawn_raw.c: the smallest value with at least q of the
-- sample at or below it
local function pct(sorted, q)
  local k = math.ceil(q * #sorted - 1e-9)
  if k < 1 then k = 1 end
  if k > #sorted then k = #sorted end
  return sorted[k]
end

local function wait_until(pred, seconds, what)
  local deadline = now() + seconds
  while not pred() do
    if now() > deadline then error("timed out after " .. seconds .. " s waiting for " .. what(), 0) end
    runtime.sleep(0.01)
  end
end

out("lh_max_threads", "%d", bt.max_threads())
local need = math.max(IDLE, table.unpack(INFLIGHT))
if bt.max_threads() < need then
  error(string.format("max_background_threads is %d, the benchmark needs %d: did `luahost run` "
                      .. "read the app.lua next to this script?", bt.max_threads(), need), 0)
end
out("lh_active_at_start", "%d", bt.active_count())

-- ---------------------------------------------------------------- 1. latency
local function lat_target(t0)
  local t1 = require("runtime").monotonic()
  return t1 - t0
end

do
  local lat, ret = {}, {}
  for i = 1 - WARMUP, LAT_N do
    local t0 = now()
    local id = bt.start_new_background_thread(lat_target, {t0})
    local t2 = now()
    local d = join_ok(id, "latency")
    if type(d) ~= "number" then error("latency target returned " .. type(d), 0) end
    if i >= 1 then
      lat[i] = d * 1e6
      ret[i] = (t2 - t0) * 1e6
    end
  end
  table.sort(lat)
  table.sort(ret)
  out("lh_lat_n", "%d", LAT_N)
  out("lh_lat_p50_us", "%.2f", pct(lat, 0.50))
  out("lh_lat_p90_us", "%.2f", pct(lat, 0.90))
  out("lh_lat_p99_us", "%.2f", pct(lat, 0.99))
  out("lh_lat_max_us", "%.2f", lat[#lat])
  out("lh_ret_p50_us", "%.2f", pct(ret, 0.50))
  out("lh_ret_p99_us", "%.2f", pct(ret, 0.99))
end

-- ---------------------------------------------------------------- 2. throughput
local function trivial() return 1 end

local function run_jobs(n, k)
  local ring, head, tail = {}, 1, 0
  for _ = 1, n do
    if tail - head + 1 >= k then
      local r = join_ok(ring[head], "throughput")
      if r ~= 1 then error("trivial target returned " .. tostring(r), 0) end
      ring[head] = nil
      head = head + 1
    end
    tail = tail + 1
    ring[tail] = bt.start_new_background_thread(trivial)
  end
  while head <= tail do
    join_ok(ring[head], "throughput")
    ring[head] = nil
    head = head + 1
  end
end

for _, k in ipairs(INFLIGHT) do
  run_jobs(math.min(JOBS, math.max(WARMUP, 2 * k)), k)   -- warm-up
  collectgarbage()
  local t0 = now()
  run_jobs(JOBS, k)
  local s = now() - t0
  out("lh_tp" .. k .. "_jobs", "%d", JOBS)
  out("lh_tp" .. k .. "_s", "%.6f", s)
  out("lh_tp" .. k .. "_jobs_s", "%.1f", JOBS / s)
  out("lh_tp" .. k .. "_us_per_job", "%.2f", s * 1e6 / JOBS)
end

-- ---------------------------------------------------------------- 3. idle RSS
local function park_target()
  local sh = require("shared")
  sh.queue("ready"):push(true)
  return sh.queue("park"):pop()
end

do
  local ready, park = shared.queue("ready"), shared.queue("park")
  wait_until(function() return bt.active_count() == 0 end, 30,
             function() return "bt.active_count() == 0 (it is " .. bt.active_count() .. ")" end)
  collectgarbage()
  runtime.sleep(0.3)             -- let any spare-thread refill settle
  local before = runtime.memory_usage().process
  local ids = {}
  for i = 1, IDLE do
    ids[i] = bt.start_new_background_thread(park_target)
  end
  for i = 1, IDLE do
    local v, err = ready:pop(JOIN_TIMEOUT)
    if v == nil then error("idle: only " .. (i - 1) .. " of " .. IDLE .. " threads parked: " .. tostring(err), 0) end
  end
  wait_until(function() return bt.active_count() == IDLE end, 30,
             function() return "bt.active_count() == " .. IDLE .. " (it is " .. bt.active_count() .. ")" end)
  collectgarbage()
  runtime.sleep(0.3)
  local after = runtime.memory_usage().process
  out("lh_idle_n", "%d", IDLE)
  out("lh_idle_rss_before_kib", "%.0f", before / 1024)
  out("lh_idle_rss_after_kib", "%.0f", after / 1024)
  out("lh_idle_kib_per_thread", "%.2f", (after - before) / 1024 / IDLE)
  for i = 1, IDLE do
    local ok, err = park:push(i, 10)
    if not ok then error("idle: release push " .. i .. " failed: " .. tostring(err), 0) end
  end
  for i = 1, IDLE do
    local r = join_ok(ids[i], "idle")
    if math.type(r) ~= "integer" then error("idle thread returned " .. tostring(r), 0) end
  end
end
out("lh_active_at_end", "%d", bt.active_count())
