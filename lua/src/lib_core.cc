// lua/src/lib_core.cc — the `evh` module's isolates and ports: spawn, port, send, self, kill,
// listeners, errors, and os.exit.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "codec.h"
#include "state.h"

namespace evh_lua {
namespace {

// ---- ports ------------------------------------------------------------------------------------

int port_gc(lua_State* L) {
  auto* p = static_cast<LuaPort*>(luaL_checkudata(L, 1, kPortType));
  if (p->isolate != nullptr) (void)evh_isolate_release(p->isolate);
  p->isolate = nullptr;
  return 0;
}

int port_eq(lua_State* L) {
  auto* a = static_cast<LuaPort*>(luaL_testudata(L, 1, kPortType));
  auto* b = static_cast<LuaPort*>(luaL_testudata(L, 2, kPortType));
  lua_pushboolean(L, a != nullptr && b != nullptr && a->id == b->id);
  return 1;
}

int port_tostring(lua_State* L) {
  const LuaPort* p = check_port(L, 1);
  lua_pushfstring(L, "evh.port: %p", reinterpret_cast<void*>(static_cast<std::uintptr_t>(p->id)));
  return 1;
}

// port:send(value) -> true | false, reason. A value that cannot be copied raises (nothing sent);
// a port that is gone is an ordinary outcome (its isolate may have exited meanwhile).
int port_send(lua_State* L) {
  const LuaPort* p = check_port(L, 1);
  lua_settop(L, 2);
  State& st = *State::of(L);
  if (!encode(L, 2, 1, "value", st.scratch, st.scratch_handles)) return lua_error(L);
  int rc;
  if (st.scratch_handles.empty()) {
    rc = evh_post(st.host.rt, p->id, st.scratch.data(), st.scratch.size(), 0);
  } else {
    Payload* payload = nullptr;
    try {
      payload = new Payload;
      payload->bytes = st.scratch;
      payload->handles.swap(st.scratch_handles);
    } catch (const std::bad_alloc&) {
      delete payload;
      for (evh_isolate* h : st.scratch_handles) (void)evh_isolate_release(h);
      st.scratch_handles.clear();
      return luaL_error(L, "evh: not enough memory to send");
    }
    // The payload is evh's from here, sent or not.
    rc = evh_post_native(st.host.rt, p->id, payload, &free_payload, 0);
  }
  if (rc == EVH_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, evh_strerror(rc));
  return 2;
}

// port:close() -> true when it closed one of this state's open ports, false otherwise.
int port_close(lua_State* L) {
  const LuaPort* p = check_port(L, 1);
  State& st = *State::of(L);
  bool closed = false;
  if (p->id == st.main_port) {
    closed = st.main_open;
    st.close_port(p->id);
  } else if (auto it = st.ports.find(p->id);
             it != st.ports.end() && it->second.kind == PortKind::user) {
    st.close_port(p->id);
    closed = true;
  }
  lua_pushboolean(L, closed);
  return 1;
}

// port:id() -> the port's 64-bit id as an integer (the same in every state).
int port_id(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(check_port(L, 1)->id));
  return 1;
}

// ---- spawn ------------------------------------------------------------------------------------

// The code of a spawn: a string without a newline ending in ".lua" is a file to read; any other
// string is the source itself.
bool is_path(const char* s, std::size_t n) {
  return n > 4 && std::memcmp(s + n - 4, ".lua", 4) == 0 && std::memchr(s, '\n', n) == nullptr;
}

// Pushes the contents of the file at `path`; false (nothing pushed) with the errno in `error`.
bool push_file(lua_State* L, const char* path, int& error) {
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    error = errno;
    return false;
  }
  const int top = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  std::size_t n;
  do {
    char* space = luaL_prepbuffer(&b);
    n = std::fread(space, 1, LUAL_BUFFERSIZE, f);
    luaL_addsize(&b, n);
  } while (n > 0);
  const bool failed = std::ferror(f) != 0;
  error = errno;
  std::fclose(f);
  if (failed) {
    lua_settop(L, top);  // the buffer's placeholder or box
    return false;
  }
  luaL_pushresult(&b);
  return true;
}

// The part of evh.spawn that builds C++ objects: never raises, returns an error code (and the
// port of the new isolate in *out). `code` names the source (or file) already checked to parse.
int spawn_state(State& parent, std::string source, std::string chunkname, bool errors_fatal,
                evh_isolate** out) {
  State* child = nullptr;
  try {
    Payload args;
    args.bytes = parent.scratch;
    args.handles.swap(parent.scratch_handles);
    child = new State(parent.host, std::move(source), std::move(chunkname), std::move(args));
  } catch (const std::bad_alloc&) {
    for (evh_isolate* h : parent.scratch_handles) (void)evh_isolate_release(h);
    parent.scratch_handles.clear();
    return EVH_ENOMEM;
  }
  parent.host.live.fetch_add(1, std::memory_order_relaxed);
  evh_isolate_options options = EVH_ISOLATE_OPTIONS_INIT;
  options.errors_are_fatal = errors_fatal ? 1 : 0;
  // On failure State::destroy has run (and counted the state out).
  const int rc =
      evh_isolate_spawn(parent.host.rt, &State::on_message, child, &State::destroy, &options, out);
  if (rc != EVH_OK) return rc;
  // The first message starts it (it makes its lua_State on its own turn, on its own thread).
  const int posted = evh_post(parent.host.rt, evh_isolate_main_port(*out), nullptr, 0, 0);
  if (posted != EVH_OK) {
    (void)evh_isolate_kill(*out, EVH_IMMEDIATE);
    (void)evh_isolate_release(*out);
    *out = nullptr;
    return posted;
  }
  return EVH_OK;
}

// evh.spawn(code, ...) or evh.spawn({code = ..., errors_are_fatal = bool}, ...) -> port.
int l_spawn(lua_State* L) {
  State& st = *State::of(L);
  bool errors_fatal = true;
  int code_index = 1;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, "errors_are_fatal");
    if (!lua_isnil(L, -1)) errors_fatal = lua_toboolean(L, -1) != 0;
    lua_getfield(L, 1, "code");
    code_index = lua_gettop(L);
  }
  std::size_t n = 0;
  const char* code = lua_tolstring(L, code_index, &n);
  if (code == nullptr || lua_type(L, code_index) != LUA_TSTRING) {
    return luaL_argerror(L, 1, "a string of Lua source, or the path of a .lua file");
  }
  const int nargs = lua_gettop(L) - 1 - (code_index == 1 ? 0 : 2);
  // Read and parse here, so that a missing file or a syntax error is the spawner's error.
  lua_pushnil(L);  // [source]
  lua_pushnil(L);  // [chunkname]
  const int source_at = lua_gettop(L) - 1;
  if (is_path(code, n)) {
    int e = 0;
    if (!push_file(L, code, e)) {
      return luaL_error(L, "evh.spawn: cannot read %s: %s", code, std::strerror(e));
    }
    lua_replace(L, source_at);
    lua_pushfstring(L, "@%s", code);
    lua_replace(L, source_at + 1);
  } else {
    lua_pushvalue(L, code_index);
    lua_replace(L, source_at);
    lua_pushvalue(L, code_index);
    lua_replace(L, source_at + 1);
  }
  std::size_t source_size = 0;
  const char* source = lua_tolstring(L, source_at, &source_size);
  const char* chunkname = lua_tostring(L, source_at + 1);
  if (luaL_loadbufferx(L, source, source_size, chunkname, "t") != LUA_OK) return lua_error(L);
  lua_pop(L, 1);
  if (!encode(L, 2, nargs, "args", st.scratch, st.scratch_handles)) return lua_error(L);
  evh_isolate* child = nullptr;
  int rc = EVH_ENOMEM;
  try {
    rc = spawn_state(st, std::string(source, source_size), chunkname, errors_fatal, &child);
  } catch (const std::bad_alloc&) {
    for (evh_isolate* h : st.scratch_handles) (void)evh_isolate_release(h);
    st.scratch_handles.clear();
  }
  if (rc != EVH_OK) return raise_evh_error(L, "spawn", rc);
  push_port(L, evh_isolate_main_port(child), child);
  return 1;
}

// ---- the running isolate ----------------------------------------------------------------------

int l_self(lua_State* L) {
  State& st = *State::of(L);
  (void)evh_isolate_retain(st.self);
  push_port(L, st.main_port, st.self);
  return 1;
}

// evh.port(fn) -> a new port of this state; fn(value, port) runs for each message.
int l_port(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  State& st = *State::of(L);
  (void)evh_isolate_retain(st.self);
  push_port(L, 0, st.self);
  auto* p = static_cast<LuaPort*>(lua_touserdata(L, -1));
  lua_pushvalue(L, 1);
  const int handler = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  const int object = luaL_ref(L, LUA_REGISTRYINDEX);
  int error = EVH_OK;
  p->id = st.open_port(PortKind::user, handler, object, nullptr, error);
  if (p->id == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, handler);
    luaL_unref(L, LUA_REGISTRYINDEX, object);
    return raise_evh_error(L, "port", error);
  }
  return 1;
}

// evh.receive(fn): messages to this state's main port (evh.self()) go to fn(value). Without it,
// the main port closes when the main chunk ends.
int l_receive(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  State& st = *State::of(L);
  if (!st.main_open) {
    return luaL_error(L,
                      "evh.receive: the main port is closed (call evh.receive in the main "
                      "chunk, or before closing evh.self())");
  }
  lua_pushvalue(L, 1);
  const int handler = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_unref(L, LUA_REGISTRYINDEX, st.main_handler);
  st.main_handler = handler;
  return 0;
}

evh_isolate* isolate_of(lua_State* L, int index, const char* what) {
  const LuaPort* p = check_port(L, index);
  if (p->isolate == nullptr) {
    luaL_error(L,
               "evh.%s: this port names no isolate (ports of evh.spawn, evh.self and evh.port "
               "do, also after crossing to another state)",
               what);
  }
  return p->isolate;
}

// Unwinds the running Lua code of this state for good (kill of itself, os.exit).
[[noreturn]] void unwind(lua_State* L, State& st) {
  st.dying = true;
  lua_pushlightuserdata(L, &kKilled);
  lua_error(L);
  __builtin_unreachable();
}

// evh.kill(port, "immediate" | "next"): "immediate" stops it at its next hook (inside a long
// loop too); "next" lets its current callback finish. Its state closes once it has stopped.
int l_kill(lua_State* L) {
  evh_isolate* target = isolate_of(L, 1, "kill");
  static const char* const kHow[] = {"immediate", "next", nullptr};
  const int how = luaL_checkoption(L, 2, "immediate", kHow);
  State& st = *State::of(L);
  const int rc = evh_isolate_kill(target, how == 0 ? EVH_IMMEDIATE : EVH_BEFORE_NEXT_EVENT);
  if (rc != EVH_OK) return raise_evh_error(L, "kill", rc);
  if (target == st.self && how == 0) unwind(L, st);
  return 0;
}

// ---- listeners --------------------------------------------------------------------------------

struct Listener {
  evh_port_id port;
  evh_isolate* isolate;  // one reference
  bool errors;
};
constexpr const char* kListenerType = "evh.listener";

int listener_gc(lua_State* L) {
  auto* l = static_cast<Listener*>(luaL_checkudata(L, 1, kListenerType));
  if (l->isolate != nullptr) (void)evh_isolate_release(l->isolate);
  l->isolate = nullptr;
  return 0;
}

// listener:cancel(): no more calls; idempotent.
int listener_cancel(lua_State* L) {
  auto* l = static_cast<Listener*>(luaL_checkudata(L, 1, kListenerType));
  State& st = *State::of(L);
  if (l->isolate != nullptr && st.ports.count(l->port) != 0) {
    (void)evh_isolate_remove_exit_listener(l->isolate, l->port);
    if (l->errors) (void)evh_isolate_remove_error_listener(l->isolate, l->port);
    st.close_port(l->port);
  }
  return 0;
}

int add_listener(lua_State* L, bool errors) {
  const char* what = errors ? "on_error" : "on_exit";
  evh_isolate* target = isolate_of(L, 1, what);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  State& st = *State::of(L);
  if (!errors && target == st.self) {
    return luaL_error(L,
                      "evh.on_exit: a state cannot wait for its own exit (its listener would "
                      "keep it alive)");
  }
  auto* l = static_cast<Listener*>(lua_newuserdatauv(L, sizeof(Listener), 0));
  *l = Listener{0, nullptr, errors};
  luaL_setmetatable(L, kListenerType);
  (void)evh_isolate_retain(target);
  l->isolate = target;
  lua_pushvalue(L, 2);
  const int handler = luaL_ref(L, LUA_REGISTRYINDEX);
  int error = EVH_OK;
  l->port = st.open_port(errors ? PortKind::error_listener : PortKind::exit_listener, handler,
                         LUA_NOREF, nullptr, error);
  if (l->port == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, handler);
    return raise_evh_error(L, what, error);
  }
  // The exit message also ends an error listener (its port closes, and its state may exit).
  int rc = errors ? evh_isolate_add_error_listener(target, l->port) : EVH_OK;
  if (rc == EVH_OK) rc = evh_isolate_add_exit_listener(target, l->port);
  if (rc != EVH_OK) {
    (void)evh_isolate_remove_error_listener(target, l->port);
    st.close_port(l->port);
    return raise_evh_error(L, what, rc);
  }
  return 1;
}

// evh.on_exit(port, fn) -> listener: fn(reason) once the isolate has exited, reason being
// "normal", "killed" or "error" (at once when it has already exited).
int l_on_exit(lua_State* L) {
  return add_listener(L, false);
}
// evh.on_error(port, fn) -> listener: fn(text) for each error escaping the isolate's callbacks
// (its message and Lua traceback), until it exits.
int l_on_error(lua_State* L) {
  return add_listener(L, true);
}

// evh.errors_are_fatal(bool [, port]): whether an error escaping a callback ends the isolate
// (this one by default). Spawned states start with true, unless spawned with
// {errors_are_fatal = false}.
int l_errors_are_fatal(lua_State* L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  State& st = *State::of(L);
  evh_isolate* target = lua_isnoneornil(L, 2) ? st.self : isolate_of(L, 2, "errors_are_fatal");
  const int rc = evh_isolate_set_errors_fatal(target, lua_toboolean(L, 1));
  if (rc != EVH_OK) return raise_evh_error(L, "errors_are_fatal", rc);
  return 0;
}

// evh.print_errors(bool): whether evh-lua prints this state's escaped errors on stderr (the
// default); error listeners hear them either way.
int l_print_errors(lua_State* L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  State::of(L)->print_errors = lua_toboolean(L, 1) != 0;
  return 0;
}

// os.exit([code]): the whole program ends with `code` (true: 0, false: 1): every state is
// killed and closed, and evh-lua returns the code.
int os_exit(lua_State* L) {
  int code = 0;
  if (lua_isboolean(L, 1)) {
    code = lua_toboolean(L, 1) ? 0 : 1;
  } else {
    code = static_cast<int>(luaL_optinteger(L, 1, 0));
  }
  State& st = *State::of(L);
  const ControlMessage m{ControlMessage::kMagic, ControlMessage::exit_request, code};
  (void)evh_post(st.host.rt, st.host.control, &m, sizeof m, 0);
  (void)evh_isolate_kill(st.self, EVH_IMMEDIATE);
  unwind(L, st);
}

const luaL_Reg kCore[] = {
    {"spawn", &l_spawn},
    {"self", &l_self},
    {"port", &l_port},
    {"receive", &l_receive},
    {"kill", &l_kill},
    {"on_exit", &l_on_exit},
    {"on_error", &l_on_error},
    {"errors_are_fatal", &l_errors_are_fatal},
    {"print_errors", &l_print_errors},
    {nullptr, nullptr},
};

const luaL_Reg kPortMethods[] = {
    {"send", &port_send},
    {"close", &port_close},
    {"id", &port_id},
    {nullptr, nullptr},
};
const luaL_Reg kPortMeta[] = {
    {"__gc", &port_gc},
    {"__eq", &port_eq},
    {"__tostring", &port_tostring},
    {nullptr, nullptr},
};

const luaL_Reg kListenerMethods[] = {{"cancel", &listener_cancel}, {nullptr, nullptr}};
const luaL_Reg kListenerMeta[] = {{"__gc", &listener_gc}, {nullptr, nullptr}};

}  // namespace

void push_port(lua_State* L, evh_port_id id, evh_isolate* isolate) {
  auto* p = static_cast<LuaPort*>(lua_newuserdatauv(L, sizeof(LuaPort), 0));
  p->id = id;
  p->isolate = isolate;
  luaL_setmetatable(L, kPortType);
}

LuaPort* check_port(lua_State* L, int index) {
  return static_cast<LuaPort*>(luaL_checkudata(L, index, kPortType));
}

void new_type(lua_State* L, const char* name, const luaL_Reg* methods, const luaL_Reg* meta,
              const char* methods_field) {
  luaL_newmetatable(L, name);
  if (meta != nullptr) luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, methods_field);
  lua_pop(L, 1);
}

void open_core(lua_State* L) {
  luaL_setfuncs(L, kCore, 0);
  new_type(L, kPortType, kPortMethods, kPortMeta);
  new_type(L, kListenerType, kListenerMethods, kListenerMeta);

  // os.exit ends the program through main(), never with exit() on an isolate's thread.
  lua_getglobal(L, "os");
  lua_pushcfunction(L, &os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
}

void open_evh(lua_State* L) {
  lua_newtable(L);
  open_core(L);
  open_timers(L);
  open_processes(L);
  open_tcp(L);
  lua_pushfstring(L, "evh-lua %s", evh_version_string());
  lua_setfield(L, -2, "version");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "evh");
  lua_pop(L, 2);
  lua_setglobal(L, "evh");
}

}  // namespace evh_lua
