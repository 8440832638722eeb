-- /proxy?url=U[&deadline=S][&n=N]: fetches U (N of them in parallel) and
-- answers the first one's status and body, or 502 with the error.
local urlfetch = require "urlfetch"
return function(req)
  local n = tonumber(req.args.n or "1")
  local opts = { deadline = tonumber(req.args.deadline) }
  local rpcs = {}
  for i = 1, n do rpcs[i] = urlfetch.start(req.args.url, opts) end
  local first, ferr
  for i = n, 1, -1 do first, ferr = rpcs[i]:wait() end
  if not first then return 502, tostring(ferr) end
  return first.status, first.body
end
