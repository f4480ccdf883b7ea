// bench/evh_support.h — the benchmark's thin layer over evh: evh errors become failed cells, and
// the echo handler several workloads share.
//
// The benchmark may not report a number from a run in which evh said no, so every set-up call
// and every post on the measured path goes through take()/check(); a failure throws BenchError
// naming the step and evh's message.
#pragma once

#include <evh/error.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/runtime.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "workloads.h"

namespace evh::bench {

[[noreturn]] inline void fail(std::string_view what, const std::error_code& ec) {
  throw BenchError(std::string(what) + ": " + ec.message());
}

template <class T>
T take(Result<T> result, std::string_view what) {
  if (!result) fail(what, result.error());
  return std::move(result).value();
}

inline void check(const Status& status, std::string_view what) {
  if (!status) fail(what, status.error());
}

// The backend of the evh impls' runtimes: "evh" is what auto picks; "evh-epoll" and "evh-uring"
// force one (EVH_BACKEND, the operator's switch, still overrides all three).
inline IoBackend& bench_backend() noexcept {
  static IoBackend backend = IoBackend::automatic;
  return backend;
}

inline RuntimeOptions evh_options() {
  RuntimeOptions o;
  o.io_backend = bench_backend();
  return o;
}

// The backend an "evh-epoll" / "evh-uring" impl name forces; none for every other name.
inline std::optional<IoBackend> forced_backend(std::string_view impl) noexcept {
  if (impl == "evh-epoll") return IoBackend::epoll;
  if (impl == "evh-uring") return IoBackend::uring;
  return std::nullopt;
}

// Runs the "evh" impl with the backend forced for the scope.
class BackendScope {
 public:
  explicit BackendScope(IoBackend b) noexcept { bench_backend() = b; }
  ~BackendScope() { bench_backend() = IoBackend::automatic; }
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;
};

// Shuts the runtime down when the scope ends — also when the cell throws — so that no handler
// runs after the benchmark state it borrows is gone. Declare it after that state.
class ShutdownAtExit {
 public:
  explicit ShutdownAtExit(Runtime& rt) noexcept : rt_(rt) {}
  ~ShutdownAtExit() { rt_.shutdown(); }
  ShutdownAtExit(const ShutdownAtExit&) = delete;
  ShutdownAtExit& operator=(const ShutdownAtExit&) = delete;

 private:
  Runtime& rt_;
};

// A handler that answers every message with a copy of its u64 payload, posted to `reply`. The
// handler owns `reply`; it must not name the isolate itself, or the isolate would keep itself
// alive past its Runtime.
inline IsolateHandler echo_handler(SendPort reply) {
  return make_handler([reply = std::move(reply)](Isolate&, Message& m) {
    (void)reply.post(Message::u64(m.as_u64()));
  });
}

}  // namespace evh::bench
