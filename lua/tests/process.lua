-- Child processes: output streamed in order into a state (a spawned one, too), the exit last;
-- stdin written (more than a pipe holds) and closed; a kill; env and cwd; a failed exec.
local testlib = require "testlib"
local watchdog = testlib.watchdog("process")
local pending = 0
local function started() pending = pending + 1 end
local function finished()
  pending = pending - 1
  if pending == 0 then watchdog.done() end
end

-- stdout and stderr, then the exit code, in that order.
started()
do
  local out, err, exited = {}, {}, false
  local proc
  proc = evh.spawn_process{
    argv = {"sh", "-c", "printf 'one\\ntwo\\n'; printf err >&2; exit 3"},
    on_stdout = function(chunk, p)
      assert(not exited and p == proc)
      out[#out + 1] = chunk
    end,
    on_stderr = function(chunk) assert(not exited); err[#err + 1] = chunk end,
    on_exit = function(code, p)
      exited = true
      assert(code == 3, code)
      assert(p.exit_code == 3)
      assert(table.concat(out) == "one\ntwo\n", table.concat(out))
      assert(table.concat(err) == "err")
      finished()
    end,
  }
  assert(math.type(proc.pid) == "integer" and proc.pid > 0)
  assert(proc.exit_code == nil)
end

-- stdin: more than a pipe holds, through cat, in order.
started()
do
  local chunks = {}
  for i = 1, 2000 do chunks[i] = string.format("%05d ", i) .. string.rep("x", 500) .. "\n" end
  local input = table.concat(chunks)
  local out = {}
  local cat = evh.spawn_process{
    argv = {"cat"},
    on_stdout = function(chunk) out[#out + 1] = chunk end,
    on_exit = function(code)
      assert(code == 0, code)
      local got = table.concat(out)
      assert(#got == #input and got == input, "cat returned " .. #got .. " of " .. #input .. " bytes")
      finished()
    end,
  }
  assert(cat:write(input:sub(1, 100000)))
  assert(cat:write(input:sub(100001)))
  cat:close_stdin()
  assert(cat:write("too late") == false)
end

-- A kill: death by signal s reports -s.
started()
do
  local sleeper = evh.spawn_process{
    argv = {"sleep", "1000"},
    stdin = "null",
    on_exit = function(code)
      assert(code == -15, code)
      finished()
    end,
  }
  assert(sleeper:kill("TERM"))
end

-- env and cwd.
started()
do
  local out = {}
  evh.spawn_process{
    argv = {"sh", "-c", "echo \"$GREETING\"; pwd"},
    env = {GREETING = "hi there", PATH = os.getenv("PATH")},
    cwd = "/",
    stdin = "null",
    on_stdout = function(chunk) out[#out + 1] = chunk end,
    on_exit = function(code)
      assert(code == 0)
      assert(table.concat(out) == "hi there\n/\n", table.concat(out))
      finished()
    end,
  }
end

-- The stream's window and the pipe's size: a small window and a grown pipe still deliver every
-- byte in order; 0 means no limit / never grown; bad sizes raise, naming the field.
for _, sizes in ipairs{{stream_window = 16384, output_pipe_size = 262144}, {stream_window = 0, output_pipe_size = 0}} do
  started()
  local out = {}
  evh.spawn_process{
    argv = {"head", "-c", "300000", "/dev/zero"},
    stdin = "null",
    stream_window = sizes.stream_window,
    output_pipe_size = sizes.output_pipe_size,
    on_stdout = function(chunk) out[#out + 1] = chunk end,
    on_exit = function(code)
      assert(code == 0, code)
      local got = table.concat(out)
      assert(#got == 300000 and got == string.rep("\0", 300000), #got)
      finished()
    end,
  }
end
do
  local ok, err = pcall(evh.spawn_process, {argv = {"true"}, output_pipe_size = 1})
  assert(not ok and err:find("output_pipe_size"), err)
  ok, err = pcall(evh.spawn_process, {argv = {"true"}, stream_window = -1})
  assert(not ok and err:find("stream_window must be an integer"), err)
  ok, err = pcall(evh.spawn_process, {argv = {"true"}, output_pipe_size = "big"})
  assert(not ok and err:find("output_pipe_size must be an integer"), err)
end

-- A program that does not exist: the spawn raises, with the reason.
do
  local ok, err = pcall(evh.spawn_process, {argv = {"/no/such/program"}})
  assert(not ok and err:find("No such file"), err)
  assert(not pcall(evh.spawn_process, {argv = {}}))
end

-- A child's output streamed into a spawned state, which reports what it got.
started()
do
  local inbox
  inbox = evh.port(function(msg)
    assert(msg.bytes == 3 * 1000 * 1000, msg.bytes)
    assert(msg.lines == 1000 * 1000, msg.lines)
    assert(msg.code == 0)
    inbox:close()
    finished()
  end)
  evh.spawn([[
    local inbox = ...
    local bytes, lines = 0, 0
    evh.spawn_process{
      argv = {"sh", "-c", "yes ab | head -c 3000000"},
      stdin = "null",
      on_stdout = function(chunk)
        bytes = bytes + #chunk
        for _ in chunk:gmatch("\n") do lines = lines + 1 end
      end,
      on_exit = function(code) inbox:send{bytes = bytes, lines = lines, code = code} end,
    }
  ]], inbox)
end

-- A signal to this process reaches the state that watches it.
started()
do
  local watcher
  watcher = evh.signal("SIGUSR1", function(name, count)
    assert(name == "USR1" and math.type(count) == "integer" and count >= 1)
    watcher:stop()
    finished()
  end)
  -- sh's parent is this process.
  evh.spawn_process{argv = {"sh", "-c", "kill -USR1 $PPID"}, stdin = "null"}
  assert(not pcall(evh.signal, "NOSUCHSIGNAL", print))
  assert(not pcall(evh.signal, "KILL", print))
end
