-- /wait?kind=sleep|pop|push|join&secs=S[&nested=1]: one wait of that kind,
-- in the request's coroutine (it yields) or, with nested=1, in a coroutine
-- the handler made (it waits in place).  Answers what the wait returned.
local waits = require "wait_kinds"

return function(req)
  local kind, secs = req.args.kind, tonumber(req.args.secs)
  local f = function() return waits.run(kind, secs) end
  local r
  if req.args.nested then
    local co = coroutine.create(f)
    r = table.pack(coroutine.resume(co))
    if not r[1] then error(r[2], 0) end
    r = table.pack(table.unpack(r, 2, r.n))
  else
    r = table.pack(f())
  end
  local out = {}
  for i = 1, r.n do out[i] = tostring(r[i]) end
  return table.concat(out, ",")
end
