-- POST /enqueue?n=N (frontends): queue a job for the backend's worker thread.
local shared = require "shared"
return function(req)
  local n = tonumber(req.args and req.args.n) or 1
  local ok, err = shared.queue("jobs"):push({ n = n, from = os.getenv("LUAHOST_INSTANCE") }, 1)
  if not ok then return 503, { ["content-type"] = "text/plain" }, err .. "\n" end
  return 200, { ["content-type"] = "text/plain" }, "queued\n"
end
