// EventHandlerImpl: the event handler — kernel readiness and deadlines turned into port messages
// (docs/EVENT_HANDLER.md).
//
// Parts, each in its own file:
//   - commands (io/commands.h): any thread validates what it can (fd, file type, port) and sends
//     a POD Command through the CommandChannel (no allocation, at most one poller wake per
//     sleep of the loop);
//   - registrations (io/registrations.h): fd → entry, flow control, dispatch to ports;
//   - timeouts (io/timeouts.h): one deadline per port, accept back-offs, the native timer;
//   - the kernel: a Poller (io/poller.h) and Sys (io/sys.h), the only two ways this code reaches
//     the kernel, so that a fake of each (tests/io/fake_poller.h) can inject any error;
//   - the ports: a PortDirectory (port/port_directory.h) the runtime hands it. It knows nothing
//     of the runtime, its isolates or its receivers.
// This file holds the pass that ties them together: re-arm the native timer if the earliest
// deadline changed → wait → execute commands → dispatch this batch's readiness → expire
// deadlines. Commands run before the batch is dispatched and events carry a token with a
// generation, so a close executed in this pass drops the readiness observed in the same batch.
//
// Who runs the passes (io/driver.h): driven by a pool (`Drive::pool`, the runtime's own handler),
// the pool's idle workers take turns as the one thread that waits in the poller and runs passes,
// so the worker the kernel wakes runs the isolate the event is for; with its own thread
// (`Drive::own_thread`: handlers made with EventHandler::create), that thread runs them in a loop.
// Either way one thread at a time holds the driver (DriverLock) and runs a pass.
//
// Time: port timeouts are on the runtime's clock. On the monotonic clock they arm the poller's
// native timer; on a manual clock they expire on each pass of the loop and when the clock moves
// (the move waits until the loop has expired what it made due), and only accept back-offs — real
// time, whatever the clock: they are about the kernel's resources — arm the native timer.
//
// Threads: the public entry points are thread-safe and never block (except shutdown(), which
// waits for the driver's holder or joins the own thread); everything else runs on the thread
// holding the driver (debug builds check it).
// Ownership: it owns its poller (and so the poller's fds) and closes them at shutdown; the
// PortDirectory and the Sys must outlive it.
#pragma once

#include <evh/event_handler.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "io/commands.h"
#include "io/delivery.h"
#include "io/driver.h"
#include "io/driver_lock.h"
#include "io/poller.h"
#include "io/registrations.h"
#include "io/sys.h"
#include "io/timeouts.h"
#include "port/port_directory.h"
#include "timer/deadline_keeper.h"
#include "timer/runtime_clock.h"

namespace evh::detail {

// Who runs the handler's passes.
enum class Drive : std::uint8_t { pool, own_thread };

class EventHandlerImpl final : public DeadlineKeeper, public IoDriver, private ClockWaiter {
 public:
  EventHandlerImpl(PortDirectory& ports, RuntimeClock clock, std::unique_ptr<Poller> poller,
                   Sys& sys, EventHandlerOptions options);
  ~EventHandlerImpl();  // shutdown()
  EventHandlerImpl(const EventHandlerImpl&) = delete;
  EventHandlerImpl& operator=(const EventHandlerImpl&) = delete;

  // Hands the handler to `host`'s idle workers (Drive::pool).
  Status start(DriverHost& host) noexcept;
  // Starts the handler's own thread (Drive::own_thread); the error when it cannot be created.
  Status start() noexcept;

  // Any thread.
  Status add_fd(int fd, PortId port, FdEvents interest, FdOptions options) noexcept;
  // Like add_fd, but readiness is handed to `reader` on the thread driving the handler (io/
  // commands.h, FdReader); the registration's notices still go to `port`, and it is ended,
  // modified and closed through `port` like any other. `reader` must outlive the registration:
  // until its final notice has reached `port`, or the port has closed.
  Status add_reader(int fd, PortId port, FdReader& reader, FdEvents interest, FdMode mode) noexcept;
  // evh's own processes: watches `pidfd` (oneshot) for its child's exit, reported to `port` as
  // readable — through IORING_OP_WAITID on an io_uring that has it, else the pidfd's poll (io/
  // poller.h, kChildExit); the child is not reaped. `kind`: add, or modify to re-arm after a
  // report. Ended, closed and reported on like any registration of `port`.
  Status watch_child_exit(int pidfd, PortId port, CommandKind kind) noexcept;
  // modify, remove, close, tokens: a command naming a registration.
  Status command(CommandKind kind, int fd, PortId port, FdEvents interest,
                 std::uint32_t count) noexcept;
  Result<int> accept(int listen_fd, PortId port) noexcept;
  Status set_timeout(PortId port, std::int64_t deadline_ns) noexcept;
  Status clear_timeout(PortId port) noexcept;
  // `port` has closed (its owner tells the handler): its registrations end without a notice,
  // owned fds are closed, its timeout is dropped.
  Status drop_port(PortId port) noexcept;
  void shutdown() noexcept;
  EventHandlerStats stats() const noexcept;
  const char* backend() const noexcept { return backend_; }

  // DeadlineKeeper: an isolate's next timer wakeup, kept as its timer port's timeout.
  Status set_deadline(std::uint64_t key, std::int64_t deadline_ns,
                      WakeupPrecision precision) noexcept override;
  void clear_deadline(std::uint64_t key) noexcept override;

  // IoDriver (io/driver.h).
  bool try_acquire() noexcept override;
  void release() noexcept override;
  void drive(MonoTime until) noexcept override;
  void unpark() noexcept override;
  bool release_requested() const noexcept override { return lock_.has_waiters(); }

 private:
  // A command that names only a port (clear_timeout, drop_port).
  Status port_command(CommandKind kind, PortId port) noexcept;
  // The caller-side check of an fd: open, and of a kind epoll can watch.
  Status check_fd(int fd) noexcept;

  // ClockWaiter: a manual clock moved; returns once the loop has expired what it made due.
  void clock_moved() noexcept override;

  // The own thread's loop (Drive::own_thread).
  void loop() noexcept;
  // The driver's holder: the end of the handler — every queued command, then every live
  // registration's final notice; pending timeouts are dropped.
  void finish() noexcept;
  // The driver's holder.
  void execute(const Command& c) noexcept;
  void expire() noexcept;
  void assert_driving() const noexcept;

  std::unique_ptr<Poller> poller_;  // reset by shutdown(): that closes its fds
  Sys& sys_;
  const RuntimeClock clock_;
  std::atomic<bool> clock_registered_{false};  // a waiter of a manual clock, from start()
  const char* const backend_;
  const EventHandlerOptions options_;
  Delivery delivery_;
  CommandChannel channel_;
  IoTimeouts timeouts_;
  Registrations registrations_;
  std::atomic<bool> stop_{false};  // no pass runs after the current one
  DriverHost* host_ = nullptr;     // Drive::pool: set by start(), never changed after
  DriverLock lock_;                // who drives
  bool more_ = false;              // the holder's: commands were left for the next pass
  std::vector<PollEvent> events_;  // the holder's
  std::atomic<std::uint64_t> passes_{0};

  std::mutex shutdown_mu_;  // serialises shutdown() callers
  bool shut_down_ = false;  // guarded by shutdown_mu_
  std::thread thread_;      // Drive::own_thread
};

// Starts a handler over `poller` and `sys`, posting to `ports`, its timeouts on `clock`, driven
// by `host`'s idle workers, or by a thread of its own when `host` is null.
// `Errc::invalid_argument` for bad options; the thread's error when it cannot start.
Result<std::unique_ptr<EventHandlerImpl>> start_event_handler(PortDirectory& ports,
                                                              RuntimeClock clock,
                                                              std::unique_ptr<Poller> poller,
                                                              Sys& sys, EventHandlerOptions options,
                                                              DriverHost* host);

// What evh may do with the public EventHandler that its users may not.
struct EventHandlerAccess {
  // The public face over a started handler.
  static std::unique_ptr<EventHandler> wrap(std::unique_ptr<EventHandlerImpl> impl);
  static EventHandlerImpl& impl(EventHandler& handler) noexcept { return *handler.impl_; }
};

}  // namespace evh::detail
