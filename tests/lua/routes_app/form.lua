-- req.form as sorted "k=v" lines, then the number of files
return function(req)
  local keys = {}
  for k in pairs(req.form) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. req.form[k] end
  out[#out + 1] = "files=" .. #req.files
  return table.concat(out, "\n")
end
