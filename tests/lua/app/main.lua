local runtime = require "runtime"
return function(req)
  if req.path == "/sleep" then
    local ok = runtime.sleep(0.01)
    return "slept " .. tostring(ok)
  elseif req.path == "/spin" then
    while true do pcall(function() while true do end end) end
  elseif req.path == "/catch-deadline" then   -- catches the deadline's error, returns
    local ok, err = pcall(runtime.sleep, 30)
    local co = coroutine.wrap(function() while true do end end)
    local ok2 = pcall(co)
    return "caught " .. tostring(ok) .. " " .. tostring(ok2) .. " " .. tostring(err)
  elseif req.path == "/hog" then
    local t = {}
    for i = 1, 1e8 do t[i] = ("x"):rep(65536) .. i end   -- the limit in milliseconds
  elseif req.path == "/exit" then
    os.exit(3)
  elseif req.path == "/headers" then
    return 201, { ["x-custom"] = "yes", ["content-type"] = "application/json" }, "{}"
  elseif req.path == "/16headers" then   -- fills the host's inline header array
    local h = {}
    for i = 1, 16 do h["x-h" .. i] = tostring(i) end
    return 200, h, "many"
  elseif req.path == "/bad-status" then
    return "abc", "body"
  end
  return string.format("%s %s q=%s a=%s h=%s body=%s rid=%s", req.method, req.path, req.query,
    tostring(req.args.a), tostring(req.headers["x-test"]), req.body,
    tostring(req.request_id == runtime.request_id()))
end
