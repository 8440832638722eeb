-- /_ah/start (the backend instance): a background thread drains "jobs".
local bt = require "background_thread"
return function(req)
  bt.start_new_background_thread(function()
    local shared = require "shared"
    local runtime = require "runtime"
    local q, d = shared.queue("jobs"), shared.dict("jobs")
    while not runtime.is_shutting_down() do
      local job, err = q:pop(1)
      if job then
        d:incr("sum", job.n, 0)
        d:incr("done", 1, 0)
      elseif err ~= "timeout" then
        runtime.sleep(0.2)   -- store unavailable or shutting down
      end
    end
  end)
  return 200, {}, "started\n"
end
