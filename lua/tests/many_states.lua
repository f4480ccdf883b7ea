-- 10,000 states spawned, each answering once and exiting. Every one must answer, exit normally,
-- and have its Lua state closed exactly once (a __gc probe in each state reports its closing).
local testlib = require "testlib"
local watchdog = testlib.watchdog("many_states")
local N = 10000

local answered, closed, exited = 0, 0, 0
local seen = {}
local inbox
local function check_done()
  if answered == N and closed == N and exited == N then
    inbox:close()
    watchdog.done()
  end
end

inbox = evh.port(function(msg)
  if msg.closed then
    closed = closed + 1
    assert(closed <= N, "a state was closed twice")
  else
    assert(not seen[msg.i], "state " .. tostring(msg.i) .. " answered twice")
    seen[msg.i] = true
    answered = answered + 1
  end
  check_done()
end)

local code = [[
  local i, inbox = ...
  -- Runs when this state's lua_State is closed (after its isolate exited).
  probe = setmetatable({}, {__gc = function() inbox:send{closed = true} end})
  inbox:send{i = i}
]]

for i = 1, N do
  local child = evh.spawn(code, i, inbox)
  evh.on_exit(child, function(reason)
    assert(reason == "normal", reason)
    exited = exited + 1
    check_done()
  end)
end
