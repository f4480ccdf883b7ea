-- lua_idle_states for luv (lua5.4 + luv), the peer of evh_idle_states.lua: `n` Lua states, each
-- on a thread of its own (uv.new_thread: luv's way to run states side by side) with its own loop,
-- started and then waiting in it. Each says it is ready with one byte on a pipe the main loop
-- reads (a uv.new_async coalesces sends, so it cannot count them). Output as evh_idle_states.lua.
local uv = require "luv"
local n = tonumber(arg[1])

local function rss()
  local f = io.open("/proc/self/statm")
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

local fds = uv.pipe()
local readiness = uv.new_pipe()
readiness:open(fds.read)
local threads = {}
for i = 1, n do threads[i] = false end
collectgarbage("collect")
local now = uv.hrtime
local started = 0
local rss0, cpu0, t0
readiness:read_start(function(err, data)
  assert(not err and data, err or "end of file")
  started = started + #data
  if started < n then return end
  local t, cpu = now(), os.clock() - cpu0
  io.write(table.concat({
    "bytes " .. rss() - rss0,
    "cpu_ms " .. cpu * 1000,
    "wall_ms " .. (t - t0) / 1e6,
  }, "\n"), "\n")
  io.flush()
  os.exit(0)  -- ends every thread with the process
end)
rss0, cpu0, t0 = rss(), os.clock(), now()
for i = 1, n do
  threads[i] = uv.new_thread(function(ready_fd)
    local uv = require "luv"
    local idle = uv.new_timer()
    idle:start(1000000000, 0, function() end)  -- keeps this loop alive, waiting
    uv.fs_write(ready_fd, "x", -1)
    uv.run()
  end, fds.write)
end
uv.run()
