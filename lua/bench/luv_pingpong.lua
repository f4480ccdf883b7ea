-- lua_pingpong for luv (lua5.4 + luv), the peer of evh_pingpong.lua: a second Lua state on a
-- thread of its own (uv.new_thread) with its own loop. Answers come back through a uv.new_async
-- of the main loop, the number as its serialized argument. Requests go to the thread through a
-- pipe (uv.pipe) it reads on its loop: luv 1.44 cannot hand an async handle made on the thread's
-- loop back to the main state (a handle crosses only into a new thread's arguments), so the main
-- state has no async of the thread's to send to.
local uv = require "luv"
local n, warmup = tonumber(arg[1]), tonumber(arg[2])
local rtt = {}
for i = 1, n do rtt[i] = 0 end
collectgarbage("collect")

local now = uv.hrtime
local fds = uv.pipe()
local requests = uv.new_pipe()
requests:open(fds.write)

local i, t0, cpu0, wall0 = 0, 0, 0, 0
local answers
answers = uv.new_async(function(v)
  local t = now()
  i = i + 1
  if i > warmup then rtt[i - warmup] = t - t0 end
  if i == warmup then
    cpu0, wall0 = os.clock(), now()
  elseif i == warmup + n then
    local cpu = os.clock() - cpu0
    requests:write("stop\n")
    requests:close()
    answers:close()
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
  requests:write(tostring(math.tointeger(v) + 1) .. "\n")
end)

local thread = uv.new_thread(function(read_fd, answers)
  local uv = require "luv"
  local pipe = uv.new_pipe()
  pipe:open(read_fd)
  local buffered = ""
  pipe:read_start(function(err, data)
    assert(not err, err)
    if not data then pipe:close() return end
    buffered = buffered .. data
    for line in buffered:gmatch("([^\n]*)\n") do
      if line == "stop" then
        pipe:close()
        return
      end
      uv.async_send(answers, tonumber(line))
    end
    buffered = buffered:match("[^\n]*$")
  end)
  uv.run()
end, fds.read, answers)

t0 = now()
requests:write("0\n")
uv.run()
thread:join()
