// evh/event_handler.h — the event handler: fd readiness and port timeouts, delivered as messages.
//
// What it is: a kernel poller (epoll + one timerfd + one eventfd, or an io_uring: see
// docs/EVENT_HANDLER.md for the backends) waited on by one thread at a time, called "the I/O
// thread" below. The runtime's own handler (`Runtime::event_handler()`) has no thread of its
// own: an idle worker of the runtime's pool parks in the poller, so the thread the kernel wakes
// runs the handler's turn (one wakeup from the kernel to the handler). A handler made with
// `create()` has a thread of its own. Other threads never touch the poller: they send commands —
// watch an fd, change its interest, stop watching it, close it, return flow-control tokens, set
// or clear a port's timeout — through one lock-free queue, and the waiting thread executes them
// in the order each thread sent them. Readiness, timeouts and the end of a registration reach the
// destination port as ordinary messages (`Runtime::post`), carrying an `IoEvent` as their bytes;
// decode them with `decode_io_event()`. The destination may be an isolate's port or a `Receiver`'s.
//
// Threads: every method may be called from any thread, concurrently, and never blocks
// (SEMANTICS 20) — except `shutdown()` and the destructor, which join the I/O thread and must not
// be called from a port handler that the I/O thread may be waiting on (they never wait for a
// handler, so calling them from an isolate is allowed).
//
// Errors: what the calling thread can check is checked before the command is queued and
// returned at once — an invalid fd (EBADF), an fd epoll cannot watch (a regular file or a
// directory: EPERM), an unknown or closed destination port (`Errc::unknown_port`), an argument
// out of range (`Errc::invalid_argument`), a handler that is shutting down
// (`Errc::shutting_down`), no memory for the command (ENOMEM). What only the I/O thread can find
// out — a duplicate registration (EEXIST), the kernel refusing the watch (e.g. ENOMEM, ENOSPC),
// no memory for the registration's records (ENOMEM), a modify/close/unregister for a
// registration that does not exist (ENOENT) — is posted to the port as an `IoNotice::error`
// message carrying the errno; a failed registration never produces any other message.
//
// Ownership: the caller keeps owning a registered fd. `remove_fd()` stops watching it and leaves
// it open; `close_fd()` hands it over: the I/O thread stops watching it and closes it (for a
// shared listening socket, when its last registration closes). Either way the port receives
// exactly one final notice (`unregistered` or `closed`), and nothing for that registration after
// it (SEMANTICS 18). A caller must not close a registered fd itself before `remove_fd()`.
// A registration whose destination port closes (or whose isolate is killed or exits) ends
// without a notice (nobody is left to hear it); an fd registered with `FdOptions::owned` is then
// closed by the handler, any other is left open for its owner.
// The EventHandler owns its poller's fds (epoll, timerfd, eventfd; all O_CLOEXEC) and closes
// them at shutdown. It must be destroyed before the Runtime it posts to; the Runtime's own
// (`Runtime::event_handler()`) is shut down first thing in `Runtime::shutdown()`.
#pragma once

#include <evh/error.h>
#include <evh/export.h>
#include <evh/message.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

namespace evh {

class Runtime;

namespace detail {
class EventHandlerImpl;
struct EventHandlerAccess;
}  // namespace detail

// Readiness conditions, as a bit set. `error` and `hang_up` are always reported (they need not be
// asked for); `read_closed` (the peer shut down its write side) only when asked for.
enum class FdEvents : std::uint32_t {
  none = 0,
  readable = 1u << 0,
  writable = 1u << 1,
  read_closed = 1u << 2,
  error = 1u << 3,
  hang_up = 1u << 4,
};
constexpr FdEvents operator|(FdEvents a, FdEvents b) noexcept {
  return static_cast<FdEvents>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
constexpr FdEvents operator&(FdEvents a, FdEvents b) noexcept {
  return static_cast<FdEvents>(static_cast<std::uint32_t>(a) & static_cast<std::uint32_t>(b));
}
constexpr FdEvents operator~(FdEvents a) noexcept {
  return static_cast<FdEvents>(~static_cast<std::uint32_t>(a) & 0x1fu);
}
constexpr FdEvents& operator|=(FdEvents& a, FdEvents b) noexcept {
  return a = a | b;
}
constexpr bool any(FdEvents e) noexcept {
  return e != FdEvents::none;
}
constexpr bool has(FdEvents set, FdEvents bits) noexcept {
  return (set & bits) == bits;
}

// How readiness is reported. Whichever the mode, a (re)arm — registering, `modify_fd()`,
// returning tokens that re-open a closed window — reports a condition that already holds (data
// already buffered): no edge is lost (SEMANTICS 17).
enum class FdMode : std::uint8_t {
  // Reported while the condition holds, once per flow-control token: with the default window of
  // one, the receiver returns a token (`return_tokens`) to hear of the fd again. Unlimited level
  // notifications across threads would repost on every loop pass until the receiver reads.
  level,
  // Reported when the condition newly arises (new data, new buffer space), and on a re-arm.
  edge,
  // Reported once; then disarmed until `modify_fd()` re-arms it.
  oneshot,
};

// Several ports may share one listening socket; accept readiness then goes to them round-robin,
// each with at most `max_outstanding` (default 1) notifications not yet returned (Dart's shared
// HttpServer). Every registration of a shared fd must say `accept_round_robin`.
enum class FdSharing : std::uint8_t { exclusive, accept_round_robin };

struct FdOptions {
  FdMode mode = FdMode::level;
  // Flow control (Dart's token scheme): at most this many notifications not yet returned with
  // `return_tokens()`; when the window is full the fd is disarmed, and returning tokens re-arms
  // it (and reports data that arrived meanwhile). 0: the mode's default — 1 for level mode and
  // for shared fds, unlimited for edge and oneshot.
  std::uint32_t max_outstanding = 0;
  FdSharing sharing = FdSharing::exclusive;
  // Hands the fd over to the event handler: it is closed on the I/O thread however the
  // registration ends — close_fd(), remove_fd() (whose final notice is then `closed`), the
  // destination port closing, its isolate being killed or exiting, or shutdown. What an isolate
  // owns this way dies with it (SEMANTICS 9).
  bool owned = false;
};

// What a message from the event handler says.
enum class IoNotice : std::uint8_t {
  ready = 1,         // `fd` is ready: `events`
  closed = 2,        // final: close_fd() done, the fd is closed
  unregistered = 3,  // final: remove_fd() done (or the handler shut down); the fd is the caller's
  timeout = 4,       // the port's deadline `deadline_ns` has passed
  error = 5,         // a command on `fd` failed on the I/O thread: `error` is the errno
};

// The payload of every event-handler message: a plain struct sent as `Message::bytes` (it fits
// inline: no allocation per notification).
struct IoEvent {
  static constexpr std::uint32_t kMagic = 0x65766831;  // "evh1": tells it from other bytes
  std::uint32_t magic = kMagic;
  IoNotice notice = IoNotice::ready;
  std::uint8_t reserved[3] = {};
  std::int32_t fd = -1;
  FdEvents events = FdEvents::none;
  std::int32_t error = 0;  // errno, for IoNotice::error
  std::int32_t reserved2 = 0;
  std::int64_t deadline_ns =
      0;  // for timeout: nanoseconds on the runtime's clock (see set_timeout)
};
static_assert(sizeof(IoEvent) <= Message::kInlineBytes);

EVH_API Message to_message(const IoEvent& event);
// The IoEvent a message carries, or nothing when it is not an event-handler message.
EVH_API std::optional<IoEvent> decode_io_event(const Message& message) noexcept;

struct EventHandlerStats {
  std::uint64_t commands = 0;       // commands executed by the I/O thread
  std::uint64_t wakeup_writes = 0;  // eventfd writes by senders (at most one per loop sleep)
  std::uint64_t loop_passes = 0;    // returns from the poller's wait
  std::uint64_t notifications = 0;  // ready messages posted
  std::uint64_t timeouts = 0;       // timeout messages posted
  std::uint64_t deadline_arms = 0;  // times the native timer was (re)armed or disarmed
  std::uint64_t registrations = 0;  // fd registrations live (read on the I/O thread's last pass)
};

struct EventHandlerOptions {
  // Commands executed per loop pass before the loop looks at the kernel again (fairness between
  // a flood of commands and I/O).
  std::uint32_t commands_per_pass = 4096;
};

class EVH_API EventHandler {
 public:
  // CLOCK_MONOTONIC, the default runtime clock. A runtime built with a ManualClock
  // (RuntimeOptions::clock) keeps its timeouts on that clock: pass its readings as
  // `Clock::time_point(manual_clock.now())`.
  using Clock = std::chrono::steady_clock;

  // Starts a handler and its I/O thread with the default backend. Errors: the kernel's (e.g.
  // EMFILE when no fd is left for the epoll instance).
  static Result<std::unique_ptr<EventHandler>> create(Runtime& runtime,
                                                      EventHandlerOptions options = {});
  ~EventHandler();  // shutdown()
  EventHandler(const EventHandler&) = delete;
  EventHandler& operator=(const EventHandler&) = delete;

  // Watches `fd` for `interest`, reporting to `port`. Returns once the command is queued; see
  // the error rules above. The registration is identified by (fd, port) afterwards.
  Status add_fd(int fd, PortId port, FdEvents interest, FdOptions options = {}) noexcept;
  // Replaces the interest of (fd, port) and re-arms it (the way to re-arm a oneshot fd).
  Status modify_fd(int fd, PortId port, FdEvents interest) noexcept;
  // Stops watching; the fd stays open. Final notice: `unregistered`.
  Status remove_fd(int fd, PortId port) noexcept;
  // Stops watching and closes the fd on the I/O thread. Final notice: `closed`.
  Status close_fd(int fd, PortId port) noexcept;
  // Returns `count` flow-control tokens of (fd, port); more than are outstanding is clamped.
  Status return_tokens(int fd, PortId port, std::uint32_t count = 1) noexcept;

  // Accepts one connection from listening socket `listen_fd` registered by `port`: a
  // non-blocking, close-on-exec fd, or the errno (EAGAIN when none is pending). When the process
  // is out of fds (EMFILE, ENFILE) or memory, the registration is disarmed for a back-off period
  // (1 ms doubling to 1 s) instead of reporting the still-pending connection again at once — the
  // busy loop of dart-lang/sdk#22181. The pending connections stay queued in the kernel.
  Result<int> accept(int listen_fd, PortId port) noexcept;

  // Sets `port`'s one deadline (replacing an earlier one), on the runtime's clock. When it
  // passes, the port receives one `timeout` message and the deadline is gone. Never early: the
  // message is posted only once the clock has reached the deadline.
  Status set_timeout(PortId port, Clock::time_point deadline) noexcept;
  Status clear_timeout(PortId port) noexcept;

  // Orderly shutdown, idempotent: later commands fail with `Errc::shutting_down`; commands
  // already queued are executed; every live registration ends with an `unregistered` notice
  // (fds stay open: they are the callers'; those handed over with close_fd() are closed);
  // pending timeouts are dropped; the I/O thread is joined and the poller's fds closed.
  void shutdown() noexcept;

  EventHandlerStats stats() const noexcept;
  // The backend's name, e.g. "epoll".
  const char* backend() const noexcept;

 private:
  friend struct detail::EventHandlerAccess;
  explicit EventHandler(std::unique_ptr<detail::EventHandlerImpl> impl) noexcept;
  std::unique_ptr<detail::EventHandlerImpl> impl_;
};

}  // namespace evh
