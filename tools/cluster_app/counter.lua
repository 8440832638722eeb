-- POST /counter: one more (the new value); GET /counter: the value.
local shared = require "shared"
return function(req)
  local d = shared.dict("counters")
  local v, err
  if req.method == "POST" then v, err = d:incr("hits", 1, 0) else v, err = d:get("hits") end
  if err then return 503, { ["content-type"] = "text/plain" }, err .. "\n" end
  return 200, { ["content-type"] = "text/plain" }, tostring(v or 0) .. "\n"
end
