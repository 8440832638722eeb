return function(req)
  return 200, "user " .. req.path:match("(%d+)$")
end
