-- GET /notes : every note, one per line ("7: text").
-- POST /notes : a new note from the form field `text` (urlencoded or
-- multipart, as an HTML form sends it): 201 with its Location.
local notes = require("shared").dict("notes")

local function list()
  local ids = {}
  for _, k in ipairs(notes:keys(0)) do
    local id = tonumber(k:match("^note:(%d+)$"))
    if id then ids[#ids + 1] = id end
  end
  table.sort(ids)
  local lines = {}
  for _, id in ipairs(ids) do
    local text = notes:get("note:" .. id)
    if text then lines[#lines + 1] = id .. ": " .. text end
  end
  return 200, { ["content-type"] = "text/plain; charset=utf-8" },
    #lines > 0 and table.concat(lines, "\n") .. "\n" or ""
end

local function create(req)
  local text = req.form.text   -- a malformed body raises here: the client gets 400
  if not text or text == "" then return 400, "the form field 'text' is missing\n" end
  local id = notes:incr("next_id", 1, 0)
  local ok, err = notes:set("note:" .. id, text)
  if not ok then return 507, "cannot keep the note: " .. err .. "\n" end
  return 201, { location = "/notes/" .. id }, "created note " .. id .. "\n"
end

return function(req)
  if req.method == "POST" then return create(req) end
  return list()
end
