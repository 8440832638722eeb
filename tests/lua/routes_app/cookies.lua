-- req.cookies as sorted "k=v;" and a Set-Cookie per name given in ?set=
return function(req)
  local keys = {}
  for k in pairs(req.cookies) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. req.cookies[k] .. ";" end
  local set = {}
  for name in (req.args.set or ""):gmatch("[^,]+") do set[#set + 1] = name .. "=1; Path=/" end
  return 200, { ["set-cookie"] = set }, table.concat(out)
end
