// lua/src/state.h — one Lua state as one evh isolate, built on <evh/evh.h> alone.
//
// A `State` is the user data of one isolate: evh hands it to every callback of that isolate
// (its message handler, its timers, its microtasks) and releases it exactly once, when the
// isolate exits (`destroy_state`), which is where the lua_State is closed. Nothing of a State is
// touched outside its isolate's turns, except by `destroy_state` after the last turn and by the
// runtime's uncaught-error hook (which reads `print_errors` on the isolate's own thread).
//
// Lua is compiled as C: an error is a longjmp, which skips C++ destructors. So a function that
// Lua calls keeps no object with a destructor alive across a call that may raise, and C++
// exceptions never cross into Lua (they are caught in the function that may throw them).
#pragma once

#include <evh/evh.h>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

#include <atomic>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "heap.h"

namespace evh_lua {

// What the whole program shares: the runtime, the port of main()'s receiver, the count of live
// states (the exit rule as evh-lua sees it), and an exit request from os.exit.
struct Host {
  evh_runtime* rt = nullptr;
  evh_port_id control = 0;
  // Every state that exists, started or not. It only reaches zero once: a state is spawned by a
  // live state (or by main() before the first one runs), so the count never climbs back.
  std::atomic<std::int64_t> live{0};
};

// Messages main()'s receiver gets from the states (besides the main state's exit message).
struct ControlMessage {
  static constexpr std::uint32_t kMagic = 0x65766c63;  // "evlc"
  enum Kind : std::uint32_t { all_done = 1, exit_request = 2 };
  std::uint32_t magic = kMagic;
  Kind kind = all_done;
  int code = 0;
};

// A value in transit: the encoded bytes and the isolate handles its ports carry (each one
// reference, released by the finalizer unless the receiver took it). Posted as a native payload
// only when there are handles; plain bytes otherwise.
struct Payload {
  static constexpr std::uint32_t kMagic = 0x65766c70;  // "evlp"
  std::uint32_t magic = kMagic;
  std::string bytes;
  std::vector<evh_isolate*> handles;

  Payload() = default;
  Payload(Payload&& other) noexcept
      : bytes(std::move(other.bytes)), handles(std::exchange(other.handles, {})) {}
  Payload& operator=(Payload&& other) noexcept;
  Payload(const Payload&) = delete;
  Payload& operator=(const Payload&) = delete;
  ~Payload() { release(); }
  // Drops the references no port took.
  void release() noexcept;
};
void free_payload(void* payload) noexcept;

// What a port of a state is for; its messages are dispatched on this.
enum class PortKind : std::uint8_t {
  user,            // evh.port(fn): Lua values, handed to fn
  exit_listener,   // evh.on_exit: one exit message
  error_listener,  // evh.on_error: error messages, then the exit message that ends it
  process,         // evh.spawn_process: a child's events
  signal,          // evh.signal: signal events
  socket,          // evh.listen / evh.connect / accepted connections: fd readiness
};

struct PortEntry {
  PortKind kind = PortKind::user;
  int handler = LUA_NOREF;  // the Lua function (user ports and listeners)
  int object = LUA_NOREF;   // the Lua object the port belongs to (its userdata)
  void* native = nullptr;   // that object's C side (sockets, processes)
};

class State {
 public:
  // A state for spawned code: the lua_State is made on the isolate's first turn.
  State(Host& host, std::string source, std::string chunkname, Payload args) noexcept;
  // The main script's state: made now, on the calling thread, with the chunk loaded. On failure
  // returns null with the message in `error` (a script that cannot be parsed).
  static State* for_main(Host& host, const std::string& source, const std::string& chunkname,
                         const std::vector<std::string>& script_args, const std::string& script,
                         std::string& error);
  ~State();
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  static State* of(lua_State* L) noexcept { return *static_cast<State**>(lua_getextraspace(L)); }

  // The isolate callbacks (evh_message_fn, evh_finalizer).
  static void on_message(evh_isolate* self, evh_message* message, void* user);
  static void destroy(void* user) noexcept;

  // Calls the function below `nargs` arguments on the stack, protected, with a traceback; an
  // error is reported to the isolate (and the stack is left as it was before the function).
  // Returns false when the call raised.
  bool call(int nargs);
  // Protected call of a C function with `arg` as a light userdata: for work that may raise
  // outside a Lua call (decoding a message, pushing event data).
  bool protected_c(lua_CFunction f, void* arg);

  // Own turn: the isolate handle evh hands the callbacks. Set at every entry.
  evh_isolate* self = nullptr;
  Host& host;
  lua_State* L = nullptr;
  evh_port_id main_port = 0;
  bool main_open = true;
  int main_handler = LUA_NOREF;
  // The isolate is being killed (or os.exit ran): unwinding, nothing is reported.
  bool dying = false;
  // lua_close is running: no evh call on our own turn is possible.
  bool closing = false;
  bool print_errors = true;
  bool warnings = false;  // warn("@on") / warn("@off"), as in the standalone interpreter
  std::unordered_map<evh_port_id, PortEntry> ports;
  // Scratch space reused by every send (one state runs on one thread at a time).
  std::string scratch;
  std::vector<evh_isolate*> scratch_handles;

  // Opens a port of this state for `kind`; returns 0 on failure (with `error` set).
  evh_port_id open_port(PortKind kind, int handler, int object, void* native, int& error);
  // Closes one of this state's ports and forgets its entry (dropping its references).
  void close_port(evh_port_id port);

 private:
  void start(evh_message* first);
  bool make_lua(std::string& error);
  void after_main_chunk();
  void dispatch(evh_message* message);
  void report(const char* what);

  // Declared first among the members Lua uses: it outlives lua_close (in ~State).
  Heap heap_;
  std::string source_;
  std::string chunkname_;
  Payload args_;
  bool started_ = false;
  bool preloaded_ = false;  // the main script: L made and the chunk on its stack
};

// The light userdata a killed state raises to unwind (never caught for good: the hook raises it
// again at every instruction).
extern char kKilled;

// Called once for every new lua_State: the `evh` module, os.exit, the metatables, the hook.
void open_evh(lua_State* L);

// Each part of the module adds its functions to the `evh` table on top of the stack and its
// metatables to the registry.
void open_core(lua_State* L);
void open_timers(lua_State* L);
void open_processes(lua_State* L);
void open_tcp(lua_State* L);

// Registers the userdata type `name` (luaL_newmetatable): its metatable holds the functions of
// `meta` (__gc, __eq, ...; may be null) and a table of `methods` under `methods_field`, which is
// __index unless an __index function in `meta` reads the methods from there. The stack is left
// as it was.
void new_type(lua_State* L, const char* name, const luaL_Reg* methods, const luaL_Reg* meta,
              const char* methods_field = "__index");

// Dispatch of events for ports of the other parts.
void on_process_event(State& st, PortEntry& entry, evh_message* message);
void on_signal_event(State& st, PortEntry& entry, evh_message* message);
void on_socket_event(State& st, PortEntry& entry, evh_message* message);

// The `evh.port` userdata: a port id, and the handle of the isolate it belongs to when known
// (one reference, released by its __gc), which is what evh.kill and the listeners need.
struct LuaPort {
  evh_port_id id;
  evh_isolate* isolate;
};
inline constexpr const char* kPortType = "evh.port";
// Pushes a new port object; takes the reference `isolate` holds (may be null).
void push_port(lua_State* L, evh_port_id id, evh_isolate* isolate);
LuaPort* check_port(lua_State* L, int index);

// Raises a Lua error "evh.<what>: <evh_strerror(error)>".
[[noreturn]] int raise_evh_error(lua_State* L, const char* what, int error);

}  // namespace evh_lua
