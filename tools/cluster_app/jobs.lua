-- GET /jobs: how many jobs the backend's thread finished, and their sum.
local shared = require "shared"
return function(req)
  local d = shared.dict("jobs")
  local done, err = d:get("done")
  if err then return 503, { ["content-type"] = "text/plain" }, err .. "\n" end
  return 200, { ["content-type"] = "text/plain" },
    ("%d %d\n"):format(done or 0, d:get("sum") or 0)
end
