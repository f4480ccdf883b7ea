// evh/runtime.h — the runtime: port map, thread pool, runners, configuration, shutdown.
//
// Nothing in evh is global: two Runtimes in one process share nothing and cannot see each
// other's ports. Constructing a Runtime may throw `std::system_error` (set-up); every other call
// reports errors through `Result`/`Status`.
//
// Threads: every method may be called from any thread, except that the destructor (and
// `shutdown()`) must not be called from a thread the runtime owns (a pool worker or a dedicated
// runner), nor from inside one of its isolates on any runner: both wait for every isolate's turn
// to end. From inside an isolate that would wait for itself, so every build reports it on stderr
// and aborts instead of hanging.
//
// Lifetimes: the Runtime object must outlive every SendPort, Receiver, IsolateRef, SignalWatcher
// and ProcessManager taken from it (they point into its memory). `Process` handles are the
// exception: they may outlive it (evh/process.h). The README's "Guarantees and limits" lists
// every handle's rule.
#pragma once

#include <evh/clock.h>
#include <evh/error.h>
#include <evh/export.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/receiver.h>
#include <evh/task_runner.h>
#include <evh/timer.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>

namespace evh {

// The kernel interface of the runtime's event handler (docs/EVENT_HANDLER.md "Backends").
// automatic: io_uring when the kernel allows it (probed when the Runtime is constructed), else
// epoll. The environment variable EVH_BACKEND=epoll|uring|auto overrides this option.
enum class IoBackend : std::uint8_t { automatic, epoll, uring };

struct RuntimeOptions {
  // The shared pool grows on demand up to `max_workers` threads; workers idle for longer than
  // `worker_idle_timeout` exit (down to `min_workers`); 100 years or more (or a negative value)
  // means they never idle out. 0 max = the number of online CPUs.
  unsigned max_workers = 0;
  unsigned min_workers = 0;
  std::chrono::milliseconds worker_idle_timeout{5000};
  // How long an idle worker or a waiting Receiver polls before sleeping in the kernel. Spinning
  // trades CPU for latency: a message that arrives while it spins costs no wakeup syscall.
  // At most 10 ms of it is used.
  std::chrono::microseconds spin_before_park{50};
  // Messages an isolate handles per turn before giving way, and the time slice after which it
  // gives way even inside its budget (checked every few messages). Every duration here may be as
  // large as its type allows: evh saturates instead of overflowing (a slice past the end of time
  // is "never").
  std::uint32_t default_budget = 64;
  std::chrono::microseconds time_slice{500};
  // Told about every exception that escapes an isolate's handler or microtask (on the isolate's
  // thread). May be null; exceptions are counted either way.
  void (*on_uncaught)(Isolate& isolate, std::exception_ptr error, void* user) = nullptr;
  void* on_uncaught_user = nullptr;
  // The clock every timer, port timeout and Receiver deadline of this runtime runs on
  // (evh/clock.h): null for CLOCK_MONOTONIC, or a ManualClock, which makes them exact and instant
  // to test — nothing fires until the test moves the clock. It must outlive the runtime; any
  // other Clock is refused (the constructor throws std::invalid_argument).
  Clock* clock = nullptr;
  // uring asked for (here or by EVH_BACKEND) where the kernel refuses io_uring: the constructor
  // throws std::system_error with the reason; an EVH_BACKEND it does not know:
  // std::invalid_argument.
  IoBackend io_backend = IoBackend::automatic;
};

struct RuntimeStats {
  std::uint64_t isolates_live = 0;
  std::uint64_t isolates_spawned = 0;
  std::uint64_t ports_open = 0;
  std::uint64_t workers_live = 0;
  std::uint64_t workers_started = 0;
  std::uint64_t exceptions = 0;
  // Isolate timer deadlines that passed and woke their runner's pool (one per timer wakeup of an
  // isolate on the shared pool or a dedicated runner; an embedder runner's isolates use the
  // event handler's timeouts instead).
  std::uint64_t timer_deadlines = 0;
  // Over the live isolates (one pass over them under the registry's lock): messages queued in
  // all their mailboxes now, the deepest mailbox now, and the deepest any of them has been
  // (IsolateStats::mailbox_depth, mailbox_peak).
  std::uint64_t mailbox_depth = 0;
  std::uint64_t mailbox_depth_max = 0;
  std::uint64_t mailbox_peak = 0;
  // The event handler's backend ("epoll" or "io_uring") and why it was chosen (the probe's
  // reason for a fallback). Both live as long as the Runtime.
  const char* io_backend = "";
  const char* io_backend_reason = "";
};

class EventHandler;

namespace detail {
class RuntimeImpl;
struct RuntimeAccess;
}  // namespace detail

class EVH_API Runtime {
 public:
  explicit Runtime(RuntimeOptions options = {});
  ~Runtime();  // shutdown()
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Creates an isolate with one open port (its main port). The handler's `destroy_user` runs
  // when the isolate is freed — also when spawning fails, once. ENOMEM when a record could not
  // be allocated (nothing is left behind), `Errc::shutting_down`, `Errc::invalid_argument`.
  Result<IsolateRef> spawn(IsolateHandler handler, IsolateOptions options = {});

  // Posts by id. Looks the id up in the port map (sharded; no global lock). On error the message
  // is released before this returns: `Errc::unknown_port`, `Errc::port_closed` (a closed port
  // whose id is still known is reported as unknown: ids are forgotten on close),
  // `Errc::shutting_down`, or ENOMEM as SendPort::post. When the post makes an isolate runnable,
  // its runner's `post()` is called with no evh lock held (evh/task_runner.h).
  Status post(PortId port, Message message, Priority priority = Priority::normal) noexcept;
  // Posts every message of `messages` to `port` in order, as SendPort::post_batch (one look-up,
  // queue space claimed once for as many as fit together); each is left empty. The errors of
  // `post`, for all of them.
  Status post_batch(PortId port, std::span<Message> messages,
                    Priority priority = Priority::normal) noexcept;
  // SendPort::post_bytes_batch by id: the errors of `post`, and `Errc::invalid_argument` for a
  // bad shape.
  Status post_bytes_batch(PortId port, std::span<const std::byte> packed, std::size_t each,
                          Priority priority = Priority::normal) noexcept;

  // A SendPort for `port`, for repeated posts without map look-ups.
  Result<SendPort> send_port(PortId port) noexcept;

  // Opens a port for a plain thread to receive on. ENOMEM when out of memory (nothing opened).
  Result<Receiver> open_receiver();

  // A runner with one thread of its own (a "UI" or "platform" thread): isolates spawned with it
  // are only ever handled on that thread. It lives until shutdown.
  TaskRunner& create_dedicated_runner(std::string name);

  // The runtime's event handler (evh/event_handler.h), started on first use: its I/O thread and
  // its poller's fds are created then. The pointer stays valid for the Runtime object's life.
  // `Errc::shutting_down` once shutdown() has begun; the kernel's error when it cannot start.
  Result<EventHandler*> event_handler() noexcept;

  // Orderly shutdown, idempotent: the event handler (if started) is shut down first — its
  // registrations end with a final notice to their ports, its thread is joined — then new posts and
  // spawns fail with `Errc::shutting_down`, every isolate is destroyed (queued payloads released
  // exactly once), the pool and dedicated threads finish what they hold and are joined. No task
  // runs after it returns.
  void shutdown() noexcept;

  RuntimeStats stats() const noexcept;
  // Every isolate's timers together: counters reported by each isolate at the end of each message
  // that touched its timers, and one lateness histogram all of them record into. O(1).
  TimerStats timer_stats() const noexcept;
  const RuntimeOptions& options() const noexcept;

 private:
  friend struct detail::RuntimeAccess;
  std::unique_ptr<detail::RuntimeImpl> impl_;
};

}  // namespace evh
