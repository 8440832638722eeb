-- POST /echo : the request as JSON-ish text.
return function(req)
  local lines = { req.method .. " " .. req.path .. " HTTP/" .. req.http_version }
  local names = {}
  for k in pairs(req.headers) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do lines[#lines + 1] = k .. ": " .. req.headers[k] end
  lines[#lines + 1] = ""
  lines[#lines + 1] = req.body
  return 200, { ["content-type"] = "text/plain; charset=utf-8" }, table.concat(lines, "\n")
end
