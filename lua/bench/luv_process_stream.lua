-- lua_process_stream for luv (lua5.4 + luv), the peer of evh_process_stream.lua: uv.spawn with a
-- pipe for stdout, read with read_start until end of file and the child's exit.
local uv = require "luv"
local bytes = tonumber(arg[1])
collectgarbage("collect")
local got = 0
local eof, exit_code = false, nil
local cpu0, t0 = os.clock(), uv.hrtime()
local function finish()
  if not eof or exit_code == nil then return end
  local t = uv.hrtime()
  assert(exit_code == 0 and got == bytes, "read " .. got .. " of " .. bytes .. " bytes")
  io.write(table.concat({
    "cpu_ms " .. (os.clock() - cpu0) * 1000,
    "wall_ms " .. (t - t0) / 1e6,
    "bytes " .. got,
  }, "\n"), "\n")
end
local stdout = uv.new_pipe()
local child
child = uv.spawn("head", {args = {"-c", tostring(bytes), "/dev/zero"}, stdio = {nil, stdout, 2}},
  function(code)
    exit_code = code
    child:close()
    finish()
  end)
stdout:read_start(function(err, chunk)
  assert(not err, err)
  if chunk then
    got = got + #chunk
  else
    eof = true
    stdout:close()
    finish()
  end
end)
uv.run()
