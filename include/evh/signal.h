// evh/signal.h — POSIX signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1, ...) delivered to ports.
//
// What it is: a `SignalWatcher` posts a `SignalEvent` to its port each time its signal arrives
// (occurrences that arrive close together may be coalesced into one event whose `count` says
// how many; the counts add up exactly to the occurrences seen by the process's handler). Every
// watcher of a signal hears every occurrence, whichever Runtime it belongs to.
//
// Signal dispositions are process-wide by nature, so this part is the one place where evh keeps
// process-wide state (documented in docs/PROCESSES.md): per signal, a watcher count, the
// disposition found before the first watcher, and an occurrence counter; and one eventfd the
// handler writes to. While a signal has watchers, evh's handler is installed for it (SA_RESTART;
// it only increments an atomic counter and writes the eventfd: async-signal-safe); when the last
// watcher stops, the disposition found before the first one is put back (normally the default).
// Why a handler and not signalfd: signalfd only receives a signal that is blocked in every
// thread, and a library cannot block signals in the embedder's threads — an unblocked thread
// takes the signal first, with its default action (SIGUSR1 would end the process).
//
// Refused (`Errc::invalid_argument`): SIGKILL and SIGSTOP (they cannot be caught), the signals
// of faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT: a handler that returns
// would run again at once), glibc's internal real-time signals, and numbers out of range.
//
// Threads: `watch()` and `stop()` may be called from any thread. Events are posted from an
// internal isolate per watcher, never from the signal handler. A watcher must be stopped (or
// destroyed) before its Runtime is destroyed.
#pragma once

#include <evh/error.h>
#include <evh/export.h>
#include <evh/message.h>

#include <cstdint>
#include <memory>
#include <optional>

namespace evh {

class Runtime;

namespace detail {
class SignalWatch;
}

// The payload of every signal message: a plain struct sent as inline bytes.
struct SignalEvent {
  static constexpr std::uint32_t kMagic = 0x65767332;  // "evs2"
  std::uint32_t magic = kMagic;
  std::int32_t signal = 0;
  std::uint64_t count = 0;  // occurrences since the previous event of this watcher (>= 1)
};
static_assert(sizeof(SignalEvent) <= Message::kInlineBytes);

// The SignalEvent a message carries, or nothing when it is not a signal message.
EVH_API std::optional<SignalEvent> decode_signal_event(const Message& message) noexcept;

class EVH_API SignalWatcher {
 public:
  // Starts watching `signal` for `port`. Occurrences from the moment this returns are heard.
  // Errors: `Errc::invalid_argument` (see above), the port's error (`Errc::unknown_port`), the
  // event handler's, or the kernel's (EMFILE for the watcher's fd, EINVAL from sigaction).
  static Result<SignalWatcher> watch(Runtime& runtime, int signal, PortId port);

  SignalWatcher() noexcept = default;
  SignalWatcher(SignalWatcher&&) noexcept = default;
  SignalWatcher& operator=(SignalWatcher&& other) noexcept;
  ~SignalWatcher();  // stop()

  // Idempotent. After it returns this watcher posts nothing more; when it was the signal's last
  // watcher, the previous disposition is back.
  void stop() noexcept;
  int signal() const noexcept;
  explicit operator bool() const noexcept { return state_ != nullptr; }

 private:
  explicit SignalWatcher(std::shared_ptr<detail::SignalWatch> state) noexcept
      : state_(std::move(state)) {}
  std::shared_ptr<detail::SignalWatch> state_;
};

}  // namespace evh
