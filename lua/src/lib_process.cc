// lua/src/lib_process.cc — the `evh` module's child processes and signals: spawn_process (output
// streamed to Lua functions, stdin writes, kill) and evh.signal.
#include <signal.h>

#include <cstring>
#include <new>
#include <string>

#include "state.h"

namespace evh_lua {
namespace {

struct SignalName {
  const char* name;
  int number;
};
constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ABRT", SIGABRT},
    {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},
    {"ALRM", SIGALRM},     {"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},
    {"STOP", SIGSTOP},     {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
    {"WINCH", SIGWINCH},   {"URG", SIGURG},   {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"SYS", SIGSYS},
};

// A signal as a number, from "TERM", "SIGTERM" or 15.
int check_signal(lua_State* L, int index, int fallback) {
  if (lua_isnoneornil(L, index) && fallback != 0) return fallback;
  if (lua_isinteger(L, index)) return static_cast<int>(lua_tointeger(L, index));
  const char* name = luaL_checkstring(L, index);
  if (std::strncmp(name, "SIG", 3) == 0) name += 3;
  for (const SignalName& s : kSignals) {
    if (std::strcmp(s.name, name) == 0) return s.number;
  }
  luaL_argerror(L, index, "a signal: a name such as \"TERM\" or \"SIGTERM\", or a number");
  return 0;
}

const char* signal_name(int number) {
  for (const SignalName& s : kSignals) {
    if (s.number == number) return s.name;
  }
  return "?";
}

// ---- processes --------------------------------------------------------------------------------

// The process object: its handle, its events port (0 once it has exited), and the stdin bytes
// the pipe has not taken yet. User values: 1 on_stdout, 2 on_stderr, 3 on_exit.
struct LuaProcess {
  evh_process* process;
  evh_port_id port;
  std::string* pending;  // null when empty
  bool close_after_flush;
  bool stdin_closed;
  bool exited;
  int pid;
  int exit_code;
};
constexpr const char* kProcessType = "evh.process";
constexpr int kOnStdout = 1;
constexpr int kOnStderr = 2;
constexpr int kOnExit = 3;

LuaProcess* check_process(lua_State* L, int index) {
  return static_cast<LuaProcess*>(luaL_checkudata(L, index, kProcessType));
}

void drop_pending(LuaProcess* p) {
  delete p->pending;
  p->pending = nullptr;
}

int process_gc(lua_State* L) {
  LuaProcess* p = check_process(L, 1);
  drop_pending(p);
  if (p->process != nullptr) (void)evh_process_release(p->process);
  p->process = nullptr;
  return 0;
}

// Writes what stdin can take now; the rest waits for EVH_PROCESS_STDIN_READY. 0 or an error.
int flush_stdin(LuaProcess* p) {
  while (p->pending != nullptr) {
    const int64_t n = evh_process_write_stdin(p->process, p->pending->data(), p->pending->size());
    if (n < 0) {
      drop_pending(p);
      return static_cast<int>(n);
    }
    if (static_cast<std::size_t>(n) < p->pending->size()) {
      p->pending->erase(0, static_cast<std::size_t>(n));
      return EVH_OK;
    }
    drop_pending(p);
  }
  if (p->close_after_flush && !p->stdin_closed) {
    p->stdin_closed = true;
    (void)evh_process_close_stdin(p->process);
  }
  return EVH_OK;
}

int push_result(lua_State* L, int rc) {
  if (rc == EVH_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, evh_strerror(rc));
  return 2;
}

// proc:write(bytes) -> true | false, reason. Never blocks: what the pipe cannot take now is kept
// and written, in order, as it drains.
int process_write(lua_State* L) {
  LuaProcess* p = check_process(L, 1);
  std::size_t n = 0;
  const char* s = luaL_checklstring(L, 2, &n);
  if (p->process == nullptr || p->stdin_closed || p->close_after_flush) {
    return push_result(L, -EPIPE);
  }
  if (p->pending == nullptr) {
    const int64_t w = evh_process_write_stdin(p->process, s, n);
    if (w < 0) return push_result(L, static_cast<int>(w));
    s += w;
    n -= static_cast<std::size_t>(w);
    if (n == 0) return push_result(L, EVH_OK);
  }
  bool ok = true;
  try {
    if (p->pending == nullptr) p->pending = new std::string;
    p->pending->append(s, n);
  } catch (const std::bad_alloc&) {
    ok = false;
  }
  return push_result(L, ok ? EVH_OK : EVH_ENOMEM);
}

// proc:close_stdin(): the child reads end of file once what was written has been taken.
int process_close_stdin(lua_State* L) {
  LuaProcess* p = check_process(L, 1);
  if (p->process == nullptr || p->stdin_closed) return 0;
  p->close_after_flush = true;
  (void)flush_stdin(p);
  return 0;
}

// proc:kill([signal]) -> true | false, reason. SIGTERM by default.
int process_kill(lua_State* L) {
  LuaProcess* p = check_process(L, 1);
  const int sig = check_signal(L, 2, SIGTERM);
  if (p->process == nullptr) return push_result(L, -ESRCH);
  return push_result(L, evh_process_kill(p->process, sig));
}

// proc.pid, proc.exit_code (nil until it exited), and the methods.
int process_index(lua_State* L) {
  LuaProcess* p = check_process(L, 1);
  const char* key = luaL_checkstring(L, 2);
  if (std::strcmp(key, "pid") == 0) {
    lua_pushinteger(L, p->pid);
  } else if (std::strcmp(key, "exit_code") == 0) {
    if (p->exited) {
      lua_pushinteger(L, p->exit_code);
    } else {
      lua_pushnil(L);
    }
  } else {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, key);
  }
  return 1;
}

// Collects the strings of an array into a NULL-terminated array of pointers in a userdata left on
// the stack (the strings stay referenced by the table at `table`, also on the stack).
const char** string_array(lua_State* L, int table, const char* what) {
  const auto n = static_cast<std::size_t>(lua_rawlen(L, table));
  auto** out = static_cast<const char**>(lua_newuserdatauv(L, (n + 1) * sizeof(char*), 0));
  for (std::size_t i = 0; i < n; ++i) {
    lua_rawgeti(L, table, static_cast<lua_Integer>(i + 1));
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "evh.spawn_process: %s[%d] is not a string", what, static_cast<int>(i + 1));
    out[i] = lua_tostring(L, -1);
    lua_pop(L, 1);  // still referenced by the table
  }
  out[n] = nullptr;
  return out;
}

int stdio_mode(lua_State* L, int options, const char* field, int fallback) {
  lua_getfield(L, options, field);
  int mode = fallback;
  if (!lua_isnil(L, -1)) {
    static const char* const kModes[] = {"pipe", "inherit", "null", nullptr};
    mode = luaL_checkoption(L, -1, nullptr, kModes);  // EVH_STDIO_PIPE, _INHERIT, _NULL
  }
  lua_pop(L, 1);
  return mode;
}

// evh.spawn_process{argv = {...}, env = {...}, cwd = "...", stdin = "pipe" | "null" |
// "inherit", on_stdout = fn(chunk, proc), on_stderr = fn(chunk, proc), on_exit = fn(code, proc)}
// -> proc. No shell; argv[1] without a "/" is looked up in PATH. stdout (stderr) is a pipe when
// on_stdout (on_stderr) is given, else inherited. The child is killed if this state exits first.
// `code` is the exit code, or -signal for a death by signal.

// An optional size field of the options table `t`: nil is 0 (evh's default); 0 is `zero_means`
// (the C API's spelling of the C++ API's 0); otherwise a positive integer, as given.
size_t byte_size(lua_State* L, int t, const char* field, size_t zero_means) {
  const int type = lua_getfield(L, t, field);
  size_t out = 0;
  if (type != LUA_TNIL) {
    int is_integer = 0;
    const lua_Integer n = lua_tointegerx(L, -1, &is_integer);
    if (is_integer == 0 || n < 0) {
      return static_cast<size_t>(
          luaL_error(L, "evh.spawn_process: %s must be an integer >= 0", field));
    }
    out = n == 0 ? zero_means : static_cast<size_t>(n);
  }
  lua_pop(L, 1);
  return out;
}

int l_spawn_process(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  State& st = *State::of(L);
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "argv") != LUA_TTABLE) {
    return luaL_error(L, "evh.spawn_process: argv must be a table of strings");
  }
  const char** argv = string_array(L, 2, "argv");  // 3: argv pointers
  if (argv[0] == nullptr) return luaL_error(L, "evh.spawn_process: argv is empty");
  const char** env = nullptr;
  const int env_type = lua_getfield(L, 1, "env");  // 4
  if (env_type == LUA_TTABLE) {
    // Either {"K=V", ...} or {K = "V", ...}.
    lua_newtable(L);  // 5: the "K=V" strings
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 4) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        const char* name = lua_tostring(L, -2);
        const char* value = luaL_tolstring(L, -1, nullptr);
        lua_pushfstring(L, "%s=%s", name, value);
        lua_remove(L, -2);  // the tolstring copy
      } else {
        lua_pushvalue(L, -1);
      }
      lua_rawseti(L, 5, ++n);
      lua_pop(L, 1);
    }
    env = string_array(L, 5, "env");  // 6
  } else if (env_type != LUA_TNIL) {
    return luaL_error(L, "evh.spawn_process: env must be a table");
  }
  lua_settop(L, 6);
  lua_getfield(L, 1, "cwd");  // 7
  const char* cwd = lua_isnil(L, 7) ? nullptr : luaL_checkstring(L, 7);

  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  o.argv = argv;
  o.env = env;
  o.cwd = cwd;
  // Sizes, each optional (nil: evh's default): an integer >= 0, 0 meaning no limit (the window)
  // or never grown (the pipe), as in the C++ API; a bad pipe size is the spawn's error below.
  o.stream_window = byte_size(L, 1, "stream_window", EVH_STREAM_WINDOW_UNLIMITED);
  o.output_pipe_size = byte_size(L, 1, "output_pipe_size", EVH_PIPE_SIZE_KEEP);
  o.stdio[0].mode = stdio_mode(L, 1, "stdin", EVH_STDIO_PIPE);

  auto* p = static_cast<LuaProcess*>(lua_newuserdatauv(L, sizeof(LuaProcess), 3));  // 8
  *p = LuaProcess{nullptr, 0, nullptr, false, false, false, 0, 0};
  luaL_setmetatable(L, kProcessType);
  static const char* const kCallbacks[] = {"on_stdout", "on_stderr", "on_exit"};
  for (int i = 0; i < 3; ++i) {
    lua_getfield(L, 1, kCallbacks[i]);
    if (!lua_isnil(L, -1)) luaL_checktype(L, -1, LUA_TFUNCTION);
    lua_setiuservalue(L, 8, i + 1);
  }
  lua_getiuservalue(L, 8, kOnStdout);
  o.stdio[1].mode = lua_isnil(L, -1) ? EVH_STDIO_INHERIT : EVH_STDIO_PIPE;
  lua_getiuservalue(L, 8, kOnStderr);
  o.stdio[2].mode = lua_isnil(L, -1) ? EVH_STDIO_INHERIT : EVH_STDIO_PIPE;
  lua_settop(L, 8);
  p->stdin_closed = o.stdio[0].mode != EVH_STDIO_PIPE;

  lua_pushvalue(L, 8);
  const int object = luaL_ref(L, LUA_REGISTRYINDEX);
  int error = EVH_OK;
  p->port = st.open_port(PortKind::process, LUA_NOREF, object, p, error);
  if (p->port == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, object);
    return raise_evh_error(L, "spawn_process", error);
  }
  o.events = p->port;
  o.flags = EVH_PROCESS_KILL_ON_PARENT_DEATH;
  o.tie_to = st.self;
  char why[256];
  o.error = why;
  o.error_capacity = sizeof why;
  const int rc = evh_process_spawn(st.host.rt, &o, &p->process);
  if (rc != EVH_OK) {
    st.close_port(p->port);
    p->port = 0;
    return luaL_error(L, "evh.spawn_process: %s", why[0] != '\0' ? why : evh_strerror(rc));
  }
  p->pid = evh_process_pid(p->process);
  return 1;
}

struct ProcessCall {
  int object;
  int which;  // kOnStdout, kOnStderr, kOnExit
  const void* data;
  std::size_t size;
  int code;
};

int process_callback(lua_State* L) {
  const auto* c = static_cast<const ProcessCall*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->object);
  if (lua_getiuservalue(L, -1, c->which) == LUA_TNIL) return 0;
  if (c->which == kOnExit) {
    lua_pushinteger(L, c->code);
  } else {
    lua_pushlstring(L, static_cast<const char*>(c->data), c->size);
  }
  lua_pushvalue(L, -3);
  lua_call(L, 2, 0);
  return 0;
}

// ---- signals ----------------------------------------------------------------------------------

struct LuaSignal {
  evh_signal_watcher* watcher;
  evh_port_id port;
  int signal;
};
constexpr const char* kSignalType = "evh.signal";

int signal_gc(lua_State* L) {
  auto* s = static_cast<LuaSignal*>(luaL_checkudata(L, 1, kSignalType));
  if (s->watcher != nullptr) (void)evh_signal_destroy(s->watcher);
  s->watcher = nullptr;
  return 0;
}

// watcher:stop(): no more calls (the previous disposition returns with the last watcher).
int signal_stop(lua_State* L) {
  auto* s = static_cast<LuaSignal*>(luaL_checkudata(L, 1, kSignalType));
  if (s->watcher != nullptr) (void)evh_signal_stop(s->watcher);
  if (s->port != 0) State::of(L)->close_port(s->port);
  s->port = 0;
  return 0;
}

// evh.signal(name, fn) -> watcher: fn(name, count) for every occurrence (close ones may come as
// one call with count > 1). The watcher keeps its state alive until watcher:stop().
int l_signal(lua_State* L) {
  const int sig = check_signal(L, 1, 0);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  State& st = *State::of(L);
  auto* s = static_cast<LuaSignal*>(lua_newuserdatauv(L, sizeof(LuaSignal), 1));
  *s = LuaSignal{nullptr, 0, sig};
  luaL_setmetatable(L, kSignalType);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  const int object = luaL_ref(L, LUA_REGISTRYINDEX);
  int error = EVH_OK;
  s->port = st.open_port(PortKind::signal, LUA_NOREF, object, s, error);
  if (s->port == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, object);
    return raise_evh_error(L, "signal", error);
  }
  const int rc = evh_signal_watch(st.host.rt, sig, s->port, &s->watcher);
  if (rc != EVH_OK) {
    st.close_port(s->port);
    s->port = 0;
    return raise_evh_error(L, "signal", rc);
  }
  return 1;
}

struct SignalCall {
  int object;
  int signal;
  uint64_t count;
};

int signal_callback(lua_State* L) {
  const auto* c = static_cast<const SignalCall*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->object);
  lua_getiuservalue(L, -1, 1);
  lua_pushstring(L, signal_name(c->signal));
  lua_pushinteger(L, static_cast<lua_Integer>(c->count));
  lua_call(L, 2, 0);
  return 0;
}

}  // namespace

void on_process_event(State& st, PortEntry& entry, evh_message* message) {
  evh_process_event ev;
  if (evh_message_process_event(message, &ev) != EVH_OK) return;
  auto* p = static_cast<LuaProcess*>(entry.native);
  const int object = entry.object;
  const evh_port_id port = p->port;
  switch (ev.kind) {
    case EVH_PROCESS_STDOUT:
    case EVH_PROCESS_STDERR: {
      ProcessCall c{object, ev.kind == EVH_PROCESS_STDOUT ? kOnStdout : kOnStderr, ev.data, ev.size,
                    0};
      (void)st.protected_c(&process_callback, &c);
      return;
    }
    case EVH_PROCESS_STDIN_READY:
      (void)flush_stdin(p);
      return;
    case EVH_PROCESS_EXIT: {
      p->exited = true;
      p->exit_code = ev.exit_code;
      p->stdin_closed = true;
      drop_pending(p);
      // The last event: after the call its port closes (and the object may be collected).
      ProcessCall c{object, kOnExit, nullptr, 0, ev.exit_code};
      (void)st.protected_c(&process_callback, &c);
      p->port = 0;
      st.close_port(port);
      return;
    }
    default:
      return;
  }
}

void on_signal_event(State& st, PortEntry& entry, evh_message* message) {
  evh_signal_event ev;
  if (evh_message_signal_event(message, &ev) != EVH_OK) return;
  SignalCall c{entry.object, ev.signal, ev.count};
  (void)st.protected_c(&signal_callback, &c);
}

void open_processes(lua_State* L) {
  lua_pushcfunction(L, &l_spawn_process);
  lua_setfield(L, -2, "spawn_process");
  lua_pushcfunction(L, &l_signal);
  lua_setfield(L, -2, "signal");

  static const luaL_Reg kProcessMethods[] = {
      {"write", &process_write},
      {"close_stdin", &process_close_stdin},
      {"kill", &process_kill},
      {nullptr, nullptr},
  };
  static const luaL_Reg kProcessMeta[] = {
      {"__index", &process_index}, {"__gc", &process_gc}, {nullptr, nullptr}};
  new_type(L, kProcessType, kProcessMethods, kProcessMeta, "methods");  // process_index reads it

  static const luaL_Reg kSignalMethods[] = {{"stop", &signal_stop}, {nullptr, nullptr}};
  static const luaL_Reg kSignalMeta[] = {{"__gc", &signal_gc}, {nullptr, nullptr}};
  new_type(L, kSignalType, kSignalMethods, kSignalMeta);
}

}  // namespace evh_lua
