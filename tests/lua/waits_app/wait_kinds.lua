-- One wait of each kind, the same code in every context.
local runtime = require "runtime"
local shared = require "shared"
local bt = require "background_thread"

local M = {}

-- Sleeps; with linger, stays busy that many seconds after (so a join ended
-- by shutdown does not see it end first).
function M.sleeper(secs, linger)
  runtime.sleep(secs)
  local t = runtime.monotonic() + (linger or 0)
  while runtime.monotonic() < t do end
end

-- Returns what the wait returned.  A join waits for a thread that sleeps
-- `sleeper` seconds (default: a little past the join's timeout, at most 3 s,
-- so a test run does not wait long for it at its end), then lingers.
-- ready(), if given, runs just before the wait itself (after a join's
-- thread has started): a test may signal then that the wait is in place.
function M.run(kind, secs, sleeper, linger, ready)
  ready = ready or function() end
  if kind ~= "join" then ready() end
  if kind == "sleep" then
    return runtime.sleep(secs)
  elseif kind == "pop" then
    return shared.queue("empty"):pop(secs)
  elseif kind == "push" then
    local q = shared.queue("full")
    if q:len() == 0 then q:push("filler") end
    return q:push("more", secs)
  elseif kind == "join" then
    local id = bt.start_new_background_thread("wait_kinds:sleeper",
                                              { sleeper or math.min(secs * 2 + 1, 3), linger })
    ready()
    return bt.join(id, secs)
  end
  error("unknown wait kind " .. tostring(kind))
end

-- The calling OS thread's voluntary context switches so far (a wait that
-- polls wakes up every few milliseconds; one that blocks does not).
function M.switches()
  local f = assert(io.open("/proc/thread-self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("voluntary_ctxt_switches:%s*(%d+)"))
end

return M
