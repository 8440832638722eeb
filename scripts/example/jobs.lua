-- GET /jobs : what the worker has done so far.
local stats = require("shared").dict("stats")

return function(req)
  return string.format("worker thread: %s\njobs done: %d\nlast: %s\nqueued now: %d\n",
    tostring(stats:get("worker_id")), stats:get("done") or 0, tostring(stats:get("last")),
    require("shared").queue("jobs"):len())
end
