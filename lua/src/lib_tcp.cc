// lua/src/lib_tcp.cc — the `evh` module's minimal TCP: listen, accept, connect, read, write,
// close, on the event handler's fd readiness (edge-triggered, fds owned by evh once registered,
// so a state's exit closes its sockets).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "state.h"

namespace evh_lua {
namespace {

// A socket object. User values: 1 the data handler (connections) or the connection handler
// (listeners); 2 the connect callback. While its port is open the object is anchored in the
// registry by the port's entry.
struct LuaSocket {
  int fd;
  evh_port_id port;  // 0 when not registered (or closed)
  uint32_t interest;
  bool listening;
  bool connecting;
  bool read_eof;
  bool close_after_flush;
  bool shutdown_after_flush;
  std::string* out;  // bytes the socket has not taken yet; null when none
};
constexpr const char* kSocketType = "evh.socket";
constexpr int kHandler = 1;
constexpr int kOnConnect = 2;

LuaSocket* check_socket(lua_State* L, int index) {
  return static_cast<LuaSocket*>(luaL_checkudata(L, index, kSocketType));
}

int push_result(lua_State* L, int error) {
  if (error == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, std::strerror(error));
  return 2;
}

void drop_out(LuaSocket* s) {
  delete s->out;
  s->out = nullptr;
}

int socket_gc(lua_State* L) {
  LuaSocket* s = check_socket(L, 1);
  drop_out(s);
  // A registered fd is evh's: it was closed with its port. One never registered is ours.
  if (s->port == 0 && s->fd >= 0) ::close(s->fd);
  s->fd = -1;
  return 0;
}

// A new socket object on the stack, for `fd` (-1: none yet).
LuaSocket* new_socket(lua_State* L) {
  auto* s = static_cast<LuaSocket*>(lua_newuserdatauv(L, sizeof(LuaSocket), 2));
  *s = LuaSocket{-1, 0, 0, false, false, false, false, false, nullptr};
  luaL_setmetatable(L, kSocketType);
  return s;
}

// Registers the socket on the stack top with the event handler through a port of its own.
// Returns 0 or an evh error code; on error the fd is still ours.
int register_socket(State& st, lua_State* L, LuaSocket* s, uint32_t interest) {
  lua_pushvalue(L, -1);
  const int object = luaL_ref(L, LUA_REGISTRYINDEX);
  int error = EVH_OK;
  const evh_port_id port = st.open_port(PortKind::socket, LUA_NOREF, object, s, error);
  if (port == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, object);
    return error;
  }
  evh_fd_options options = EVH_FD_OPTIONS_INIT;
  options.mode = EVH_FD_EDGE;
  options.flags = EVH_FD_OWNED;
  error = evh_fd_add(st.host.rt, s->fd, port, interest, &options);
  if (error != EVH_OK) {
    st.close_port(port);
    return error;
  }
  s->port = port;
  s->interest = interest;
  return EVH_OK;
}

// Ends the socket: its port closes, and with it the registration, which closes the fd on the
// event handler's thread, a moment later. The shutdown makes the end visible at once: a server
// stops listening (connections are refused from here on), a peer reads end of file.
void close_socket(State& st, LuaSocket* s) {
  drop_out(s);
  if (s->fd >= 0) (void)::shutdown(s->fd, SHUT_RDWR);
  if (s->port != 0) {
    const evh_port_id port = s->port;
    s->port = 0;
    s->fd = -1;
    st.close_port(port);
  } else if (s->fd >= 0) {
    ::close(s->fd);
    s->fd = -1;
  }
}

void set_interest(State& st, LuaSocket* s, uint32_t interest) {
  if (s->port == 0 || interest == s->interest) return;
  s->interest = interest;
  (void)evh_fd_modify(st.host.rt, s->fd, s->port, interest);
}

// Writes what the socket takes now. Returns 0 or an errno.
int flush(State& st, LuaSocket* s) {
  while (s->out != nullptr) {
    const ssize_t n = ::send(s->fd, s->out->data(), s->out->size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        set_interest(st, s, s->interest | EVH_WRITABLE);
        return 0;
      }
      const int e = errno;
      drop_out(s);
      return e;
    }
    if (static_cast<std::size_t>(n) < s->out->size()) {
      s->out->erase(0, static_cast<std::size_t>(n));
      continue;
    }
    drop_out(s);
  }
  set_interest(st, s, s->interest & ~static_cast<uint32_t>(EVH_WRITABLE));
  if (s->shutdown_after_flush) {
    s->shutdown_after_flush = false;
    (void)::shutdown(s->fd, SHUT_WR);
  }
  if (s->close_after_flush) close_socket(st, s);
  return 0;
}

bool parse_address(const char* host, lua_Integer port, sockaddr_storage& addr, socklen_t& len) {
  if (port < 0 || port > 65535) return false;
  if (std::strcmp(host, "localhost") == 0) host = "127.0.0.1";
  addr = sockaddr_storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  if (::inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v4;
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (::inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v6;
    return true;
  }
  return false;
}

// What evh.listen and evh.connect are called with: (host, port, fn).
struct Endpoint {
  const char* host;
  lua_Integer port;
  sockaddr_storage addr;
  socklen_t len;
};

// The start of evh.listen and evh.connect (`what`, in errors): checks (host, port, fn), pushes a
// new socket object holding fn in its user value `slot`, and opens its non-blocking fd.
LuaSocket* open_socket(lua_State* L, const char* what, int slot, Endpoint& ep) {
  ep.host = luaL_checkstring(L, 1);
  ep.port = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  ep.len = 0;
  if (!parse_address(ep.host, ep.port, ep.addr, ep.len)) {
    luaL_error(L, "evh.%s: not a numeric address and port: %s:%d", what, ep.host,
               static_cast<int>(ep.port));
  }
  LuaSocket* s = new_socket(L);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, slot);
  s->fd = ::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) luaL_error(L, "evh.%s: socket: %s", what, std::strerror(errno));
  return s;
}

// A socket of evh.listen or evh.connect whose bind, listen or connect failed with errno `e`: its
// fd is closed now, and the error raised.
int raise_setup_error(lua_State* L, LuaSocket* s, const char* what, const Endpoint& ep, int e) {
  ::close(s->fd);
  s->fd = -1;
  return luaL_error(L, "evh.%s: %s:%d: %s", what, ep.host, static_cast<int>(ep.port),
                    std::strerror(e));
}

// The end of evh.listen and evh.connect: returns the new socket (on the stack top), registered
// for `interest`, or closes its fd and raises.
int register_new_socket(lua_State* L, LuaSocket* s, uint32_t interest, const char* what) {
  const int rc = register_socket(*State::of(L), L, s, interest);
  if (rc != EVH_OK) {
    ::close(s->fd);
    s->fd = -1;
    return raise_evh_error(L, what, rc);
  }
  return 1;
}

// evh.listen(host, port, fn) -> server: fn(conn) for every accepted connection. `host` is a
// numeric address or "localhost"; port 0 picks a free one (server:port() says which).
int l_listen(lua_State* L) {
  Endpoint ep;
  LuaSocket* s = open_socket(L, "listen", kHandler, ep);
  s->listening = true;
  const int one = 1;
  (void)::setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(s->fd, reinterpret_cast<sockaddr*>(&ep.addr), ep.len) != 0 ||
      ::listen(s->fd, 128) != 0) {
    return raise_setup_error(L, s, "listen", ep, errno);
  }
  return register_new_socket(L, s, EVH_READABLE, "listen");
}

// evh.connect(host, port, fn) -> conn: fn(conn) once connected, or fn(nil, reason). Writes
// before that are kept and sent on connection.
int l_connect(lua_State* L) {
  Endpoint ep;
  LuaSocket* s = open_socket(L, "connect", kOnConnect, ep);
  const int one = 1;
  (void)::setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r;
  do {
    r = ::connect(s->fd, reinterpret_cast<sockaddr*>(&ep.addr), ep.len);
  } while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) return raise_setup_error(L, s, "connect", ep, errno);
  // Writability says the connection is made (or failed: SO_ERROR tells).
  s->connecting = true;
  return register_new_socket(L, s, EVH_WRITABLE, "connect");
}

// conn:write(bytes) -> true | false, reason. Never blocks: what the socket cannot take now is
// kept and sent, in order, as it drains.
int socket_write(lua_State* L) {
  LuaSocket* s = check_socket(L, 1);
  std::size_t n = 0;
  const char* data = luaL_checklstring(L, 2, &n);
  if (s->fd < 0 || s->listening || s->close_after_flush) return push_result(L, EPIPE);
  if (s->out == nullptr && !s->connecting) {
    while (n > 0) {
      const ssize_t w = ::send(s->fd, data, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        return push_result(L, errno);
      }
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    if (n == 0) return push_result(L, 0);
  }
  try {
    if (s->out == nullptr) s->out = new std::string;
    s->out->append(data, n);
  } catch (const std::bad_alloc&) {
    return push_result(L, ENOMEM);
  }
  if (!s->connecting) set_interest(*State::of(L), s, s->interest | EVH_WRITABLE);
  return push_result(L, 0);
}

// conn:on_data(fn): fn(conn, chunk) for what arrives; fn(conn, nil) at end of file;
// fn(conn, nil, reason) on an error (the connection is then closed).
int socket_on_data(lua_State* L) {
  LuaSocket* s = check_socket(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (s->listening) return luaL_error(L, "evh: on_data on a listening socket");
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, kHandler);
  // Re-arming reports data that arrived before there was a handler (edge mode would not).
  if (s->port != 0 && !s->connecting) {
    (void)evh_fd_modify(State::of(L)->host.rt, s->fd, s->port, s->interest);
  }
  return 0;
}

// conn:shutdown(): no more writes; the peer reads end of file once the pending bytes are sent.
int socket_shutdown(lua_State* L) {
  LuaSocket* s = check_socket(L, 1);
  if (s->fd < 0 || s->listening) return 0;
  if (s->out != nullptr || s->connecting) {
    s->shutdown_after_flush = true;
  } else {
    (void)::shutdown(s->fd, SHUT_WR);
  }
  return 0;
}

// sock:close(): a connection closes once its pending bytes are sent; a server stops accepting.
int socket_close(lua_State* L) {
  LuaSocket* s = check_socket(L, 1);
  State& st = *State::of(L);
  if (s->out != nullptr && !s->listening) {
    s->close_after_flush = true;
    if (!s->connecting) (void)flush(st, s);
    return 0;
  }
  close_socket(st, s);
  return 0;
}

// sock:port() -> the local port number.
int socket_port(lua_State* L) {
  LuaSocket* s = check_socket(L, 1);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (s->fd < 0 || ::getsockname(s->fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    lua_pushnil(L);
    return 1;
  }
  const auto port = addr.ss_family == AF_INET6
                        ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                        : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  lua_pushinteger(L, port);
  return 1;
}

// ---- events -----------------------------------------------------------------------------------

struct SocketCall {
  State* st;
  LuaSocket* s;
  int object;
  uint32_t events;
};

// The event functions below run under protection with the socket object anchored at stack
// index 2 (a handler may close it, which drops its registry reference).
void anchor(lua_State* L, const SocketCall* c) {
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->object);
}

// Calls user value `which` of the socket at index 2 with the socket and the `nargs` values on top
// of the stack (which it removes); an error is reported and the caller goes on.
void call_handler(State& st, int which, int nargs) {
  lua_State* L = st.L;
  if (lua_getiuservalue(L, 2, which) != LUA_TFUNCTION) {
    lua_pop(L, 1 + nargs);
    return;
  }
  lua_insert(L, -1 - nargs);  // fn, args...
  lua_pushvalue(L, 2);
  lua_insert(L, -1 - nargs);  // fn, sock, args...
  (void)st.call(1 + nargs);
}

// Accepts every pending connection (edge mode: until none is left) and hands each to the
// server's function.
int accept_all(lua_State* L) {
  auto* c = static_cast<SocketCall*>(lua_touserdata(L, 1));
  anchor(L, c);
  State& st = *c->st;
  LuaSocket* server = c->s;
  while (server->port != 0) {  // a handler may close the server
    LuaSocket* conn = new_socket(L);
    const int fd = evh_fd_accept(st.host.rt, server->fd, server->port);
    if (fd < 0) return 0;  // EVH_EAGAIN: none left (or the fd table is full: backed off)
    conn->fd = fd;
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (register_socket(st, L, conn, EVH_READABLE | EVH_READ_CLOSED) != EVH_OK) {
      lua_pop(L, 1);  // its __gc closes the fd
      continue;
    }
    // fn(conn)
    lua_getiuservalue(L, 2, kHandler);
    lua_insert(L, -2);
    (void)st.call(1);
  }
  return 0;
}

// Where reads land before they become Lua strings: one per thread rather than one per state (a
// state runs on one thread at a time, and the bytes are copied out before any Lua code runs).
thread_local char read_buffer[64 * 1024];

// Reads until the socket has nothing more (edge mode), handing each chunk to the handler.
int read_all(lua_State* L) {
  auto* c = static_cast<SocketCall*>(lua_touserdata(L, 1));
  anchor(L, c);
  State& st = *c->st;
  LuaSocket* s = c->s;
  while (s->port != 0 && !s->read_eof) {
    // No handler: the bytes stay in the kernel; on_data re-arms.
    const bool has_handler = lua_getiuservalue(L, 2, kHandler) == LUA_TFUNCTION;
    lua_pop(L, 1);
    if (!has_handler) return 0;
    const ssize_t n = ::read(s->fd, read_buffer, sizeof read_buffer);
    if (n > 0) {
      lua_pushlstring(L, read_buffer, static_cast<std::size_t>(n));
      call_handler(st, kHandler, 1);
      continue;
    }
    if (n == 0) {
      s->read_eof = true;
      lua_pushnil(L);
      call_handler(st, kHandler, 1);
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    const int e = errno;
    lua_pushnil(L);
    lua_pushstring(L, std::strerror(e));
    call_handler(st, kHandler, 2);
    close_socket(st, s);
    return 0;
  }
  return 0;
}

// A connection in progress became writable (or failed).
int finish_connect(lua_State* L) {
  auto* c = static_cast<SocketCall*>(lua_touserdata(L, 1));
  anchor(L, c);
  State& st = *c->st;
  LuaSocket* s = c->s;
  int error = 0;
  socklen_t len = sizeof error;
  if (::getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  if (error == 0 && (c->events & (EVH_ERROR | EVH_HANG_UP)) != 0) error = ECONNREFUSED;
  s->connecting = false;
  if (error != 0) {
    close_socket(st, s);
    // fn(nil, reason)
    lua_getiuservalue(L, 2, kOnConnect);
    lua_pushnil(L);
    lua_pushstring(L, std::strerror(error));
    (void)st.call(2);
    return 0;
  }
  set_interest(st, s, EVH_READABLE | EVH_READ_CLOSED | (s->out != nullptr ? EVH_WRITABLE : 0));
  call_handler(st, kOnConnect, 0);
  if (s->port != 0 && s->out != nullptr) (void)flush(st, s);
  return 0;
}

}  // namespace

void on_socket_event(State& st, PortEntry& entry, evh_message* message) {
  evh_io_event ev;
  if (evh_message_io_event(message, &ev) != EVH_OK) return;
  auto* s = static_cast<LuaSocket*>(entry.native);
  SocketCall c{&st, s, entry.object, ev.events};
  if (ev.notice != EVH_IO_READY) return;
  if (s->listening) {
    (void)st.protected_c(&accept_all, &c);
    return;
  }
  if (s->connecting) {
    (void)st.protected_c(&finish_connect, &c);
    return;
  }
  if ((ev.events & EVH_WRITABLE) != 0 && s->out != nullptr) {
    const int e = flush(st, s);
    if (e != 0) {
      close_socket(st, s);
      return;
    }
  }
  if (s->port != 0 &&
      (ev.events & (EVH_READABLE | EVH_READ_CLOSED | EVH_HANG_UP | EVH_ERROR)) != 0) {
    (void)st.protected_c(&read_all, &c);
  }
}

void open_tcp(lua_State* L) {
  lua_pushcfunction(L, &l_listen);
  lua_setfield(L, -2, "listen");
  lua_pushcfunction(L, &l_connect);
  lua_setfield(L, -2, "connect");

  static const luaL_Reg kMethods[] = {
      {"write", &socket_write}, {"on_data", &socket_on_data}, {"shutdown", &socket_shutdown},
      {"close", &socket_close}, {"port", &socket_port},       {nullptr, nullptr},
  };
  static const luaL_Reg kMeta[] = {{"__gc", &socket_gc}, {nullptr, nullptr}};
  new_type(L, kSocketType, kMethods, kMeta);
}

}  // namespace evh_lua
