-- lua_pingpong for evh-lua (bench/lua_bench.cc; luv_pingpong.lua is its peer): two states
-- exchange a number, `warmup` round trips and then `n` measured ones; the RTT is taken by the
-- main state around each round trip. Output as evh_timer_batch.lua.
local n, warmup = tonumber(arg[1]), tonumber(arg[2])
local rtt = {}
for i = 1, n do rtt[i] = 0 end
collectgarbage("collect")

local pong = evh.spawn([[
  local reply = ...
  evh.receive(function(v)
    if v == "stop" then evh.self():close() return end
    reply:send(v)
  end)
]], evh.self())

local now = evh.now
local i, t0, cpu0, wall0 = 0, 0, 0, 0
evh.receive(function(v)
  local t = now()
  i = i + 1
  if i > warmup then rtt[i - warmup] = t - t0 end
  if i == warmup then
    cpu0, wall0 = os.clock(), now()
  elseif i == warmup + n then
    local cpu = os.clock() - cpu0
    pong:send("stop")
    evh.self():close()
    io.write(table.concat({
      "cpu_ms " .. cpu * 1000,
      "wall_ms " .. (t - wall0) / 1e6,
      "samples rtt_ns",
      table.concat(rtt, "\n"),
      "end",
    }, "\n"), "\n")
    return
  end
  t0 = now()
  pong:send(v + 1)
end)
t0 = now()
pong:send(0)
