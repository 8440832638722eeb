-- req crosses a shared queue as a plain table of the fields it holds
-- (its metatable, which computes form/files/cookies, stays behind)
local q = require("shared").queue("reqs")
return function(req)
  local _ = req.cookies   -- computed: it crosses too
  assert(q:push(req, 0))
  local copy = q:pop(0)
  return table.concat({ tostring(getmetatable(copy)), copy.path, copy.captures[1],
                        tostring(copy.cookies.k), tostring(rawget(copy, "form")),
                        tostring(req.form.a) }, " ")
end
