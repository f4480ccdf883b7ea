-- An echo server in one state on 127.0.0.1, three clients in other states: each sends a payload
-- larger than the socket buffers in pieces, half-closes, and must read back exactly what it sent.
local testlib = require "testlib"
local watchdog = testlib.watchdog("tcp_echo")
local CLIENTS = 3

local server = evh.spawn([[
  local report = ...
  local connections = 0
  local server
  server = evh.listen("127.0.0.1", 0, function(conn)
    connections = connections + 1
    conn:on_data(function(c, data)
      if data then
        assert(c:write(data))
      else
        c:close()  -- after the echo is flushed
      end
    end)
  end)
  evh.receive(function(msg)
    assert(msg == "stop")
    server:close()
    evh.self():close()
    report:send{connections = connections}
  end)
  report:send{port = server:port()}
]], evh.self())

local client_code = [[
  local port, report, n = ...
  local payload = {}
  for i = 1, 20000 do payload[i] = string.format("%d:%08d|", n, i) end
  payload = table.concat(payload)
  local received = {}
  local conn = evh.connect("127.0.0.1", port, function(conn, err)
    assert(conn, err)
  end)
  -- Writes before the connection is made are kept and sent in order.
  for i = 1, #payload, 65536 do assert(conn:write(payload:sub(i, i + 65535))) end
  conn:shutdown()
  conn:on_data(function(c, data, err)
    assert(not err, err)
    if data then
      received[#received + 1] = data
    else
      c:close()
      local got = table.concat(received)
      report:send{client = n, ok = got == payload, bytes = #got, sent = #payload}
    end
  end)
]]

local done = 0
local server_connections
evh.receive(function(msg)
  if msg.port then
    assert(math.type(msg.port) == "integer" and msg.port > 0)
    for n = 1, CLIENTS do evh.spawn(client_code, msg.port, evh.self(), n) end
  elseif msg.client then
    assert(msg.ok, "client " .. msg.client .. " got " .. msg.bytes .. " of " .. msg.sent .. " bytes")
    done = done + 1
    if done == CLIENTS then server:send("stop") end
  elseif msg.connections then
    server_connections = msg.connections
    evh.self():close()
  end
end)

evh.on_exit(server, function(reason)
  assert(reason == "normal", reason)
  evh.defer(function()
    assert(done == CLIENTS and server_connections == CLIENTS)
    watchdog.done()
  end)
end)

-- A connection refused is reported to the connect callback.
do
  local closed = evh.listen("127.0.0.1", 0, function() end)
  local port = closed:port()
  closed:close()
  local refused = false
  local refusal_watchdog = testlib.watchdog("connection refused")
  evh.connect("127.0.0.1", port, function(conn, err)
    assert(conn == nil and err:find("refused"), tostring(err))
    refused = true
    refusal_watchdog.done()
  end)
end

-- Bad addresses are refused at once.
assert(not pcall(evh.listen, "not an address", 0, print))
assert(not pcall(evh.connect, "127.0.0.1", 70000, print))
