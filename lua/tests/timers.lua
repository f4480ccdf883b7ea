-- Timers fire in deadline order (equal deadlines in start order), never early; cancelling one
-- from an earlier callback prevents it; a periodic timer cancelled in its own callback stops;
-- microtasks (evh.defer) run after each callback, before the next timer.
local testlib = require "testlib"
local watchdog = testlib.watchdog("timers")

local order = {}
local function mark(name) order[#order + 1] = name end

local start = evh.now()
local a, b, c, d, e
a = evh.after(30, function(t)
  assert(t == a)
  assert(evh.now() - start >= 30 * 1000000, "fired early")
  mark("a")
end)
c = evh.after(20, function() mark("c") end)  -- cancelled by b before it is due
b = evh.after(10, function(t)
  mark("b")
  assert(not t:armed())
  c:cancel()
  c:cancel()  -- twice: harmless
  evh.defer(function()
    mark("b.defer")
    evh.defer(function() mark("b.defer.defer") end)
  end)
end)
d = evh.after(10, function() mark("d") end)  -- same delay as b, started after it
e = evh.after(0, function() mark("zero") end)
assert(a:armed() and b:armed() and c:armed() and d:armed() and e:armed())

-- The final check runs once both the 60 ms timer below and the ticker's third tick have run: a
-- state held up past 60 ms (a loaded machine, TSan) gets its missed ticks as one call with
-- `skipped` (SEMANTICS 15), so the third tick may come after the 60 ms timer.
local final_check
local waiting = 2
local function one_done()
  waiting = waiting - 1
  if waiting == 0 then final_check() end
end

local ticks = 0
local ticker
ticker = evh.every(5, function(t, skipped)
  assert(t == ticker and math.type(skipped) == "integer" and skipped >= 0)
  ticks = ticks + 1
  assert(ticks <= 3, "a cancelled periodic timer ran again")
  if ticks == 3 then
    t:cancel()
    one_done()
  end
end)

local exact_start = evh.now()
evh.after_exact(2.5, function()
  assert(evh.now() - exact_start >= 2500000, "an exact timer fired early")
  mark("exact")
end)

-- Bad delays are refused.
assert(not pcall(evh.after, -1, print))
assert(not pcall(evh.every, 0, print))
assert(not pcall(evh.after, 1, "not a function"))

-- After everything above: check the order (b, its microtasks, then d: due together).
evh.after(60, one_done)
final_check = function()
  local got = table.concat(order, " ")
  local without_exact = got:gsub(" ?exact", "")
  assert(without_exact == "zero b b.defer b.defer.defer d a", got)
  assert(got:find("exact"), got)
  assert(ticks == 3, ticks)
  assert(not a:armed() and not ticker:armed())
  -- A callback that starts a timer: it runs in a later batch, not this one.
  local inner_ran = false
  evh.after(0, function() inner_ran = true end)
  assert(not inner_ran)
  evh.after(1, function()
    assert(inner_ran)
    watchdog.done()
  end)
end
