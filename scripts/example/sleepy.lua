-- GET /sleep?s=0.5 : waits without blocking the worker (the request's
-- coroutine yields; other requests go on meanwhile).
local runtime = require "runtime"

return function(req)
  local s = tonumber(req.args.s) or 1
  local t0 = runtime.monotonic()
  local full = runtime.sleep(s)
  return string.format("slept %.3f s (%s)\n", runtime.monotonic() - t0,
    full and "whole time" or "woken early by shutdown")
end
