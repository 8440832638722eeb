-- each capture as type:value, joined with ","
return function(req)
  local out = {}
  for i, v in ipairs(req.captures) do out[i] = (math.type(v) and "integer" or type(v)) .. ":" .. v end
  return req.method .. " [" .. table.concat(out, ",") .. "]"
end
