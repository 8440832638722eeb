-- every file: field|filename|content_type|size|body; then the fields
return function(req)
  local out = {}
  for _, f in ipairs(req.files) do
    out[#out + 1] = table.concat({ f.field, f.filename, f.content_type, #f.body, f.body }, "|")
  end
  local keys = {}
  for k in pairs(req.form) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = "field " .. k .. "=" .. req.form[k] end
  return 201, { ["content-type"] = "text/plain" }, table.concat(out, "\n")
end
