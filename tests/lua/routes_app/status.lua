-- any status with a body and, when ?type=1, an explicit Content-Type
return function(req)
  local headers = { ["x-status"] = req.captures[1] }
  if req.args.type then headers["content-type"] = "application/json" end
  return tonumber(req.captures[1]), headers, "a body that must not be sent"
end
