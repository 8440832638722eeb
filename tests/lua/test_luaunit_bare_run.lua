-- A file that ends with a bare lu.LuaUnit.run() (no os.exit): luahost
-- test runs its tests once, not again after the file returns.
local lu = require "luaunit"

RUNS = (RUNS or 0)

function testRunsOnce()
  RUNS = RUNS + 1
  lu.assertEquals(RUNS, 1)
end

lu.LuaUnit.run()
