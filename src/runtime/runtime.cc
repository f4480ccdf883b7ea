#include <evh/runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/mono_time.h"
#include "io/epoll_poller.h"
#include "io/event_handler.h"
#include "isolate/isolate_impl.h"
#include "isolate/receiver_impl.h"
#include "runtime/runtime_impl.h"

namespace evh {
namespace detail {
namespace {

// Durations from RuntimeOptions, converted without overflow (saturated): an idle timeout past
// ~100 years means "never idle out"; a spin window is capped at kMaxSpin (a longer one would
// only burn a CPU, and polling threads do not look for shutdown).
constexpr auto kForever = std::chrono::hours(24 * 365 * 100);
constexpr auto kMaxSpin = std::chrono::milliseconds(10);

std::chrono::microseconds spin_of(const RuntimeOptions& o) noexcept {
  if (o.spin_before_park.count() <= 0) return std::chrono::microseconds(0);
  return std::min<std::chrono::microseconds>(o.spin_before_park, kMaxSpin);
}

std::chrono::milliseconds idle_timeout_of(const RuntimeOptions& o) noexcept {
  return o.worker_idle_timeout >= kForever ? std::chrono::milliseconds(-1) : o.worker_idle_timeout;
}

unsigned default_workers() noexcept {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 2;
}

// A pool deadline has passed: tell the isolate's timer port, as the event handler would.
void post_timeout(void* ctx, std::uint64_t key, std::int64_t deadline_ns) noexcept {
  IoEvent ev;
  ev.notice = IoNotice::timeout;
  ev.deadline_ns = deadline_ns;
  (void)static_cast<RuntimeImpl*>(ctx)->owner().post(static_cast<PortId>(key), to_message(ev));
}

ThreadPoolOptions pool_options(const RuntimeOptions& o, RuntimeImpl* runtime, RuntimeClock clock) {
  ThreadPoolOptions p;
  p.on_due = &post_timeout;
  p.on_due_ctx = runtime;
  p.clock = clock;
  p.max_threads = o.max_workers != 0 ? o.max_workers : default_workers();
  p.min_threads = std::min(o.min_workers, p.max_threads);
  p.idle_timeout = idle_timeout_of(o);
  p.spin = spin_of(o);
  p.name = "evh-worker";
  p.io_interval = o.time_slice;
  return p;
}

}  // namespace

RuntimeImpl::RuntimeImpl(Runtime& owner, RuntimeOptions options)
    : owner_(owner),
      options_(options),
      backend_(choose_backend(options.io_backend)),
      clock_(options.clock),
      time_slice_(saturating_ns(options.time_slice)),
      pool_(pool_options(options_, this, clock_)) {
  set_defaults(pool_, options_.default_budget);
}

RuntimeImpl::~RuntimeImpl() {
  shutdown();
}

Result<IsolateRef> RuntimeImpl::spawn(IsolateHandler handler, const IsolateOptions& options) {
  auto fail = [&](Errc e) -> Result<IsolateRef> {
    if (handler.destroy_user != nullptr) handler.destroy_user(handler.user);
    return e;
  };
  if ((handler.on_message == nullptr) == (handler.on_batch == nullptr) ||
      (handler.on_packed != nullptr && handler.on_batch == nullptr)) {
    return fail(Errc::invalid_argument);
  }
  const std::uint32_t budget = options.budget != 0 ? options.budget : options_.default_budget;
  if (budget == 0) return fail(Errc::invalid_argument);

  std::lock_guard lock(mu_);
  if (shutting_down()) return fail(Errc::shutting_down);
  TaskRunner& runner = options.runner != nullptr ? *options.runner : pool_;
  // Out of memory at any step: what was made is unmade and the handler's user data released
  // once — by the isolate's destructor once it exists, else by fail().
  const auto out_of_memory = std::make_error_code(std::errc::not_enough_memory);
  void* memory;
  try {
    memory = isolate_slab_.allocate();
  } catch (const std::bad_alloc&) {
    if (handler.destroy_user != nullptr) handler.destroy_user(handler.user);
    return out_of_memory;
  }
  IsolateImpl* isolate;
  try {
    isolate = new (memory) IsolateImpl(*this, runner, handler, options, budget);  // registry ref
  } catch (const std::bad_alloc&) {
    isolate_slab_.deallocate(memory);
    if (handler.destroy_user != nullptr) handler.destroy_user(handler.user);
    return out_of_memory;
  }
  auto unmake = [&] {
    isolate->~IsolateImpl();  // releases the user data
    isolate_slab_.deallocate(memory);
  };
  const PortId id = ids_.next();
  PortState* port;
  try {
    port = PortState::make(id, isolate, &port_slab_);  // retains the isolate
  } catch (const std::bad_alloc&) {
    unmake();
    return out_of_memory;
  }
  isolate->set_main_port(id);
  try {
    map_.insert(port);  // the map's reference
  } catch (const std::bad_alloc&) {
    port->release();  // frees the record and drops its reference to the isolate
    unmake();
    return out_of_memory;
  }
  port->release();  // ours: the map now owns the port
  registry_.push_front(*isolate);
  isolates_live_.fetch_add(1, std::memory_order_relaxed);
  isolates_spawned_.fetch_add(1, std::memory_order_relaxed);
  isolate->retain();  // the caller's IsolateRef
  return IsolateRef(isolate);
}

void RuntimeImpl::forget(IsolateImpl& isolate) noexcept {
  {
    std::lock_guard lock(mu_);
    if (!isolate.registry_hook.is_linked()) return;
    registry_.erase(registry_.iterator_to(isolate));
  }
  isolate.release();
}

Status RuntimeImpl::post(PortId port, Message&& message, Priority priority) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  if (shutting_down()) return Errc::shutting_down;
  return map_.post(port, std::move(message), priority);
}

Status RuntimeImpl::post_batch(PortId port, std::span<Message> messages,
                               Priority priority) noexcept {
  if (!shutting_down()) {
    if (PortState* state = acquire(port); state != nullptr) {
      const Status s = state->post_batch(messages, priority);
      state->release();
      return s;
    }
  }
  for (Message& m : messages) m = Message{};
  return shutting_down() ? Errc::shutting_down : Errc::unknown_port;
}

PortState* RuntimeImpl::acquire(PortId port) noexcept {
  if (port == PortId::none) return nullptr;
  return map_.acquire(port);
}

PortState* RuntimeImpl::open(PortTarget& target) {
  auto* port = PortState::make(ids_.next(), &target, &port_slab_);  // the caller's reference
  try {
    map_.insert(port);  // the map's
  } catch (...) {
    port->release();
    throw;
  }
  return port;
}

void RuntimeImpl::close(PortId id) noexcept {
  PortState* port = map_.erase(id);  // the map's reference passes to us
  if (port == nullptr) return;
  port->mark_closed();
  end_port_io(*port);  // its fd registrations and timeout end with it
  port->release();
}

Status RuntimeImpl::note_io(PortId id) noexcept {
  PortState* port = map_.acquire(id);
  if (port == nullptr) return Errc::unknown_port;
  port->note_io();
  const bool closed = port->is_closed_seq_cst();
  port->release();
  return closed ? Status{Errc::unknown_port} : Status{};
}

void RuntimeImpl::end_port_io(PortState& port) noexcept {
  if (!port.has_io()) return;
  // acquire: pairs with the release store in event_handler(); the handler is fully built.
  EventHandlerImpl* eh = eh_impl_.load(std::memory_order_acquire);
  if (eh != nullptr) (void)eh->drop_port(port.id());
}

void RuntimeImpl::free(void* isolate_memory) noexcept {
  isolate_slab_.deallocate(isolate_memory);
  isolates_live_.fetch_sub(1, std::memory_order_relaxed);
}

void RuntimeImpl::report_exception(Isolate& isolate, std::exception_ptr error) noexcept {
  exceptions_.fetch_add(1, std::memory_order_relaxed);
  if (options_.on_uncaught != nullptr) {
    try {
      options_.on_uncaught(isolate, std::move(error), options_.on_uncaught_user);
    } catch (...) {
      // A reporter that throws has nowhere to report to; the exception is already counted.
    }
  }
}

Result<ReceiverImpl*> RuntimeImpl::open_receiver() {
  if (shutting_down()) return Errc::shutting_down;
  try {
    alloc_site();
    return new ReceiverImpl(*this, clock_, spin_of(options_));  // its constructor opens the port
  } catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

TaskRunner& RuntimeImpl::create_dedicated_runner(std::string name) {
  ThreadPoolOptions p;
  p.min_threads = 1;
  p.max_threads = 1;
  p.idle_timeout = std::chrono::milliseconds(-1);
  p.spin = spin_of(options_);
  p.name = std::move(name);
  p.start_min_threads = true;
  p.on_due = &post_timeout;
  p.on_due_ctx = this;
  p.clock = clock_;
  std::lock_guard lock(mu_);
  dedicated_.push_back(std::make_unique<ThreadPool>(std::move(p)));
  return *dedicated_.back();
}

ThreadPool* RuntimeImpl::timer_pool_for(TaskRunner* runner) noexcept {
  if (runner == &pool_) return &pool_;
  std::lock_guard lock(mu_);
  for (const auto& d : dedicated_) {
    if (d.get() == runner) return d.get();
  }
  return nullptr;  // an embedder's runner: its isolates' deadlines go to the event handler
}

Result<DeadlineKeeper*> RuntimeImpl::deadline_keeper(TaskRunner& runner) noexcept {
  if (ThreadPool* pool = timer_pool_for(&runner)) return pool;
  // An embedder's runner: evh cannot wait inside it, so the event handler keeps the wakeups.
  auto eh = event_handler_impl();
  if (!eh) return eh.error();
  return *eh;
}

Result<EventHandlerImpl*> RuntimeImpl::event_handler_impl() noexcept {
  auto eh = event_handler();
  if (!eh) return eh.error();
  return &EventHandlerAccess::impl(**eh);  // lives as long as the public face: until ~RuntimeImpl
}

Result<EventHandler*> RuntimeImpl::event_handler() noexcept {
  // acquire: pairs with the release store below; the handler is fully constructed.
  if (EventHandler* eh = eh_ready_.load(std::memory_order_acquire)) return eh;
  std::lock_guard lock(eh_mu_);
  if (eh_closed_ || shutting_down()) return Errc::shutting_down;
  if (!eh_) {
    // Pool workers take turns driving it: an io_uring ring with changing submitters.
    auto poller = make_poller(backend_.backend, UringIssuer::shared);
    if (!poller) return poller.error();
    if (auto s = install_event_handler_locked(std::move(poller).value(), linux_sys(), {}); !s) {
      return s.error();
    }
  }
  return eh_.get();
}

Status RuntimeImpl::install_event_handler_locked(std::unique_ptr<Poller> poller, Sys& sys,
                                                 EventHandlerOptions options) noexcept {
  // Driven by the shared pool's idle workers: the worker the kernel wakes runs the isolate.
  auto started = start_event_handler(*this, clock_, std::move(poller), sys, options, &pool_);
  if (!started) return started.error();
  EventHandlerImpl* impl = started->get();
  eh_ = EventHandlerAccess::wrap(std::move(started).value());
  eh_impl_.store(impl, std::memory_order_release);
  eh_ready_.store(eh_.get(), std::memory_order_release);
  return {};
}

Result<EventHandler*> RuntimeImpl::install_event_handler(std::unique_ptr<Poller> poller, Sys& sys,
                                                         EventHandlerOptions options) noexcept {
  std::lock_guard lock(eh_mu_);
  if (eh_closed_ || shutting_down()) return Errc::shutting_down;
  if (eh_) return Errc::invalid_argument;
  if (auto s = install_event_handler_locked(std::move(poller), sys, options); !s) return s.error();
  return eh_.get();
}

void RuntimeImpl::shutdown() noexcept {
  std::lock_guard serial(shutdown_mu_);
  if (shut_down_) return;
  // The event handler goes first, while ports are open and posts are accepted: its
  // registrations' final notices reach their ports, and after this no I/O thread posts.
  EventHandler* eh = nullptr;
  {
    std::lock_guard lock(eh_mu_);
    eh_closed_ = true;
    eh_ready_.store(nullptr, std::memory_order_relaxed);  // later callers take the slow path
    // drop_port after shutdown would be refused anyway; this only spares the call.
    eh_impl_.store(nullptr, std::memory_order_relaxed);
    eh = eh_.get();
  }
  if (eh != nullptr) eh->shutdown();
  std::vector<IsolateImpl*> live;
  {
    std::lock_guard lock(mu_);
    shutting_down_.store(true, std::memory_order_release);
    for (IsolateImpl& i : registry_) {
      i.retain();
      live.push_back(&i);
    }
  }
  for (IsolateImpl* i : live) i->destroy();
  // Turns already queued drain their isolates on their runners; wait for each to finish.
  for (IsolateImpl* i : live) {
    i->wait_dead();
    i->release();
  }
  pool_.shutdown();
  std::vector<std::unique_ptr<ThreadPool>> runners;
  {
    std::lock_guard lock(mu_);
    runners.swap(dedicated_);
  }
  for (auto& r : runners) r->shutdown();
  shut_down_ = true;
}

void RuntimeImpl::refuse_shutdown_from_a_turn(const char* what) const noexcept {
  bool inside = false;
  {
    std::lock_guard lock(mu_);
    for (const IsolateImpl& i : registry_) inside = inside || i.owns_turn();
  }
  if (!inside) return;
  // No error can be returned (a destructor, and a shutdown() callers rely on having finished),
  // and carrying on would hang for ever without a word: a contract violation, stated.
  std::fprintf(stderr,
               "evh: %s called from inside one of the runtime's isolates; it waits for every "
               "isolate's turn to end, this one's included (a deadlock). Shut down from a thread "
               "the runtime does not run isolates on.\n",
               what);
  std::abort();
}

void RuntimeImpl::add_timer_counters(const TimerStats& d, std::int64_t live_delta) noexcept {
  timers_live_.fetch_add(live_delta, std::memory_order_relaxed);
  timers_started_.fetch_add(d.started, std::memory_order_relaxed);
  timers_fired_.fetch_add(d.fired, std::memory_order_relaxed);
  timers_cancelled_.fetch_add(d.cancelled, std::memory_order_relaxed);
  timer_batches_.fetch_add(d.batches, std::memory_order_relaxed);
  std::uint64_t m = largest_timer_batch_.load(std::memory_order_relaxed);
  while (d.largest_batch > m && !largest_timer_batch_.compare_exchange_weak(
                                    m, d.largest_batch, std::memory_order_relaxed)) {
  }
}

TimerStats RuntimeImpl::timer_stats() const noexcept {
  TimerStats s;
  const std::int64_t live = timers_live_.load(std::memory_order_relaxed);
  s.live = live > 0 ? static_cast<std::uint64_t>(live) : 0;
  s.started = timers_started_.load(std::memory_order_relaxed);
  s.fired = timers_fired_.load(std::memory_order_relaxed);
  s.cancelled = timers_cancelled_.load(std::memory_order_relaxed);
  s.batches = timer_batches_.load(std::memory_order_relaxed);
  s.largest_batch = largest_timer_batch_.load(std::memory_order_relaxed);
  fill_lateness(s, timer_lateness_);
  return s;
}

RuntimeStats RuntimeImpl::stats() const noexcept {
  RuntimeStats s;
  s.isolates_live = isolates_live_.load(std::memory_order_relaxed);
  s.isolates_spawned = isolates_spawned_.load(std::memory_order_relaxed);
  s.ports_open = map_.size();
  const ThreadPoolStats p = pool_.stats();
  s.workers_live = p.live;
  s.workers_started = p.started;
  s.exceptions = exceptions_.load(std::memory_order_relaxed);
  s.timer_deadlines = p.timeouts;
  s.io_backend = backend_name(backend_.backend);
  s.io_backend_reason = backend_.reason.c_str();
  {
    std::lock_guard lock(mu_);
    for (const auto& d : dedicated_) s.timer_deadlines += d->stats().timeouts;
    // The registry's reference keeps every listed isolate's memory alive while the lock is held.
    for (const IsolateImpl& i : registry_) {
      const IsolateStats is = i.stats();
      s.mailbox_depth += is.mailbox_depth;
      s.mailbox_depth_max = std::max(s.mailbox_depth_max, is.mailbox_depth);
      s.mailbox_peak = std::max(s.mailbox_peak, is.mailbox_peak);
    }
  }
  return s;
}

Result<std::unique_ptr<EventHandler>> make_event_handler(Runtime& runtime,
                                                         std::unique_ptr<Poller> poller,
                                                         EventHandlerOptions options, Sys& sys) {
  RuntimeImpl& impl = RuntimeAccess::impl(runtime);
  auto started = start_event_handler(impl, impl.clock(), std::move(poller), sys, options, nullptr);
  if (!started) return started.error();
  return EventHandlerAccess::wrap(std::move(started).value());
}

}  // namespace detail

Result<std::unique_ptr<EventHandler>> EventHandler::create(Runtime& runtime,
                                                           EventHandlerOptions options) {
  // Its own thread is the ring's only submitter.
  auto poller = detail::make_poller(detail::RuntimeAccess::impl(runtime).backend().backend,
                                    detail::UringIssuer::single);
  if (!poller) return poller.error();
  return detail::make_event_handler(runtime, std::move(poller).value(), options);
}

Runtime::Runtime(RuntimeOptions options)
    : impl_(std::make_unique<detail::RuntimeImpl>(*this, options)) {}

Runtime::~Runtime() {
  impl_->refuse_shutdown_from_a_turn("Runtime::~Runtime()");
  impl_->shutdown();
}

Result<IsolateRef> Runtime::spawn(IsolateHandler handler, IsolateOptions options) {
  return impl_->spawn(handler, options);
}

Status Runtime::post(PortId port, Message message, Priority priority) noexcept {
  return impl_->post(port, std::move(message), priority);
}

Status Runtime::post_batch(PortId port, std::span<Message> messages, Priority priority) noexcept {
  return impl_->post_batch(port, messages, priority);
}

Status Runtime::post_bytes_batch(PortId port, std::span<const std::byte> packed, std::size_t each,
                                 Priority priority) noexcept {
  if (!detail::packed_shape_ok(packed.size(), each)) return Errc::invalid_argument;
  if (!impl_->shutting_down()) {
    if (detail::PortState* state = impl_->acquire(port); state != nullptr) {
      const Status s = state->post_packed(packed.data(), static_cast<std::uint32_t>(each),
                                          packed.size() / each, priority);
      state->release();
      // As Runtime::post: a port closed since the look-up is reported as unknown.
      if (!s && s.error() == Errc::port_closed) return Errc::unknown_port;
      return s;
    }
  }
  return impl_->shutting_down() ? Errc::shutting_down : Errc::unknown_port;
}

Result<SendPort> Runtime::send_port(PortId port) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  detail::PortState* state = impl_->map().acquire(port);
  if (state == nullptr) return Errc::unknown_port;
  return SendPort(state);
}

Result<Receiver> Runtime::open_receiver() {
  auto receiver = impl_->open_receiver();
  if (!receiver) return receiver.error();
  return Receiver(*receiver);
}

TaskRunner& Runtime::create_dedicated_runner(std::string name) {
  return impl_->create_dedicated_runner(std::move(name));
}

Result<EventHandler*> Runtime::event_handler() noexcept {
  return impl_->event_handler();
}

void Runtime::shutdown() noexcept {
  impl_->refuse_shutdown_from_a_turn("Runtime::shutdown()");
  impl_->shutdown();
}
RuntimeStats Runtime::stats() const noexcept {
  return impl_->stats();
}
TimerStats Runtime::timer_stats() const noexcept {
  return impl_->timer_stats();
}

const RuntimeOptions& Runtime::options() const noexcept {
  return impl_->options();
}

}  // namespace evh
