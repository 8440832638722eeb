-- POST /upload (multipart/form-data) : what arrived: one line per file
-- ("files: notes.txt, text/plain, 12 bytes") and the plain fields.
return function(req)
  local lines = {}
  for _, f in ipairs(req.files) do
    lines[#lines + 1] = string.format("%s: %s, %s, %d bytes", f.field, f.filename,
                                      f.content_type, #f.body)
  end
  if #lines == 0 then return 400, "no file in the upload\n" end
  for k, v in pairs(req.form) do lines[#lines + 1] = k .. " = " .. v end
  return table.concat(lines, "\n") .. "\n"
end
