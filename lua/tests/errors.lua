-- An error escaping a callback reaches the isolate's error listeners with its Lua traceback; with
-- errors_are_fatal off the state goes on, with it on (the default) the state ends with "error".
local testlib = require "testlib"
local watchdog = testlib.watchdog("errors")
local pending = 2
local function finished()
  pending = pending - 1
  if pending == 0 then watchdog.done() end
end

-- Not fatal: the error is reported, then the state carries on and exits normally.
do
  local errors, alive = {}, false
  local inbox
  inbox = evh.port(function(msg)
    assert(msg == "still alive")
    alive = true
    inbox:close()
  end)
  local child = evh.spawn({code = [[
    local inbox = ...
    evh.print_errors(false)
    local function explode(what) error("boom: " .. what) end
    evh.after(1, function() explode("in a timer") end)
    evh.after(5, function() error({code = 42}) end)
    evh.after(10, function() inbox:send("still alive") end)
  ]], errors_are_fatal = false}, inbox)
  evh.on_error(child, function(text) errors[#errors + 1] = text end)
  evh.on_exit(child, function(reason)
    assert(reason == "normal", reason)
    assert(alive)
    assert(#errors == 2, #errors)
    assert(errors[1]:find("boom: in a timer", 1, true), errors[1])
    assert(errors[1]:find("stack traceback:", 1, true), errors[1])
    assert(errors[1]:find("in upvalue 'explode'", 1, true) or errors[1]:find("explode", 1, true),
           errors[1])
    assert(errors[2]:find("(error object is a table value)", 1, true), errors[2])
    finished()
  end)
end

-- Fatal (the default): the first error ends the state; nothing after it runs.
do
  local errors, after = {}, false
  local inbox
  inbox = evh.port(function() after = true end)
  local child = evh.spawn([[
    local inbox = ...
    evh.print_errors(false)
    local function nested() local t = nil; return t.field end
    evh.after(1, function() nested() end)
    evh.after(50, function() inbox:send("ran after the error") end)
  ]], inbox)
  evh.on_error(child, function(text) errors[#errors + 1] = text end)
  evh.on_exit(child, function(reason)
    assert(reason == "error", reason)
    assert(#errors == 1, #errors)
    assert(errors[1]:find("attempt to index a nil value", 1, true), errors[1])
    assert(errors[1]:find("stack traceback:", 1, true), errors[1])
    assert(errors[1]:find("nested", 1, true), errors[1])
    evh.defer(function()
      assert(not after)
      inbox:close()
      finished()
    end)
  end)
end
