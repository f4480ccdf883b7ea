-- Helpers shared by the evh-lua test scripts (found by `require` from the tests' directory).
local M = {}

-- A timer that fails the test if it is not finished in time: while armed it also keeps the
-- main state alive, so a test whose states all end early without finishing fails instead of
-- passing by silence. Call :done() when the test has checked everything.
function M.watchdog(what, seconds)
  local t = evh.after((seconds or 120) * 1000, function()
    error("the test did not finish: " .. what)
  end)
  return { done = function() t:cancel() end }
end

-- Structural equality of copied values: the same types (integer and float apart), NaN equal to
-- NaN, tables compared key by key (keys that are not tables).
function M.same(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) then
    return false, path .. ": " .. type(a) .. " vs " .. type(b)
  end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then
      return false, path .. ": " .. math.type(a) .. " vs " .. math.type(b)
    end
    if a ~= a then
      return b ~= b, path .. ": NaN vs " .. tostring(b)
    end
    if a == 0 and b == 0 and 1 / a ~= 1 / b then
      return false, path .. ": signed zero lost"
    end
    return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  if type(a) ~= "table" then
    return a == b, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  for k, v in pairs(a) do
    local ok, why = M.same(v, b[k], path .. "[" .. tostring(k) .. "]")
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "[" .. tostring(k) .. "]: extra key" end
  end
  return true
end

return M
