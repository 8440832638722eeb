-- The Lua part of the background_thread module: join by ID and the
-- threading.Thread-like BackgroundThread class.  Run once when the module
-- loads, with the module table M (host/threads does the work).
local M = ...
local join_raw, forget, error_from, Error = M._join_raw, M._forget, M._error_from, M.Error
local pack, unpack = table.pack, table.unpack

-- bt.join(id, timeout) -> true, results... | false, err | nil, "timeout" |
-- nil, "unknown thread".  err is what the target raised, copied: an error
-- object of a host class is rebuilt as an instance of its class (traceback
-- in its message), a string gets the traceback, a table, number or boolean
-- crosses as itself.
-- Joining takes the outcome: a second join of the
-- same ID answers "unknown thread", also one that was waiting beside the
-- first (the record's outcome queue is closed when it is dropped).
function M.join(id, timeout)
  local outcome, reason = join_raw(id, timeout)
  if outcome == nil then return nil, reason == "closed" and "unknown thread" or reason end
  forget(id)
  if outcome.ok then return true, unpack(outcome, 1, outcome.n) end
  if outcome.class then return false, error_from(outcome.class, outcome.err) end
  if outcome.value ~= nil then return false, outcome.value end
  return false, outcome.err
end

local BackgroundThread = {}
BackgroundThread.__index = BackgroundThread
BackgroundThread.__name = "background_thread.BackgroundThread"

-- BackgroundThread{target = f, args = {...}, kwargs = {...}, name = "..."}
local function new(_, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error(Error("BackgroundThread expects a table of options"), 2)
  end
  return setmetatable({
    target = opts.target,
    args = opts.args,
    kwargs = opts.kwargs,
    name = opts.name or M._next_name(),
  }, BackgroundThread)
end
setmetatable(BackgroundThread, { __call = new })

function BackgroundThread:start()
  if self.ident ~= nil then
    error(Error("thread " .. self.name .. " was already started"), 2)
  end
  self.ident = M.start_new_background_thread(self.target, self.args, self.kwargs)
  return self.ident
end

function BackgroundThread:is_alive()
  return self.ident ~= nil and M.is_alive(self.ident)
end

-- t:join(timeout): as bt.join, and the outcome is kept on the object so
-- that joining again gives it again.
function BackgroundThread:join(timeout)
  if self.ident == nil then
    error(Error("cannot join thread " .. self.name .. " before it is started"), 2)
  end
  if self._outcome then return unpack(self._outcome, 1, self._outcome.n) end
  local r = pack(M.join(self.ident, timeout))
  if r[1] ~= nil then self._outcome = r end
  if r[1] == nil and self._outcome then r = self._outcome end   -- joined beside us
  return unpack(r, 1, r.n)
end

function BackgroundThread:__tostring()
  return string.format("<BackgroundThread %s %s>", self.name,
    self.ident == nil and "initial" or (M.is_alive(self.ident) and "started" or "stopped"))
end

M.BackgroundThread = BackgroundThread
