-- method and captures: "GET item 7 (1 capture)"
return function(req)
  local id = req.captures[1]
  return req.method .. " item " .. tostring(id) .. " (" .. #req.captures .. " capture"
      .. (#req.captures == 1 and "" or "s") .. ")"
end
