-- lua_timer_batch for evh-lua (bench/lua_bench.cc runs it; luv_timer_batch.lua is its peer).
-- Reads the timer count and then every delay (ns) from stdin; arms one evh.after per delay, each
-- deadline measured from a clock read just before its start call; reports what the callbacks
-- saw. Output: "name value" lines, then "samples late_ns" and one lateness per line.
local n = io.read("n")
local delays = {}
for i = 1, n do delays[i] = io.read("n") end
local late = {}
for i = 1, n do late[i] = 0 end

local function rss()
  local f = io.open("/proc/self/statm")
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

collectgarbage("collect")
local now = evh.now
local fired, last_fire, last_deadline = 0, 0, 0
local early = 0
local rss0 = rss()
local cpu0 = os.clock()
local t0 = now()
for i = 1, n do
  local delay = delays[i]
  local deadline = now() + delay
  if deadline > last_deadline then last_deadline = deadline end
  evh.after(delay / 1e6, function()
    local t = now()
    local l = t - deadline
    if l < 0 then early = early + 1 end
    fired = fired + 1
    late[fired] = l
    last_fire = t
    if fired == n then
      local cpu = os.clock() - cpu0
      local out = {
        "arm_ns_total " .. ARMED,
        "bytes " .. BYTES,
        "cpu_ms " .. cpu * 1000,
        "wall_ms " .. (t - t0) / 1e6,
        "last_fire_ns " .. last_fire,
        "last_deadline_ns " .. last_deadline,
        "early " .. early,
        "samples late_ns",
        table.concat(late, "\n"),
        "end",
      }
      io.write(table.concat(out, "\n"), "\n")
    end
  end)
end
ARMED = now() - t0
BYTES = rss() - rss0
