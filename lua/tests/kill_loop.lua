-- A kill stops a state in the middle of a long loop, at its next hook: also a loop that catches
-- errors with pcall, and one inside a coroutine. "next" lets the current callback finish and
-- drops what was queued behind it. A killed state's Lua state is closed.
local testlib = require "testlib"
local watchdog = testlib.watchdog("kill_loop")

local loops = {
  plain = "while true do x = (x or 0) + 1 end",
  pcall = "while true do pcall(function() while true do end end) end",
  coroutine = "coroutine.wrap(function() while true do end end)()",
  string_work = "while true do local s = string.rep('x', 100) .. tostring(x) end",
}

local pending = 0
local function finish()
  pending = pending - 1
  if pending == 0 then watchdog.done() end
end

for name, loop in pairs(loops) do
  pending = pending + 1
  local closed, exit_reason = false, nil
  local inbox
  local function check()
    if closed and exit_reason then
      assert(exit_reason == "killed", name .. ": " .. exit_reason)
      inbox:close()
      finish()
    end
  end
  inbox = evh.port(function(msg)
    if msg == "closed" then
      closed = true
      check()
    end
  end)
  local child
  local started = evh.port(function(msg, port)
    assert(msg == "looping")
    port:close()
    evh.kill(child, "immediate")
  end)
  child = evh.spawn([[
    local started, inbox = ...
    probe = setmetatable({}, {__gc = function() inbox:send("closed") end})
    started:send("looping")
  ]] .. loop, started, inbox)
  evh.on_exit(child, function(reason)
    exit_reason = reason
    check()
  end)
end

-- "next": the callback that asked for it runs to its end; messages queued behind it are dropped.
pending = pending + 1
local handled = {}
local reports
reports = evh.port(function(msg)
  handled[#handled + 1] = msg
end)
local child = evh.spawn([[
  local reports = ...
  evh.receive(function(n)
    reports:send(n)
    if n == 1 then
      evh.kill(evh.self(), "next")
      reports:send("after kill")
    end
  end)
]], reports)
for n = 1, 3 do child:send(n) end
evh.on_exit(child, function(reason)
  assert(reason == "killed", reason)
  -- Messages from one sender arrive in order: the reports are all here once the exit is.
  evh.defer(function()
    reports:close()
    assert(#handled == 2 and handled[1] == 1 and handled[2] == "after kill",
           table.concat(handled, ","))
    finish()
  end)
end)
