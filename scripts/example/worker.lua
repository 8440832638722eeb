-- The background worker of the example app.  Runs in its own fresh Lua
-- state on its own OS thread: it shares nothing with request handlers but
-- the `shared` dicts and queues.
local shared = require "shared"
local runtime = require "runtime"

local M = {}

-- Consumes jobs until shutdown: pop returns nil, "shutting down" then.
function M.run(queue_name)
  local jobs, stats = shared.queue(queue_name), shared.dict("stats")
  runtime.log("info", "worker consuming queue %s", queue_name)
  while true do
    local job, err = jobs:pop()
    if not job then
      runtime.log("info", "worker stops: %s", err)
      return stats:get("done") or 0
    end
    stats:incr("done", 1, 0)
    stats:set("last", string.upper(job.text))
  end
end

-- Runs once, in a fresh state, when the instance shuts down.
function M.on_shutdown()
  runtime.log("info", "shutdown hook: %d jobs were processed",
    shared.dict("stats"):get("done") or 0)
end

return M
