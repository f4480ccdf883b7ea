-- Ping-pong between two states: each request carries a number and the port to answer on; the
-- other state answers with the number plus one. Every answer must arrive, in order.
local testlib = require "testlib"
local watchdog = testlib.watchdog("pingpong")
local N = 2000

local pong = evh.spawn([[
  evh.receive(function(msg)
    if msg.stop then
      evh.self():close()  -- nothing left: this state exits
      return
    end
    assert(msg.reply:send(msg.n + 1))
  end)
]])

local answers, expected = 0, 1
local replies
replies = evh.port(function(n)
  assert(math.type(n) == "integer" and n == expected, "answer " .. tostring(n) .. " out of order")
  answers = answers + 1
  if answers == N then
    replies:close()
    pong:send{stop = true}
    return
  end
  expected = n + 1
  assert(pong:send{n = n, reply = replies})
end)

evh.on_exit(pong, function(reason)
  assert(reason == "normal", reason)
  assert(answers == N, answers)
  -- Its port is gone with it.
  assert(pong:send(1) == false)
  watchdog.done()
end)

assert(pong:send{n = 0, reply = replies})
