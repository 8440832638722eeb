-- background_thread on a frontend: refused with FrontendsNotSupported.
local lu = require "luaunit"
local bt = require "background_thread"

function testFrontendsNotSupported()
  local ok, err = pcall(bt.start_new_background_thread, function() end)
  lu.assertFalse(ok)
  lu.assertTrue(bt.FrontendsNotSupported:is_instance(err))
  lu.assertTrue(bt.Error:is_instance(err))
  lu.assertStrContains(tostring(err), "background_thread.FrontendsNotSupported: ")
  lu.assertStrContains(err.message, "frontend")
  local t = bt.BackgroundThread { target = function() end }
  ok, err = pcall(t.start, t)
  lu.assertTrue(bt.FrontendsNotSupported:is_instance(err))
  lu.assertNil(t.ident)
  lu.assertEquals(bt.active_count(), 0)
end
