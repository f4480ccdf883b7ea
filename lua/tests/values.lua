-- Every value that may cross between states makes a round trip through another state and comes
-- back the same (integers and floats apart, any bytes in strings, nested tables, ports); every
-- value that may not is refused with an error naming where it sits, and nothing is sent.
local testlib = require "testlib"
local watchdog = testlib.watchdog("values")

local echo = evh.spawn([[
  local reply = ...
  evh.receive(function(msg)
    if msg == "stop" then
      evh.self():close()
      return
    end
    reply:send(msg)
  end)
]], evh.self())

local deep = {}
do
  local t = deep
  for i = 1, 150 do
    t.next = {depth = i}
    t = t.next
  end
end
local shared = {1, 2}

local cases = {
  {"nil", nil},
  {"true", true},
  {"false", false},
  {"zero", 0},
  {"integer", 42},
  {"negative", -7},
  {"maxinteger", math.maxinteger},
  {"mininteger", math.mininteger},
  {"float one", 1.0},
  {"float", 3.25},
  {"negative zero", -0.0},
  {"huge", math.huge},
  {"minus huge", -math.huge},
  {"nan", 0 / 0},
  {"tiny", 4.9e-324},
  {"empty string", ""},
  {"string", "hello"},
  {"binary string", "\0\1\2\255 nul\0inside"},
  {"long string", string.rep("0123456789", 100000)},
  {"empty table", {}},
  {"array", {1, 2, 3, "four", 5.0}},
  {"array with holes", {1, nil, 3}},
  {"record", {a = 1, b = "two", c = {d = {e = true}}}},
  {"mixed keys", {[1.5] = "float key", [true] = "true key", [false] = 0, [-3] = "negative",
                   [math.maxinteger] = "max", ["two words"] = 2}},
  {"integer-valued float key", {[2.0] = "becomes integer 2"}},
  {"deep", deep},
  {"shared, not a cycle", {a = shared, b = shared}},
}

local next_case = 1
local ports_checked = false
local probe

local function send_next()
  local case = cases[next_case]
  if case == nil then
    probe = evh.port(function(msg, port)
      assert(msg == "through a copied port")
      port:close()
      ports_checked = true
      echo:send("stop")
    end)
    -- A port crosses as a port: the copy that comes back reaches the same place.
    assert(echo:send{port = probe, list = {probe, evh.self()}})
    return
  end
  assert(echo:send(case[2]), case[1])
end

local refused = {
  {function() end, "cannot copy a function at value"},
  {{a = {1, 2, function() end}}, "cannot copy a function at value.a%[3%]"},
  {{["a b"] = {coroutine.create(function() end)}}, 'cannot copy a coroutine at value%["a b"%]%[1%]'},
  {{x = {io.stdout}}, "cannot copy a userdata at value.x%[1%]"},
  {{[print] = 1}, "cannot copy a function used as a key in value"},
  {{t = {[2.5] = {f = print}}}, "cannot copy a function at value.t%[2.5%].f"},
}
do
  local cycle = {}
  cycle.self = cycle
  refused[#refused + 1] = {cycle, "cannot copy a table that contains itself %(a cycle%) at value.self"}
  local a = {b = {c = {}}}
  a.b.c.back = a
  refused[#refused + 1] = {{list = {a}}, "a cycle%) at value.list%[1%].b.c.back"}
  local too_deep = {}
  local t = too_deep
  for _ = 1, 300 do
    t[1] = {}
    t = t[1]
  end
  refused[#refused + 1] = {too_deep, "nested too deeply"}
end

-- Refused values raise before anything is sent: the echo never sees them (the replies that come
-- back are exactly the accepted cases, in order).
for _, r in ipairs(refused) do
  local ok, err = pcall(echo.send, echo, r[1])
  assert(not ok, "refused value was sent: " .. r[2])
  assert(tostring(err):find(r[2]), "error '" .. tostring(err) .. "' lacks '" .. r[2] .. "'")
end

-- Spawn arguments are copied the same way (and refused the same way).
do
  local ok, err = pcall(evh.spawn, "return", 1, {f = print})
  assert(not ok and err:find("cannot copy a function at args%[2%]%.f"), err)
  local ok2, err2 = pcall(evh.spawn, "this is not Lua")
  assert(not ok2 and err2:find("syntax error") or err2:find("expected"), err2)
  local ok3, err3 = pcall(evh.spawn, "no/such/file.lua")
  assert(not ok3 and err3:find("cannot read no/such/file.lua"), err3)
end

local args_checked = false
local args_port
args_port = evh.port(function(msg)
  assert(msg == "args ok", msg)
  args_port:close()
  args_checked = true
end)
evh.spawn([[
  local reply, i, f, s, t, n = ...
  assert(select("#", ...) == 6)
  assert(math.type(i) == "integer" and i == 1)
  assert(math.type(f) == "float" and f == 2.0)
  assert(s == "three\0")
  assert(t.x[1] == "y" and #t.x == 1)
  assert(n == nil)
  reply:send("args ok")
]], args_port, 1, 2.0, "three\0", {x = {"y"}}, nil)

-- A spawn by path, relative to the working directory.
local path_checked = false
local path_port
path_port = evh.port(function(msg)
  assert(msg == "from a file: 7", msg)
  path_port:close()
  path_checked = true
end)
evh.spawn("spawned_by_path.lua", path_port, 7)

evh.receive(function(msg)
  if next_case <= #cases then
    local case = cases[next_case]
    local ok, why = testlib.same(case[2], msg)
    assert(ok, case[1] .. ": " .. tostring(why))
    if case[1] == "shared, not a cycle" then
      assert(msg.a ~= msg.b, "two paths to one table arrive as two tables")
    end
    next_case = next_case + 1
    send_next()
    return
  end
  -- The ports came back as ports of the same ids.
  assert(getmetatable(msg.port) == getmetatable(probe))
  assert(msg.port == probe and msg.list[1] == probe and msg.list[2] == evh.self())
  assert(msg.port:id() == probe:id())
  assert(msg.port:send("through a copied port"))
end)

evh.on_exit(echo, function(reason)
  assert(reason == "normal", reason)
  assert(next_case == #cases + 1 and ports_checked and args_checked and path_checked)
  evh.self():close()
  watchdog.done()
end)

send_next()
