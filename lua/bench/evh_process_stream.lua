-- lua_process_stream for evh-lua (bench/lua_bench.cc; luv_process_stream.lua is its peer): a
-- child writes `bytes` bytes (head -c from /dev/zero) and the state reads all of it, chunk by
-- chunk, as Lua strings, until the child's exit. Output as evh_timer_batch.lua.
local bytes = tonumber(arg[1])
collectgarbage("collect")
local got = 0
local cpu0, t0 = os.clock(), evh.now()
evh.spawn_process{
  argv = {"head", "-c", tostring(bytes), "/dev/zero"},
  stdin = "null",
  on_stdout = function(chunk) got = got + #chunk end,
  on_exit = function(code)
    local t = evh.now()
    assert(code == 0 and got == bytes, "read " .. got .. " of " .. bytes .. " bytes, exit " .. code)
    io.write(table.concat({
      "cpu_ms " .. (os.clock() - cpu0) * 1000,
      "wall_ms " .. (t - t0) / 1e6,
      "bytes " .. got,
    }, "\n"), "\n")
  end,
}
