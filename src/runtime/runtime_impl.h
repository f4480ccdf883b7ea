// RuntimeImpl: what a Runtime owns — options, port ids, the port map, the shared pool, the
// dedicated runners, the event handler and the registry of live isolates — and its shutdown
// sequence. It is the top of the layer order (docs/ARCHITECTURE.md): the parts below reach it
// only through the interfaces it implements (PortDirectory for ports).
#pragma once

#include <evh/event_handler.h>
#include <evh/runtime.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "base/slab.h"
#include "io/event_handler.h"
#include "io/poller.h"
#include "io/sys.h"
#include "isolate/isolate_host.h"
#include "isolate/isolate_impl.h"
#include "port/port_directory.h"
#include "port/port_id.h"
#include "port/port_map.h"
#include "runtime/io_backend.h"
#include "sched/thread_pool.h"
#include "timer/lateness_histogram.h"

namespace evh::detail {

using IsolateSlab = Slab<sizeof(IsolateImpl), alignof(IsolateImpl)>;

class ReceiverImpl;

class RuntimeImpl final : public IsolateHost {
 public:
  RuntimeImpl(Runtime& owner, RuntimeOptions options);
  ~RuntimeImpl();

  Runtime& owner() const noexcept { return owner_; }
  const RuntimeOptions& options() const noexcept { return options_; }
  const BackendChoice& backend() const noexcept { return backend_; }
  PortMap& map() noexcept { return map_; }
  IsolateSlab& isolate_slab() noexcept { return isolate_slab_; }
  PortSlab& port_slab() noexcept { return port_slab_; }
  ThreadPool& pool() noexcept { return pool_; }
  PortId next_port_id() noexcept { return ids_.next(); }
  bool shutting_down() const noexcept { return shutting_down_.load(std::memory_order_acquire); }

  Result<IsolateRef> spawn(IsolateHandler handler, const IsolateOptions& options);
  // A new receiver's inside (its handle, the public Receiver, is made by Runtime).
  Result<ReceiverImpl*> open_receiver();
  TaskRunner& create_dedicated_runner(std::string name);
  Result<EventHandler*> event_handler() noexcept;
  // The event handler's inside, started on first use (as event_handler()).
  Result<EventHandlerImpl*> event_handler_impl() noexcept;
  // Makes a handler over `poller` and `sys` the runtime's own (driven by the pool, shut down
  // first) instead of the default one; `Errc::invalid_argument` once it has one. For tests.
  Result<EventHandler*> install_event_handler(std::unique_ptr<Poller> poller, Sys& sys,
                                              EventHandlerOptions options = {}) noexcept;
  // The runtime's pool behind `runner` (the shared one or a dedicated one), which keeps timer
  // deadlines itself; null for an embedder's runner.
  ThreadPool* timer_pool_for(TaskRunner* runner) noexcept;
  TimerStats timer_stats() const noexcept;
  void shutdown() noexcept;
  // shutdown() and the destructor wait for every isolate's turn to end: from inside one they
  // would wait for themselves. Reports that on stderr and aborts, in every build.
  void refuse_shutdown_from_a_turn(const char* what) const noexcept;
  RuntimeStats stats() const noexcept;

  // PortDirectory.
  Status post(PortId port, Message&& message, Priority priority) noexcept override;
  Status post_batch(PortId port, std::span<Message> messages, Priority priority) noexcept override;
  PortState* acquire(PortId port) noexcept override;
  PortState* open(PortTarget& target) override;
  void close(PortId port) noexcept override;
  Status note_io(PortId port) noexcept override;
  PortId next_id() noexcept override { return ids_.next(); }
  // `port` (closed) had fd registrations: tell the event handler to end them.
  void end_port_io(PortState& port) noexcept;

  // IsolateHost.
  Runtime& runtime() noexcept override { return owner_; }
  std::chrono::nanoseconds time_slice() const noexcept override { return time_slice_; }
  RuntimeClock clock() const noexcept override { return clock_; }
  Result<DeadlineKeeper*> deadline_keeper(TaskRunner& runner) noexcept override;
  bool runner_reports_waiting_work(TaskRunner& runner) noexcept override {
    return timer_pool_for(&runner) != nullptr;
  }
  RuntimeLateness& timer_lateness() noexcept override { return timer_lateness_; }
  // Adds an isolate's counter changes since its last report (`delta`; `largest_batch` is a max).
  void add_timer_counters(const TimerStats& delta, std::int64_t live_delta) noexcept override;
  void report_exception(Isolate& isolate, std::exception_ptr error) noexcept override;
  // Drops the registry's reference to `isolate` (once; later calls do nothing).
  void forget(IsolateImpl& isolate) noexcept override;
  void free(void* isolate_memory) noexcept override;

 private:
  Status install_event_handler_locked(std::unique_ptr<Poller> poller, Sys& sys,
                                      EventHandlerOptions options) noexcept;  // eh_mu_ held

  Runtime& owner_;
  const RuntimeOptions options_;
  const BackendChoice backend_;  // before the pool: a refused backend throws before any thread
  const RuntimeClock clock_;
  const std::chrono::nanoseconds time_slice_;  // options_.time_slice, saturated
  PortIdGenerator ids_;
  // The slabs outlive the map and the pool (declared before them): destroying the map releases
  // ports, and pool threads may free isolates until they are joined.
  IsolateSlab isolate_slab_;
  PortSlab port_slab_;
  PortMap map_;
  ThreadPool pool_;

  mutable std::mutex mu_;  // guards the registry and dedicated_
  boost::intrusive::list<IsolateImpl,
                         boost::intrusive::member_hook<IsolateImpl, IsolateImpl::RegistryHook,
                                                       &IsolateImpl::registry_hook>,
                         boost::intrusive::constant_time_size<false>>
      registry_;
  std::vector<std::unique_ptr<ThreadPool>> dedicated_;
  std::mutex shutdown_mu_;  // serialises shutdown() callers
  std::atomic<bool> shutting_down_{false};
  bool shut_down_ = false;  // guarded by shutdown_mu_

  // The event handler, started on first use. eh_ready_ (release, after eh_ is set) pairs with
  // the acquire load of the fast path; eh_ lives until the RuntimeImpl is destroyed, so that a
  // pointer handed out before shutdown() never dangles while the Runtime lives. eh_impl_ is the
  // same handler's inside, for the calls the public face does not offer (drop_port).
  std::mutex eh_mu_;  // guards eh_ and eh_closed_
  std::unique_ptr<EventHandler> eh_;
  bool eh_closed_ = false;
  std::atomic<EventHandler*> eh_ready_{nullptr};
  std::atomic<EventHandlerImpl*> eh_impl_{nullptr};

  RuntimeLateness timer_lateness_;
  std::atomic<std::int64_t> timers_live_{0};
  std::atomic<std::uint64_t> timers_started_{0};
  std::atomic<std::uint64_t> timers_fired_{0};
  std::atomic<std::uint64_t> timers_cancelled_{0};
  std::atomic<std::uint64_t> timer_batches_{0};
  std::atomic<std::uint64_t> largest_timer_batch_{0};
  std::atomic<std::uint64_t> isolates_live_{0};
  std::atomic<std::uint64_t> isolates_spawned_{0};
  std::atomic<std::uint64_t> exceptions_{0};
};

// What evh may do with the public Runtime that its users may not.
struct RuntimeAccess {
  static RuntimeImpl& impl(Runtime& runtime) noexcept { return *runtime.impl_; }
};

// An event handler over any poller and Sys (tests pass fakes), posting to `runtime`'s ports,
// with a thread of its own (as EventHandler::create).
Result<std::unique_ptr<EventHandler>> make_event_handler(Runtime& runtime,
                                                         std::unique_ptr<Poller> poller,
                                                         EventHandlerOptions options = {},
                                                         Sys& sys = linux_sys());

}  // namespace evh::detail
