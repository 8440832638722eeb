-- The glue of `luahost test`: runs one luaunit test file inside a fresh
-- host state and returns its exit status (0 when every test passed) and
-- the number of tests that ran (skipped ones not counted), which host/app.c
-- sums over the files: a run in which no test ran is a failure.
-- Called by host/app.c with the file's path, then luaunit's own options
-- from `luahost test --filter/--exclude/-v` ("-p", PAT, "-x", PAT, "-v").
local path = ...
local lu_args = table.pack(select(2, ...))
-- `arg` is set before luaunit loads (it reads the command line from it
-- then), so a file that calls lu.LuaUnit.run() itself gets the options too.
arg = { [0] = path, table.unpack(lu_args, 1, lu_args.n) }
local lu = require "luaunit"

-- Every luaunit run the file makes (ours below, or its own
-- os.exit(lu.LuaUnit.run())) ends its suite here: count what it ran.
local ran, own_suites, own_failed = 0, 0, 0
local end_suite = lu.LuaUnit.endSuite
lu.LuaUnit.endSuite = function(self, ...)
  ran = ran + self.result.runCount
  local r = table.pack(end_suite(self, ...))   -- it sets notSuccessCount
  own_suites = own_suites + 1
  own_failed = own_failed + (self.result.notSuccessCount or 0)
  return table.unpack(r, 1, r.n)
end

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
-- itself with os.exit(lu.LuaUnit.run()) (os.exit is caught here) or with
-- a bare lu.LuaUnit.run().
local ok, e = xpcall(chunk, trace)
if not ok then
  if type(e) == "table" and e.luahost_exit ~= nil then return e.luahost_exit, ran end
  io.stderr:write(path, ": ", e, "\n")
  return 1, ran
end
-- a file that ran luaunit itself without os.exit (lu.LuaUnit.run() at its
-- end) is not run a second time
if own_suites > 0 then return own_failed == 0 and 0 or 1, ran end

local ok2, res = xpcall(function() return lu.LuaUnit.run("-o", "text", table.unpack(lu_args, 1, lu_args.n)) end, trace)
if not ok2 then
  if type(res) == "table" and res.luahost_exit ~= nil then return res.luahost_exit, ran end
  io.stderr:write(path, ": ", res, "\n")
  return 1, ran
end
return res == 0 and 0 or 1, ran
