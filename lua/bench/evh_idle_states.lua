-- lua_idle_states for evh-lua (bench/lua_bench.cc; luv_idle_states.lua is its peer): `n` states,
-- each started and then waiting on its main port — an idle isolate, with no thread and no CPU.
-- Reports the RSS growth over the phase (every state started and idle) and its wall and CPU time.
-- Output as evh_timer_batch.lua.
local n = tonumber(arg[1])

local function rss()
  local f = io.open("/proc/self/statm")
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

local code = [[
  local ready = ...
  evh.receive(function() end)  -- keeps this state alive, idle
  ready:send(true)
]]
local states = {}
for i = 1, n do states[i] = false end
collectgarbage("collect")
local now = evh.now
local started = 0
local rss0, cpu0, t0
local ready
ready = evh.port(function()
  started = started + 1
  if started < n then return end
  local t, cpu = now(), os.clock() - cpu0
  io.write(table.concat({
    "bytes " .. rss() - rss0,
    "cpu_ms " .. cpu * 1000,
    "wall_ms " .. (t - t0) / 1e6,
  }, "\n"), "\n")
  io.flush()
  os.exit(0)  -- kills and closes every state
end)
rss0, cpu0, t0 = rss(), os.clock(), now()
for i = 1, n do states[i] = evh.spawn(code, ready) end
