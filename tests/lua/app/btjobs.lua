-- a module whose functions are background thread targets ("btjobs:add")
local M = {}
function M.add(a, b) return a + b end
function M.fail() error("module target failed") end
return M
