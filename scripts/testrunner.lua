-- The glue of `luahost test`: runs one luaunit test file inside a fresh
-- host state and returns its exit status (0 when every test passed).
-- Called by host/app.c with the file's path.
local path = ...
local lu = require "luaunit"

local chunk, err = loadfile(path)
if not chunk then
  io.stderr:write(path, ": ", tostring(err), "\n")
  return 1
end
arg = { [0] = path }

local function trace(e)
  if type(e) == "table" and e.luahost_exit ~= nil then return e end
  return debug.traceback(tostring(e), 2)
end

-- The file defines Test* tables and functions as globals, or runs luaunit
-- itself with os.exit(lu.LuaUnit.run()); os.exit is caught here.
local ok, e = xpcall(chunk, trace)
if not ok then
  if type(e) == "table" and e.luahost_exit ~= nil then return e.luahost_exit end
  io.stderr:write(path, ": ", e, "\n")
  return 1
end

local ok2, res = xpcall(function() return lu.LuaUnit.run("-o", "text") end, trace)
if not ok2 then
  if type(res) == "table" and res.luahost_exit ~= nil then return res.luahost_exit end
  io.stderr:write(path, ": ", res, "\n")
  return 1
end
return res == 0 and 0 or 1
