// capi/handles.h — what the C API's opaque handles are, and the helpers every C call uses.
//
// The C API is a thin layer over the public C++ API only (`<evh/...>`): no call here reaches into
// another part's internals. Each handle is a small struct that holds the C++ object (or a
// reference to it) plus a magic word, so that a NULL pointer or a pointer to something else is
// answered with EVH_EINVAL, and the runtime it came from, so that a handle of another runtime is
// answered with EVH_EFOREIGN. The structs are defined in the global namespace: evh.h declares
// them there (`typedef struct evh_runtime evh_runtime;`).
#pragma once

#include <evh/evh.h>
#include <evh/isolate.h>
#include <evh/isolate_mutex.h>
#include <evh/process.h>
#include <evh/receiver.h>
#include <evh/runtime.h>
#include <evh/signal.h>
#include <evh/timer.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

struct evh_runner;

struct evh_runtime {
  static constexpr std::uint32_t kMagic = 0x65767274;  // "evrt"
  std::uint32_t magic = kMagic;
  std::unique_ptr<evh::Runtime> rt;
  void (*on_uncaught)(evh_isolate*, const char*, void*) noexcept = nullptr;
  void* on_uncaught_user = nullptr;
  // Handles taken from this runtime and not yet released: isolate handles (one per reference),
  // receivers, processes, signal watchers. evh_runtime_destroy refuses while any is held.
  std::atomic<std::int64_t> handles{0};
  std::atomic<bool> shut_down{false};
  std::mutex shutdown_mu;  // serialises evh_runtime_shutdown
  // The process manager, created by the first spawn. Spawns hold the lock shared; shutdown
  // takes it exclusively to destroy the manager (before the Runtime, as the C++ API requires).
  std::shared_mutex processes_mu;
  std::unique_ptr<evh::ProcessManager> processes;
  bool processes_closed = false;
  // Runners handed out; they must outlive every isolate bound to them, so the runtime keeps them
  // until it is destroyed.
  std::mutex runners_mu;
  std::vector<std::unique_ptr<evh_runner>> runners;
};

struct evh_isolate {
  static constexpr std::uint32_t kMagic = 0x65766973;  // "evis"
  std::uint32_t magic = kMagic;
  // One reference for the isolate itself (dropped when it exits: its handler's destroy_user)
  // and one per handle the caller holds.
  std::atomic<int> refs{2};
  evh_runtime* runtime = nullptr;
  // Set by the spawning thread once spawn() returns; read by holders of the handle, who got it
  // from that thread. Callbacks use the Isolate& evh hands them instead.
  evh::IsolateRef ref;
  evh::Isolate* isolate = nullptr;
  evh_message_fn on_message = nullptr;
  evh_batch_fn on_batch = nullptr;    // instead of on_message (evh_isolate_spawn_batch)
  evh_packed_fn on_packed = nullptr;  // beside on_batch (evh_isolate_spawn_packed)
  void* user = nullptr;
  evh_finalizer destroy_user = nullptr;
  evh_mailbox_high_water_fn on_high_water = nullptr;  // set at spawn, then read only
  // Own turn only: an error reported with evh_isolate_report_error, raised when the callback
  // returns.
  bool error_pending = false;
  std::string error;
};

struct evh_receiver {
  static constexpr std::uint32_t kMagic = 0x65767278;  // "evrx"
  std::uint32_t magic = kMagic;
  evh_runtime* runtime = nullptr;
  evh::Receiver receiver;
  evh_port_id id = 0;
};

struct evh_runner {
  static constexpr std::uint32_t kMagic = 0x6576726e;  // "evrn"
  std::uint32_t magic = kMagic;
  evh_runtime* runtime = nullptr;
  evh::TaskRunner* runner = nullptr;
  std::unique_ptr<evh::TaskRunner> owned;  // an embedder's runner (callbacks); null: dedicated
};

struct evh_process {
  static constexpr std::uint32_t kMagic = 0x65767072;  // "evpr"
  std::uint32_t magic = kMagic;
  evh_runtime* runtime = nullptr;
  evh::Process process;
};

struct evh_signal_watcher {
  static constexpr std::uint32_t kMagic = 0x65767367;  // "evsg"
  std::uint32_t magic = kMagic;
  evh_runtime* runtime = nullptr;
  evh::SignalWatcher watcher;
};

struct evh_mutex {
  static constexpr std::uint32_t kMagic = 0x65766d78;  // "evmx"
  std::uint32_t magic = kMagic;
  evh::IsolateMutex mutex;
};

namespace evh::capi {

inline constexpr std::uint32_t kFreed = 0xdeadbeef;  // a released handle's magic

// A handle that is one: not NULL, with its type's magic. (After release the memory is gone and
// a check is undefined; the magic is overwritten first so that a prompt reuse is caught.)
template <class H>
bool valid(const H* h) noexcept {
  return h != nullptr && h->magic == H::kMagic;
}

// A std::error_code from the C++ API as a C error code (evh.h's table).
int to_c(std::error_code ec) noexcept;
inline int to_c(const Status& s) noexcept {
  return to_c(s.error());
}

// Runs `f` (which returns an int code), turning any C++ exception into a code: nothing crosses
// the C boundary.
template <class F>
int guarded(F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return EVH_ENOMEM;
  } catch (const std::system_error& e) {
    return to_c(e.code());
  } catch (...) {
    return EVH_EUNKNOWN;
  }
}

// Durations: negative is EVH_EINVAL; a wait's timeout above EVH_DURATION_MAX means no limit
// (clamped there, which keeps `now + timeout` inside int64).
inline bool wait_timeout(std::int64_t ns, std::chrono::nanoseconds& out) noexcept {
  if (ns < 0) return false;
  out = std::chrono::nanoseconds(ns < EVH_DURATION_MAX ? ns : EVH_DURATION_MAX);
  return true;
}
inline bool bounded_duration(std::int64_t ns) noexcept {
  return ns >= 0 && ns <= EVH_DURATION_MAX;
}

inline evh::PortId port_id(evh_port_id id) noexcept {
  return static_cast<evh::PortId>(id);
}
inline evh::Message* from_c(evh_message* m) noexcept {
  return reinterpret_cast<evh::Message*>(m);
}
inline const evh::Message* from_c(const evh_message* m) noexcept {
  return reinterpret_cast<const evh::Message*>(m);
}
inline evh_message* to_c(evh::Message* m) noexcept {
  return reinterpret_cast<evh_message*>(m);
}

// ---- turns: which isolate's callback this thread is running ----
// Set around every callback the C API makes on an isolate's turn (message handler, timer
// callback, microtask), so that own-turn calls are checked in every build (EVH_EWRONGTHREAD) and
// shutdown from inside a callback is refused. Only a check: every call still names its isolate.
struct Turn {
  evh_isolate* handle = nullptr;
  evh::Isolate* isolate = nullptr;
};
Turn& current_turn() noexcept;

class TurnScope {
 public:
  TurnScope(evh_isolate* handle, evh::Isolate& isolate) noexcept : saved_(current_turn()) {
    current_turn() = Turn{handle, &isolate};
    handle->error_pending = false;
  }
  ~TurnScope() { current_turn() = saved_; }
  TurnScope(const TurnScope&) = delete;
  TurnScope& operator=(const TurnScope&) = delete;

  // After the callback returned: an error it reported leaves as an exception, to be caught,
  // counted and reported by evh's worker boundary exactly like a C++ handler's.
  static void raise_reported(evh_isolate* handle);

 private:
  Turn saved_;
};

// The isolate `self` names when the calling thread runs its turn, else null.
inline evh::Isolate* own_turn(const evh_isolate* self) noexcept {
  const Turn& t = current_turn();
  return self != nullptr && t.handle == self ? t.isolate : nullptr;
}
// EVH_EINVAL for a bad handle, EVH_EWRONGTHREAD outside its turn, else 0 with *out set.
inline int check_own_turn(const evh_isolate* self, evh::Isolate*& out) noexcept {
  if (!valid(self)) return EVH_EINVAL;
  out = own_turn(self);
  return out != nullptr ? EVH_OK : EVH_EWRONGTHREAD;
}

// Drops one reference to an isolate handle (the isolate's own or a caller's).
void unref(evh_isolate* handle) noexcept;

// Frees a handle that counts in its runtime's `handles` (receiver, process, signal watcher):
// its object goes with it. `handle` must be valid.
template <class H>
int release_counted(H* handle) noexcept {
  evh_runtime* rt = handle->runtime;
  handle->magic = kFreed;
  delete handle;
  // release: pairs with evh_runtime_destroy's acquire load of the count.
  rt->handles.fetch_sub(1, std::memory_order_release);
  return EVH_OK;
}

// evh's timer counters as the C struct (a runtime's and an isolate's alike).
inline evh_timer_stats to_c(const TimerStats& s) noexcept {
  return evh_timer_stats{s.live,         s.started,       s.fired,       s.cancelled,
                         s.batches,      s.largest_batch, s.late_p50_ns, s.late_p99_ns,
                         s.late_p999_ns, s.late_max_ns};
}

}  // namespace evh::capi
