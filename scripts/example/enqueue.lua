-- POST or GET /enqueue?text=hello : hand work to the background worker.
local jobs = require("shared").queue("jobs")

return function(req)
  local text = req.args.text or req.body
  local ok, err = jobs:push({ text = text, request_id = req.request_id }, 1)
  if not ok then return 503, "queue " .. err .. "\n" end
  return 202, "queued\n"
end
