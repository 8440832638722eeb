-- The glue of `luahost test`: runs one luaunit test file inside a fresh
-- host state and returns its exit status (0 when every test passed).
-- Called by host/app.c with the file's path, then luaunit's own options
-- from `luahost test --filter/--exclude/-v` ("-p", PAT, "-x", PAT, "-v").
local path = ...
local lu_args = table.pack(select(2, ...))
-- `arg` is set before luaunit loads (it reads the command line from it
-- then), so a file that calls lu.LuaUnit.run() itself gets the options too.
arg = { [0] = path, table.unpack(lu_args, 1, lu_args.n) }
local lu = require "luaunit"

local chunk, err = loadfile(path)
if not chunk then
  io.stderr:write(path, ": ", tostring(err), "\n")
  return 1
end

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

local ok2, res = xpcall(function() return lu.LuaUnit.run("-o", "text", table.unpack(lu_args, 1, lu_args.n)) end, trace)
if not ok2 then
  if type(res) == "table" and res.luahost_exit ~= nil then return res.luahost_exit end
  io.stderr:write(path, ": ", res, "\n")
  return 1
end
return res == 0 and 0 or 1
