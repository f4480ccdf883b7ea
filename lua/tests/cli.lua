-- The evh-lua command itself (its path is the first argument): --version, --help, exit statuses,
-- a script that cannot be read or parsed, errors printed with their traceback, os.exit.
local testlib = require "testlib"
local watchdog = testlib.watchdog("cli")
local evh_lua = assert(..., "usage: evh-lua cli.lua path/to/evh-lua")

local cases = {
  {args = {"--version"}, code = 0, stdout = "^evh%-lua %d+%.%d+%.%d+ %(Lua 5%.4"},
  {args = {"--help"}, code = 0, stdout = "usage: evh%-lua"},
  {args = {}, code = 1, stderr = "usage: evh%-lua"},
  {args = {"--bogus"}, code = 1, stderr = "unknown option %-%-bogus"},
  {args = {"no/such/script.lua"}, code = 1, stderr = "cannot open no/such/script.lua: No such file"},
  {args = {"/"}, code = 1, stderr = "cannot read /"},
  {args = {"-"}, stdin = "x = = 1", code = 1, stderr = "stdin:1: unexpected symbol"},
  {args = {"-"}, stdin = "local function f() error('bad thing') end f()", code = 1,
   stderr = "bad thing.*stack traceback"},
  {args = {"-", "a", "b c"}, stdin = "print(select('#', ...), ..., arg[0], arg[2])", code = 0,
   stdout = "^2\ta\t%-\tb c\n$"},  -- `...` not last in a list gives its first value
  -- An error ending the main state ends the program, also with other states still waiting.
  {args = {"-"}, stdin = "evh.spawn('evh.receive(print)'); error('main failed')", code = 1,
   stderr = "main failed"},
  -- A killed main state: the others finish, the status is 1.
  {args = {"-"}, stdin = "evh.spawn('evh.after(5, function() print(1) end)'); evh.kill(evh.self())",
   code = 1, stdout = "^1\n$"},
  {args = {"-"}, stdin = "os.exit(7)", code = 7},
  {args = {"-"}, stdin = "os.exit(false)", code = 1},
  {args = {"-"}, stdin = "evh.after(100000, print); evh.spawn('os.exit(5)')", code = 5},
  {args = {"-"}, stdin = "#!/usr/bin/env evh-lua\nprint('shebang')", code = 0, stdout = "^shebang\n$"},
  -- An error that is not fatal is printed, and the script goes on and ends with 0.
  {args = {"-"}, stdin = [[
    evh.errors_are_fatal(false)
    evh.after(1, function() error("not fatal") end)
    evh.after(20, function() print("went on") end)
  ]], code = 0, stdout = "^went on\n$", stderr = "not fatal.*stack traceback"},
  -- The README's example.
  {args = {"../examples/ping.lua"}, code = 0,
   stdout = {"doubled:\t42\n", "and a timer, 10 ms later\n"}},
  -- The exit rule: a chain of timers and a spawned state, then nothing left.
  {args = {"-"}, stdin = [[
    local n = 0
    local function tick() n = n + 1; if n < 5 then evh.after(1, tick) else print(n) end end
    tick()
    evh.spawn("evh.after(5, function() end)")
  ]], code = 0, stdout = "^5\n$"},
}

local remaining = #cases
for i, case in ipairs(cases) do
  local out, err = {}, {}
  local argv = {evh_lua}
  for _, a in ipairs(case.args) do argv[#argv + 1] = a end
  local proc = evh.spawn_process{
    argv = argv,
    stdin = case.stdin and "pipe" or "null",
    on_stdout = function(chunk) out[#out + 1] = chunk end,
    on_stderr = function(chunk) err[#err + 1] = chunk end,
    on_exit = function(code)
      local o, e = table.concat(out), table.concat(err)
      local what = "case " .. i .. " (" .. table.concat(case.args, " ") .. "): "
      assert(code == case.code, what .. "exit " .. code .. ", stderr: " .. e)
      local patterns = type(case.stdout) == "table" and case.stdout or {case.stdout}
      for _, p in ipairs(patterns) do assert(o:find(p), what .. "stdout: " .. o) end
      if case.stderr then assert(e:find(case.stderr), what .. "stderr: " .. e) end
      remaining = remaining - 1
      if remaining == 0 then watchdog.done() end
    end,
  }
  if case.stdin then
    assert(proc:write(case.stdin))
    proc:close_stdin()
  end
end
