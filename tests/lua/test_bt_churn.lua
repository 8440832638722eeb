-- 10,000 background threads started and finished in churn (run under
-- LeakSanitizer in the ASan build): every outcome arrives, nothing leaks,
-- and active_count() is back to 0.
local lu = require "luaunit"
local bt = require "background_thread"

function testChurn()
  local inflight, sum, started = {}, 0, 0
  for i = 1, 10000 do
    inflight[#inflight + 1] = bt.start_new_background_thread(function(x) return { x, tostring(x) } end, { i })
    started = started + 1
    if #inflight >= 8 then
      local ok, v = bt.join(table.remove(inflight, 1), 30)
      lu.assertTrue(ok)
      sum = sum + v[1]
    end
  end
  for _, id in ipairs(inflight) do
    local ok, v = bt.join(id, 30)
    lu.assertTrue(ok)
    sum = sum + v[1]
  end
  lu.assertEquals(started, 10000)
  lu.assertEquals(sum, 10000 * 10001 // 2)
  lu.assertEquals(bt.active_count(), 0)
end
