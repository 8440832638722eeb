-- GET /_ah/start (sent by the host to a backend before it takes traffic):
-- start the long-lived worker thread, as App Engine apps do.
local bt = require "background_thread"
local runtime = require "runtime"

return function(req)
  local id = bt.start_new_background_thread("worker:run", { "jobs" })
  require("shared").dict("stats"):set("worker_id", id)
  runtime.set_shutdown_hook("worker:on_shutdown")
  return "worker thread " .. id .. " started\n"
end
