-- a handler that catches a malformed form body itself
local runtime = require "runtime"
return function(req)
  local ok, err = pcall(function() return req.form end)
  if ok then return "no error" end
  return 422, "caught " .. tostring(runtime.FormError:is_instance(err)) .. " " .. err.status
      .. " " .. tostring(err)
end
