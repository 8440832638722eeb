-- GET /notes/7 : one note.  DELETE /notes/7 : 204.
-- The id is the route's capture: req.captures[1] (a string).
local notes = require("shared").dict("notes")

return function(req)
  local key = "note:" .. req.captures[1]
  local text = notes:get(key)
  if not text then return 404, "no note " .. req.captures[1] .. "\n" end
  if req.method == "DELETE" then
    notes:delete(key)
    return 204, ""   -- no body, no Content-Type on the wire
  end
  return text .. "\n"
end
