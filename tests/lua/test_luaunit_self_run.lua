-- A file that runs luaunit itself, as SPEC §2 allows.
local lu = require "luaunit"

function testSelfRunWorks()
  lu.assertEquals(1 + 1, 2)
end

os.exit(lu.LuaUnit.run())
