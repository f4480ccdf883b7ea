-- [readme:ping]
-- ping.lua: two Lua states, each an evh isolate; values cross between them as copies.
local doubler = evh.spawn([[
  evh.receive(function(msg)          -- messages to this state's main port
    msg.reply:send(msg.n * 2)
    evh.self():close()               -- nothing left to do: this state exits
  end)
]])
local replies = evh.port(function(n, port) print("doubled:", n); port:close() end)
doubler:send{n = 21, reply = replies}
evh.after(10, function() print("and a timer, 10 ms later") end)
-- [readme-end]
