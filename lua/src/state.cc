// lua/src/state.cc — one Lua state as one isolate: its life, its turns, its errors (state.h).
#include "state.h"

extern "C" {
#include <lualib.h>
}

#include <cstdio>
#include <cstring>
#include <new>
#include <utility>

#include "codec.h"

namespace evh_lua {

char kKilled;

namespace {

// Instructions between two looks at the isolate's interrupt flag: one atomic load per thousand
// instructions, so a kill stops a loop within microseconds.
constexpr int kHookCount = 1000;

// The count hook, a safe point every kHookCount instructions: pending pings are answered, a
// message this callback posted to a state of the same pool is handed to an idle worker (it would
// otherwise wait for the end of a long loop), and a kill (or os.exit) unwinds the running Lua
// code. Once dying, the hook runs at every instruction and raises again, so a pcall in the script
// cannot keep the state running: the error reaches the callback's own pcall.
void hook(lua_State* L, lua_Debug*) {
  State* st = State::of(L);
  if (!st->dying) {
    if (evh_isolate_handle_interrupts(st->self) != EVH_EDEAD) return;
    st->dying = true;
  }
  lua_sethook(L, &hook, LUA_MASKCOUNT, 1);
  lua_pushlightuserdata(L, &kKilled);
  lua_error(L);
}

// The message handler of every protected call: the error with a traceback (a kill's marker as
// it is).
int traceback(lua_State* L) {
  if (lua_touserdata(L, 1) == &kKilled) return 1;
  const char* msg = lua_tostring(L, 1);
  if (msg == nullptr) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int open_all(lua_State* L) {
  luaL_openlibs(L);
  open_evh(L);
  return 0;
}

// Runs a spawned state's chunk (argument 1) with the spawn's arguments, decoded here, under the
// caller's protection.
int run_spawned(lua_State* L) {
  auto* args = static_cast<Payload*>(lua_touserdata(L, 2));
  lua_settop(L, 1);
  const int n =
      decode(L, args->bytes.data(), args->bytes.size(), args->handles.data(), args->handles.size());
  lua_call(L, n, 0);
  return 0;
}

// A message for a user port (or the main port): decoded and handed to the handler with the
// port it came to.
struct Delivery {
  int handler;
  int port_object;  // LUA_NOREF for the main port: evh.self() names it
  const void* data;
  std::size_t size;
  evh_isolate** handles;
  std::size_t handle_count;
};

int deliver(lua_State* L) {
  const auto* d = static_cast<const Delivery*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->handler);
  int nargs = decode(L, d->data, d->size, d->handles, d->handle_count);
  if (d->port_object != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->port_object);
    ++nargs;
  }
  lua_call(L, nargs, 0);
  return 0;
}

// Points `d` at the Lua values a message carries: plain bytes, or a Payload with the isolate
// handles of its ports. False for a message of another kind (it is dropped).
bool read_values(evh_message* message, Delivery& d) {
  if (evh_message_kind(message) == EVH_MESSAGE_BYTES) {
    d.data = evh_message_data(message, &d.size);
    return true;
  }
  auto* p = static_cast<Payload*>(evh_message_native(message));
  if (p == nullptr || p->magic != Payload::kMagic) return false;
  d.data = p->bytes.data();
  d.size = p->bytes.size();
  d.handles = p->handles.data();
  d.handle_count = p->handles.size();
  return true;
}

const char* exit_reason(int reason) {
  switch (reason) {
    case EVH_EXIT_NORMAL:
      return "normal";
    case EVH_EXIT_KILLED:
      return "killed";
    default:
      return "error";
  }
}

struct Notice {
  int handler;
  const char* text;
  std::size_t size;
};

// An exit or error listener's function, called with one string.
int notify(lua_State* L) {
  const auto* n = static_cast<const Notice*>(lua_touserdata(L, 1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, n->handler);
  lua_pushlstring(L, n->text, n->size);
  lua_call(L, 1, 0);
  return 0;
}

}  // namespace

void Payload::release() noexcept {
  for (evh_isolate* h : handles) {
    if (h != nullptr) (void)evh_isolate_release(h);
  }
  handles.clear();
}

Payload& Payload::operator=(Payload&& other) noexcept {
  if (this != &other) {
    release();
    bytes = std::move(other.bytes);
    handles = std::exchange(other.handles, {});
  }
  return *this;
}

void free_payload(void* payload) noexcept {
  delete static_cast<Payload*>(payload);
}

State::State(Host& h, std::string source, std::string chunkname, Payload args) noexcept
    : host(h),
      source_(std::move(source)),
      chunkname_(std::move(chunkname)),
      args_(std::move(args)) {}

State::~State() {
  if (L != nullptr) {
    // No Lua code of this state runs on its turn again: __gc metamethods may run, but without
    // the hook (it would ask evh about a dead isolate from another thread).
    closing = true;
    lua_sethook(L, nullptr, 0, 0);
    lua_close(L);
    L = nullptr;
  }
}

namespace {

int panic(lua_State* L) {
  const char* msg = lua_tostring(L, -1);
  std::fprintf(stderr, "evh-lua: PANIC: unprotected error in call to Lua API (%s)\n",
               msg != nullptr ? msg : "?");
  std::fflush(stderr);
  return 0;  // Lua aborts
}

// Warnings (warn(), errors in __gc) go to stderr once a script turns them on with warn("@on").
void warning(void* ud, const char* msg, int tocont) {
  auto* st = static_cast<State*>(ud);
  static thread_local bool continuing = false;
  if (!continuing && tocont == 0 && msg[0] == '@') {
    if (std::strcmp(msg, "@on") == 0) st->warnings = true;
    if (std::strcmp(msg, "@off") == 0) st->warnings = false;
    return;
  }
  if (st->warnings) {
    if (!continuing) std::fputs("Lua warning: ", stderr);
    std::fputs(msg, stderr);
    if (tocont == 0) std::fputc('\n', stderr);
  }
  continuing = tocont != 0;
}

}  // namespace

bool State::make_lua(std::string& error) {
  L = lua_newstate(&Heap::alloc, &heap_);
  if (L == nullptr) {
    error = "not enough memory for a Lua state";
    return false;
  }
  *static_cast<State**>(lua_getextraspace(L)) = this;
  lua_atpanic(L, &panic);
  lua_setwarnf(L, &warning, this);
  lua_sethook(L, &hook, LUA_MASKCOUNT, kHookCount);
  lua_pushcfunction(L, &open_all);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    error = lua_tostring(L, -1) != nullptr ? lua_tostring(L, -1) : "cannot open the libraries";
    return false;
  }
  return true;
}

State* State::for_main(Host& host, const std::string& source, const std::string& chunkname,
                       const std::vector<std::string>& script_args, const std::string& script,
                       std::string& error) {
  auto* st = new State(host, std::string(), chunkname, Payload{});
  if (!st->make_lua(error)) {
    delete st;
    return nullptr;
  }
  lua_State* L = st->L;
  // `arg` as the standalone interpreter sets it: the script at 0, its arguments from 1.
  lua_createtable(L, static_cast<int>(script_args.size()), 2);
  lua_pushstring(L, "evh-lua");
  lua_rawseti(L, -2, -1);
  lua_pushlstring(L, script.data(), script.size());
  lua_rawseti(L, -2, 0);
  for (std::size_t i = 0; i < script_args.size(); ++i) {
    lua_pushlstring(L, script_args[i].data(), script_args[i].size());
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_setglobal(L, "arg");
  if (luaL_loadbufferx(L, source.data(), source.size(), chunkname.c_str(), nullptr) != LUA_OK) {
    error = lua_tostring(L, -1);
    delete st;
    return nullptr;
  }
  // The chunk's `...`: the arguments, as strings.
  luaL_checkstack(L, static_cast<int>(script_args.size()) + 1, "too many arguments");
  for (const std::string& a : script_args) lua_pushlstring(L, a.data(), a.size());
  st->preloaded_ = true;
  return st;
}

void State::destroy(void* user) noexcept {
  auto* st = static_cast<State*>(user);
  Host& host = st->host;
  delete st;
  // acq_rel: the last state's exit is ordered after every other state's.
  if (host.live.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    const ControlMessage m{ControlMessage::kMagic, ControlMessage::all_done, 0};
    (void)evh_post(host.rt, host.control, &m, sizeof m, 0);
  }
}

void State::on_message(evh_isolate* self, evh_message* message, void* user) {
  auto* st = static_cast<State*>(user);
  st->self = self;
  if (st->dying) return;
  if (!st->started_) {
    st->start(message);
    return;
  }
  st->dispatch(message);
}

void State::report(const char* what) {
  (void)evh_isolate_report_error(self, what);
}

void State::start(evh_message*) {
  started_ = true;
  main_port = evh_isolate_main_port(self);
  if (preloaded_) {
    const int nargs = lua_gettop(L) - 1;
    (void)call(nargs);
  } else {
    std::string error;
    if (!make_lua(error)) {
      report(error.c_str());
      close_port(main_port);
      return;
    }
    const int loaded = luaL_loadbufferx(L, source_.data(), source_.size(), chunkname_.c_str(), "t");
    std::string().swap(source_);
    if (loaded != LUA_OK) {
      report(lua_tostring(L, -1));
      lua_settop(L, 0);
      close_port(main_port);
      return;
    }
    lua_pushcfunction(L, &run_spawned);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, &args_);
    (void)call(2);
    args_ = Payload{};  // releases the handles no port took
  }
  after_main_chunk();
}

void State::after_main_chunk() {
  // The main port stays open only for a state that asked for its messages (evh.receive): a state
  // with nothing left to do exits by the exit rule.
  if (main_open && main_handler == LUA_NOREF && !dying) close_port(main_port);
}

void State::dispatch(evh_message* message) {
  const evh_port_id port = evh_message_port(message);
  if (port == main_port) {
    if (main_handler == LUA_NOREF) return;
    Delivery d{main_handler, LUA_NOREF, nullptr, 0, nullptr, 0};
    if (read_values(message, d)) (void)protected_c(&deliver, &d);
    return;
  }
  auto it = ports.find(port);
  if (it == ports.end()) return;  // closed since the message was posted
  // A copy: the handler may open or close ports (and so move the table's entries).
  const PortEntry entry = it->second;
  switch (entry.kind) {
    case PortKind::user: {
      Delivery d{entry.handler, entry.object, nullptr, 0, nullptr, 0};
      if (read_values(message, d)) (void)protected_c(&deliver, &d);
      return;
    }
    case PortKind::exit_listener:
    case PortKind::error_listener: {
      evh_isolate_exit exit;
      if (evh_message_isolate_exit(message, &exit) == EVH_OK) {
        // The handler reference outlives the entry for this one call.
        const int handler = entry.handler;
        it->second.handler = LUA_NOREF;
        close_port(port);
        if (entry.kind == PortKind::exit_listener) {
          const char* reason = exit_reason(exit.reason);
          Notice n{handler, reason, std::strlen(reason)};
          (void)protected_c(&notify, &n);
        }
        luaL_unref(L, LUA_REGISTRYINDEX, handler);
        return;
      }
      if (entry.kind == PortKind::error_listener) {
        const int length = evh_message_isolate_error(message, nullptr, nullptr, 0);
        if (length < 0) return;
        std::string text(static_cast<std::size_t>(length) + 1, '\0');
        (void)evh_message_isolate_error(message, nullptr, text.data(), text.size());
        Notice n{entry.handler, text.data(), static_cast<std::size_t>(length)};
        (void)protected_c(&notify, &n);
      }
      return;
    }
    case PortKind::process:
      on_process_event(*this, it->second, message);
      return;
    case PortKind::signal:
      on_signal_event(*this, it->second, message);
      return;
    case PortKind::socket:
      on_socket_event(*this, it->second, message);
      return;
  }
}

bool State::call(int nargs) {
  const int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, &traceback);
  lua_insert(L, fn);
  const bool ok = lua_pcall(L, nargs, 0, fn) == LUA_OK;
  if (!ok && !dying && lua_touserdata(L, -1) != &kKilled) {
    const char* what = lua_tostring(L, -1);
    report(what != nullptr ? what : "(error object is not a string)");
  }
  lua_settop(L, fn - 1);
  return ok;
}

bool State::protected_c(lua_CFunction f, void* arg) {
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, arg);
  return call(1);
}

evh_port_id State::open_port(PortKind kind, int handler, int object, void* native, int& error) {
  evh_port_id id = 0;
  error = evh_isolate_open_port(self, &id);
  if (error != EVH_OK) return 0;
  try {
    ports.emplace(id, PortEntry{kind, handler, object, native});
  } catch (const std::bad_alloc&) {
    (void)evh_isolate_close_port(self, id);
    error = EVH_ENOMEM;
    return 0;
  }
  return id;
}

void State::close_port(evh_port_id port) {
  if (port == main_port) {
    if (!main_open) return;
    main_open = false;
    if (main_handler != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, main_handler);
    main_handler = LUA_NOREF;
    (void)evh_isolate_close_port(self, port);
    return;
  }
  auto it = ports.find(port);
  if (it == ports.end()) return;
  const PortEntry e = it->second;
  ports.erase(it);
  (void)evh_isolate_close_port(self, port);
  if (L != nullptr) {
    luaL_unref(L, LUA_REGISTRYINDEX, e.handler);
    luaL_unref(L, LUA_REGISTRYINDEX, e.object);
  }
}

int raise_evh_error(lua_State* L, const char* what, int error) {
  luaL_error(L, "evh.%s: %s", what, evh_strerror(error));
  __builtin_unreachable();
}

}  // namespace evh_lua
