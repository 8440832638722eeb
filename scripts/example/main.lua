-- GET / : a greeting that shows the runtime API.
local runtime = require "runtime"

local hits = 0   -- lives as long as this worker's state

return function(req)
  hits = hits + 1
  runtime.log("info", "hello from %s (hit %d on this worker)", req.path, hits)
  local name = req.args.name or "world"
  return 200, { ["content-type"] = "text/plain; charset=utf-8" },
    string.format("hello, %s\nrole: %s\ninstance: %s\nrequest: %s\nlua heap: %d bytes\n",
      name, runtime.role(), runtime.instance_id(), runtime.request_id(),
      runtime.memory_usage().lua)
end
