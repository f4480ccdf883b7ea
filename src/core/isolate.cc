#include <evh/clock.h>
#include <evh/event_handler.h>

#include <chrono>
#include <optional>
#include <utility>

#include "core/assert.h"
#include "core/isolate_impl.h"
#include "core/isolate_life.h"
#include "core/runtime_impl.h"
#include "sync/spin.h"
#include "timer/timer_set.h"

namespace evh {
namespace detail {

// An isolate's timers: the set, the internal port their wakeups arrive on (an extra port of the
// isolate, never delivered to the handler), the deadline handed to the event handler, and
// whether a self-post for zero-delay timers is queued.
struct IsolateTimers {
  explicit IsolateTimers(std::int64_t now_ns) : set(now_ns) {}
  TimerSet set;
  PortId port = PortId::none;
  // Who keeps the next deadline: the isolate's pool (the shared one or a dedicated runner),
  // whose idle worker waits for it itself; else (an embedder's runner) the event handler.
  ThreadPool* pool = nullptr;
  std::optional<std::int64_t> registered;
  bool self_post_pending = false;
  TimerStats reported;  // counters already added to the runtime's
  // The isolate's cached "now" (Isolate::cached_now): read at most once per message (or per
  // timer callback), like libuv's loop time, for callers who arm many timers at absolute
  // deadlines and accept a reading that may be a little old.
  std::int64_t now_ns = 0;
  std::uint64_t now_stamp = ~std::uint64_t{0};
};

namespace {

std::int64_t monotonic_ns() noexcept {
  return MonotonicClock().now().count();
}

#if defined(EVH_DEBUG_CHECKS)
// This thread's identity for the "one thread per isolate" check: the address of a thread_local.
thread_local const char tls_thread_tag = 0;
#endif

// A turn that finds a message claimed but not yet written waits this many backoff steps for the
// producer to finish its two stores, then gives way (the producer was probably preempted).
constexpr int kPendingSnoozes = 64;

// A timer wakeup this soon after a batch is waited for on the spot (see on_timer_message): on
// the VMs this was tuned on a timed sleep costs ~27 µs of CPU and wakes ~25 µs late, so polling
// a shorter gap costs less CPU and no lateness.
constexpr std::int64_t kTimerSpinNs = 20'000;

// Lingering (see run()): after this many messages in one turn, an empty queue is waited on
// for kLinger before the turn goes idle, at most kMaxLingers times in a row without a message.
constexpr std::uint32_t kLingerAfter = 8;
constexpr std::uint32_t kMaxLingers = 2;
constexpr auto kLinger = std::chrono::nanoseconds(1500);

void linger() noexcept {
  const auto until = std::chrono::steady_clock::now() + kLinger;
  do {
    for (int i = 0; i < 8; ++i) cpu_relax();
  } while (std::chrono::steady_clock::now() < until);
}

void close_port_state(RuntimeImpl& runtime, PortState* port) noexcept {
  if (!port->mark_closed()) return;
  if (PortState* in_map = runtime.map().erase(port->id())) in_map->release();
  runtime.end_port_io(*port);  // its fd registrations and timeout end with it
}

}  // namespace

IsolateImpl::IsolateImpl(RuntimeImpl& runtime, IsolateHandler handler,
                         const IsolateOptions& options, std::uint32_t budget)
    : budget_(budget),
      runtime_(&runtime),
      runner_(options.runner != nullptr ? options.runner : &runtime.pool()),
      data_(options.data),
      handler_(handler) {
  if (options.errors_are_fatal) life().errors_fatal = true;
#if !defined(EVH_DEBUG_CHECKS)
  static_assert(sizeof(IsolateImpl) == 256, "an idle isolate should stay within four lines");
#endif
}

IsolateImpl::~IsolateImpl() {
  // No reference is left, so no producer can reach the queues: release what is in them.
  queue_destroy(normal_tail_, normal_head_);
  delete oob_.load(std::memory_order_acquire);
  if (microtasks_ != nullptr) {
    for (const Microtask& t : *microtasks_) {
      if (t.drop != nullptr) t.drop(t.arg);
    }
    delete microtasks_;
  }
  delete timers_;  // its set has been emptied at death; any timer left is disarmed here
  IsolateLife* life = life_.load(std::memory_order_acquire);
  EVH_ASSERT(life == nullptr || life->extra_ports.empty(), "open ports keep an isolate alive");
  delete life;
  if (handler_.destroy_user != nullptr) handler_.destroy_user(handler_.user);
  runtime_->note_isolate_freed();
}

void IsolateImpl::release() noexcept {
  // acq_rel: the last releaser sees every other holder's writes before destroying.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    RuntimeImpl& runtime = *runtime_;
    this->~IsolateImpl();
    runtime.isolate_slab().deallocate(this);
  }
}

MpscQueue* IsolateImpl::oob_queue() noexcept {
  MpscQueue* q = oob_.load(std::memory_order_acquire);
  if (q != nullptr) return q;
  auto* fresh = new MpscQueue;
  // acq_rel: publishes the new queue (release) or sees the winner's (acquire).
  if (oob_.compare_exchange_strong(q, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;
  return q;
}

void IsolateImpl::enqueue(Message&& message, Priority priority) noexcept {
  if (priority == Priority::oob) {
    oob_queue()->push(std::move(message));
  } else {
    queue_push(normal_tail_, std::move(message));
  }
  // seq_cst: pairs with the turn's seq_cst store of kIdle (see the header's argument).
  if (state_.load(std::memory_order_seq_cst) == kIdle) try_schedule();
}

bool IsolateImpl::try_schedule() noexcept {
  std::uint32_t expected = kIdle;
  // acq_rel: acquire pairs with the previous turn's store of kIdle, so the next turn sees what
  // the previous one did; release publishes our push to whoever runs the turn.
  if (!state_.compare_exchange_strong(expected, kScheduled, std::memory_order_acq_rel)) {
    return false;
  }
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  retain();  // the turn's reference
  runner_->post(*this);
  return true;
}

bool IsolateImpl::has_work() noexcept {
  // seq_cst loads: the other half of the lost-wakeup argument in the header.
  if (dead_requested_.load(std::memory_order_seq_cst)) return true;
  if (MpscQueue* q = oob_.load(std::memory_order_acquire); q != nullptr && q->has_claimed()) {
    return true;
  }
  return pause_count_.load(std::memory_order_seq_cst) == 0 &&
         queue_has_claimed(normal_tail_, normal_head_);
}

bool IsolateImpl::has_work_since(std::uint64_t normal_head, std::uint64_t oob_head) const noexcept {
  // seq_cst loads: the other half of the lost-wakeup argument in the header.
  if (dead_requested_.load(std::memory_order_seq_cst)) return true;
  if (MpscQueue* q = oob_.load(std::memory_order_acquire);
      q != nullptr && q->tail.pos.load(std::memory_order_seq_cst) != oob_head) {
    return true;
  }
  return pause_count_.load(std::memory_order_seq_cst) == 0 &&
         normal_tail_.pos.load(std::memory_order_seq_cst) != normal_head;
}

bool IsolateImpl::owns_turn() const noexcept {
#if defined(EVH_DEBUG_CHECKS)
  return running_on_.load(std::memory_order_relaxed) == &tls_thread_tag;
#else
  return true;
#endif
}

void IsolateImpl::run() noexcept {
#if defined(EVH_DEBUG_CHECKS)
  const void* previous = running_on_.exchange(&tls_thread_tag, std::memory_order_acq_rel);
  EVH_ASSERT(previous == nullptr, "two threads ran one isolate at once");
  auto leave = [this] { running_on_.store(nullptr, std::memory_order_release); };
  auto enter = [this] {
    const void* prev = running_on_.exchange(&tls_thread_tag, std::memory_order_acq_rel);
    EVH_ASSERT(prev == nullptr, "two threads ran one isolate at once");
  };
#else
  auto leave = [] {};
  auto enter = [] {};
#endif
  bump(turns_);
  std::uint32_t handled = 0;
  std::uint32_t lingers = 0;
  int pending_snoozes = 0;
  Backoff backoff;
  std::chrono::steady_clock::time_point slice_end{};
  for (;;) {
    if (dead_requested_.load(std::memory_order_acquire)) {
      leave();
      finish_dead();
      return;
    }
    Message message;
    PopResult got = PopResult::empty;
    if (MpscQueue* q = oob_.load(std::memory_order_acquire); q != nullptr) got = q->pop(message);
    if (got != PopResult::item && pause_count_.load(std::memory_order_acquire) == 0) {
      PopResult normal = queue_pop(normal_tail_, normal_head_, message);
      if (normal != PopResult::empty) got = normal;
    }
    if (got == PopResult::item) {
      pending_snoozes = 0;
      lingers = 0;
      deliver(message);
      ++handled;
      bool give_way = handled >= budget_ || runner_->work_is_waiting();
      // The clock is read every 16 messages only: a turn of a few messages (the ping-pong case)
      // costs no clock read, and a flood pays one read per 16 messages. The slice is counted from
      // the 16th message.
      if (!give_way && (handled & 15) == 0) {
        const auto now = std::chrono::steady_clock::now();
        if (handled == 16) {
          slice_end = now + runtime_->options().time_slice;
        } else {
          give_way = now >= slice_end;
        }
      }
      // An isolate that has just been told to end (its exit rule, a kill) finishes now rather
      // than giving way: finishing only releases what it holds, and queued behind fresh work it
      // would hold it (a language runtime's whole heap) until the fresh work is done.
      if (give_way && !dead_requested_.load(std::memory_order_acquire) && has_work()) {
        yields_.store(yields_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        leave();
        runner_->post_yielded(*this);  // keeps the turn's reference
        return;
      }
      continue;
    }
    if (got == PopResult::pending) {
      // A producer claimed a slot and has not yet published it: it is between two stores.
      if (++pending_snoozes < kPendingSnoozes) {
        backoff.snooze();
        continue;
      }
      yields_.store(yields_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      leave();
      runner_->post_yielded(*this);
      return;
    }
    // Empty. In the middle of a stream (this turn has handled several messages), wait a moment
    // without touching any producer's cache line before looking again: the producers get ahead
    // and the turn then reads a batch of finished slots, instead of chasing the producer slot by
    // slot (each look at a slot being written costs the producer a cache-line transfer) or
    // going idle and costing the producer a reschedule per handful of messages.
    if (handled >= kLingerAfter && lingers < kMaxLingers && !runner_->work_is_waiting()) {
      ++lingers;
      linger();
      continue;
    }
    // Empty: go idle, then re-check (see the header for why this cannot lose a wakeup).
    const std::uint64_t normal_seen = normal_head_.pos;
    MpscQueue* oob = oob_.load(std::memory_order_acquire);
    const std::uint64_t oob_seen = oob != nullptr ? oob->head.pos : 0;
    leave();
    state_.store(kIdle, std::memory_order_seq_cst);
    if (has_work_since(normal_seen, oob_seen)) {
      std::uint32_t expected = kIdle;
      if (state_.compare_exchange_strong(expected, kScheduled, std::memory_order_acq_rel)) {
        enter();
        continue;
      }
    }
    release();  // the turn's reference; may free this
    return;
  }
}

void IsolateImpl::deliver(Message& message) noexcept {
  // The main port is the fast path; timer wakeups come to an extra port (the slow path).
  if (message.port() != main_port_id_) [[unlikely]] {
    if (message.port() == PortId::none) {
      on_control_message(message);
      return;
    }
    if (timers_ != nullptr && message.port() == timers_->port) {
      on_timer_message(message);
      exit_if_unreachable();
      return;
    }
  }
  if (!is_open_port(message.port())) {
    bump(dropped_);
    return;  // the caller's `message` releases the payload on this thread
  }
  try {
    handler_.on_message(*this, message, handler_.user);
  } catch (...) {
    report_exception();
  }
  bump(handled_);
  run_microtasks();
  if (timers_dirty_) sync_timer_wakeup();
  // The exit rule looks only when the main port is closed (it is on this line already).
  if (main_closed_.load(std::memory_order_relaxed)) [[unlikely]]
    exit_if_unreachable();
}

bool IsolateImpl::is_open_port(PortId id) noexcept {
  if (id == main_port_id_) return !main_closed_.load(std::memory_order_acquire);
  IsolateLife* life = life_.load(std::memory_order_acquire);
  if (life == nullptr) return false;
  FlagLock lock(ports_lock_);
  for (PortState* p : life->extra_ports) {
    if (p->id() == id) return !p->is_closed();
  }
  return false;
}

void IsolateImpl::run_microtasks() noexcept {
  if (microtasks_ == nullptr) return;
  // A microtask may schedule more: index, do not iterate, and copy each entry out first.
  for (std::size_t i = 0; i < microtasks_->size(); ++i) {
    Microtask t = (*microtasks_)[i];
    try {
      t.fn(*this, t.arg);
    } catch (...) {
      report_exception();
    }
  }
  microtasks_->clear();
}

void IsolateImpl::report_exception() noexcept {
  exceptions_.store(exceptions_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::exception_ptr error = std::current_exception();
  runtime_->note_exception(*this, error);
  tell_error_listeners(error);
}

bool IsolateImpl::close_main_port() noexcept {
  if (main_closed_.exchange(true, std::memory_order_acq_rel)) return false;
  // The map holds the only reference the isolate side has; SendPorts may hold more.
  if (PortState* port = runtime_->map().erase(main_port_id_)) {
    port->mark_closed();
    runtime_->end_port_io(*port);
    port->release();
  }
  return true;
}

void IsolateImpl::close_all_ports() noexcept {
  close_main_port();
  std::vector<PortState*> extra;
  {
    FlagLock lock(ports_lock_);
    if (IsolateLife* life = life_.load(std::memory_order_acquire)) extra.swap(life->extra_ports);
  }
  for (PortState* p : extra) {
    close_port_state(*runtime_, p);
    p->release();  // the isolate's reference
  }
}

void IsolateImpl::finish_dead() noexcept {
  std::uint64_t released = queue_drain(normal_tail_, normal_head_);
  if (MpscQueue* q = oob_.load(std::memory_order_acquire); q != nullptr) released += q->drain();
  bump(dropped_, released);
  if (timers_ != nullptr) {
    // Every timer is disarmed without running; the event handler forgets the deadline (its
    // timeout message, if already posted, is dropped with the closed port).
    timers_->set.cancel_all();
    report_timer_counters();
    if (timers_->registered) {
      if (timers_->pool != nullptr) {
        timers_->pool->clear_timeout(static_cast<std::uint64_t>(timers_->port));
      } else if (auto eh = runtime_->event_handler(); eh.ok()) {
        (void)(*eh)->clear_timeout(timers_->port);
      }
      timers_->registered.reset();
    }
  }
  const auto reason = static_cast<ExitReason>(exit_reason_.load(std::memory_order_acquire));
  release_held_locks();
  release_resources(reason);
  tell_exit_listeners(reason);
  // No message will be delivered again: release the handler's state now rather than when the
  // memory goes. Handlers that hold SendPorts to each other would otherwise keep each other's
  // memory (and so their state) alive for as long as the runtime lives.
  if (DropFn drop = std::exchange(handler_.destroy_user, nullptr); drop != nullptr) {
    drop(handler_.user);
  }
  // seq_cst: a producer that loads kDead after this does not schedule; what it pushes later is
  // released by the destructor.
  state_.store(kDead, std::memory_order_seq_cst);
  state_.notify_all();
  release();  // the turn's reference; may free this
}

IsolateLife& IsolateImpl::life() noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l != nullptr) return *l;
  auto* fresh = new IsolateLife;
  // acq_rel: publishes the new record (release) or sees the winner's (acquire).
  if (life_.compare_exchange_strong(l, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;
  return *l;
}

Status IsolateImpl::attach(IsolateResource& resource) noexcept {
  IsolateLife& l = life();
  std::lock_guard lock(l.mu);
  if (l.exited || resource.attached_) {
    return l.exited ? Status{Errc::isolate_dead} : Status{Errc::invalid_argument};
  }
  resource.attached_ = true;
  resource.prev_ = nullptr;
  resource.next_ = l.resources;
  if (l.resources != nullptr) l.resources->prev_ = &resource;
  l.resources = &resource;
  return {};
}

bool IsolateImpl::detach(IsolateResource& resource) noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l == nullptr) return false;
  std::lock_guard lock(l->mu);
  if (!resource.attached_) return false;
  if (resource.prev_ != nullptr) {
    resource.prev_->next_ = resource.next_;
  } else {
    l->resources = resource.next_;
  }
  if (resource.next_ != nullptr) resource.next_->prev_ = resource.prev_;
  resource.prev_ = resource.next_ = nullptr;
  resource.attached_ = false;
  return true;
}

void IsolateImpl::release_resources(ExitReason reason) noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l == nullptr) return;
  std::lock_guard lock(l->mu);
  l->exited = true;
  // Each resource is unlinked before it is told, with the lock held: a detach() racing with
  // this waits for the call to end and then finds the resource no longer attached.
  while (IsolateResource* r = l->resources) {
    l->resources = r->next_;
    if (r->next_ != nullptr) r->next_->prev_ = nullptr;
    r->prev_ = r->next_ = nullptr;
    r->attached_ = false;
    r->on_isolate_exit(*this, reason);
  }
}

void IsolateImpl::kill(KillPriority priority, ExitReason reason) noexcept {
  if (priority == KillPriority::immediate) {
    interrupt_.fetch_or(kInterruptKill, std::memory_order_acq_rel);
  }
  if (closing_.exchange(true, std::memory_order_seq_cst)) return;  // idempotent
  exit_reason_.store(static_cast<std::uint8_t>(reason), std::memory_order_release);
  // Ports first: after this no post can reach the mailbox through a port, only racing ones
  // already past the check, whose messages are drained below or by the destructor.
  close_all_ports();
  dead_requested_.store(true, std::memory_order_seq_cst);
  std::uint32_t expected = kIdle;
  // Idle: claim the mailbox and drain it here, now. Otherwise the current or queued turn sees
  // dead_requested_ at its next message boundary and drains it on the runner.
  if (state_.compare_exchange_strong(expected, kScheduled, std::memory_order_acq_rel)) {
    retain();
    run();
  }
  runtime_->unregister_isolate(*this);  // drops the registry's reference last
}

void IsolateImpl::wait_dead() noexcept {
  for (std::uint32_t s = state_.load(std::memory_order_acquire); s != kDead;
       s = state_.load(std::memory_order_acquire)) {
    state_.wait(s, std::memory_order_acquire);
  }
}

IsolateStats IsolateImpl::stats() const noexcept {
  IsolateStats s;
  s.handled = handled_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.exceptions = exceptions_.load(std::memory_order_relaxed);
  s.turns = turns_.load(std::memory_order_relaxed);
  s.wakeups = wakeups_.load(std::memory_order_relaxed);
  s.yields = yields_.load(std::memory_order_relaxed);
  return s;
}

Result<PortId> IsolateImpl::open_port() {
  EVH_ASSERT(owns_turn(), "open_port() is for the isolate's own turn");
  if (is_dead()) return Errc::isolate_dead;
  const PortId id = runtime_->next_port_id();
  auto* port = PortState::make(id, this, &runtime_->port_slab());  // our reference
  runtime_->map().insert(port);
  {
    FlagLock lock(ports_lock_);
    // Checked under the lock: destroy() sets closing_ before it takes the lock to close the
    // ports, so either it sees this port or we see the flag.
    if (!closing_.load(std::memory_order_seq_cst)) {
      life().extra_ports.push_back(port);
      return id;
    }
  }
  close_port_state(*runtime_, port);
  port->release();
  return Errc::isolate_dead;
}

Status IsolateImpl::close_port(PortId id) noexcept {
  if (id == main_port_id_) {
    if (!close_main_port()) return Errc::unknown_port;
    send_control(kControlCheckExit, {}, {});
    return {};
  }
  PortState* found = nullptr;
  {
    FlagLock lock(ports_lock_);
    if (IsolateLife* life = life_.load(std::memory_order_acquire)) {
      auto& extra = life->extra_ports;
      for (auto it = extra.begin(); it != extra.end(); ++it) {
        if ((*it)->id() == id) {
          found = *it;
          extra.erase(it);
          break;
        }
      }
    }
  }
  if (found == nullptr) return Errc::unknown_port;
  close_port_state(*runtime_, found);
  found->release();
  // The exit rule: an isolate left without open ports exits; a turn checks (this may be called
  // from any thread, with the isolate idle).
  if (main_closed_.load(std::memory_order_acquire)) send_control(kControlCheckExit, {}, {});
  return {};
}

void IsolateImpl::schedule_microtask(MicrotaskFn fn, void* arg, DropFn drop) {
  EVH_ASSERT(owns_turn(), "schedule_microtask() is for the isolate's own turn");
  if (microtasks_ == nullptr) microtasks_ = new std::vector<Microtask>;
  microtasks_->push_back(Microtask{fn, arg, drop});
}

IsolateTimers* IsolateImpl::timers_or_create() noexcept {
  if (timers_ != nullptr) return timers_;
  ThreadPool* pool = runtime_->timer_pool_for(runner_);
  // The event handler must be there before the first deadline is handed to it.
  if (pool == nullptr && !runtime_->event_handler().ok()) return nullptr;
  auto port = open_port();
  if (!port.ok()) return nullptr;
  timers_ = new IsolateTimers(monotonic_ns());
  timers_->port = *port;
  timers_->pool = pool;
  timers_->set.runtime_lateness = &runtime_->timer_lateness();
  return timers_;
}

Result<IsolateTimers*> IsolateImpl::timers_for_start(TimerFn fn) noexcept {
  if (fn == nullptr) return Errc::invalid_argument;
  if (is_dead()) return Errc::isolate_dead;
  if (timers_ == nullptr && timers_or_create() == nullptr) {
    auto eh = runtime_->event_handler();
    return eh.ok() ? Errc::isolate_dead : eh.error();
  }
  return timers_;
}

Status IsolateImpl::start_timer(Timer& t, std::int64_t delay_ns, std::int64_t period_ns, TimerFn fn,
                                Slack slack) {
  EVH_ASSERT(owns_turn(), "timers are for the isolate's own turn");
  if (delay_ns < 0 || period_ns < 0) return Errc::invalid_argument;
  auto tm = timers_for_start(fn);
  if (!tm.ok()) return tm.error();
  // The clock is read here, at the call, so that the deadline is `delay` after the caller's own
  // reading of "now" (SEMANTICS 11); a cached per-message time could be milliseconds old.
  (*tm)->set.start(t, monotonic_ns(), delay_ns, period_ns, fn, slack);
  timers_dirty_ = true;
  return {};
}

Status IsolateImpl::start_timer_at(Timer& t, std::int64_t deadline_ns, std::int64_t period_ns,
                                   TimerFn fn, Slack slack) {
  EVH_ASSERT(owns_turn(), "timers are for the isolate's own turn");
  if (period_ns < 0) return Errc::invalid_argument;
  auto tm = timers_for_start(fn);
  if (!tm.ok()) return tm.error();
  // "now" only decides between the wheel and the due-at-once list, and the slack of the time
  // left: the cached reading is enough for that, and it never runs ahead of the clock.
  (*tm)->set.start_at(t, cached_now_ns(), deadline_ns, period_ns, fn, slack);
  timers_dirty_ = true;
  return {};
}

std::int64_t IsolateImpl::cached_now_ns() noexcept {
  // The cache lives with the timers (an idle isolate without timers pays nothing for it); a
  // caller of cached_now() is about to arm timers, so creating them here costs nothing extra.
  if (timers_ == nullptr && timers_or_create() == nullptr) return monotonic_ns();
  IsolateTimers& tm = *timers_;
  const std::uint64_t stamp = handled_.load(std::memory_order_relaxed);
  if (tm.now_stamp != stamp) {
    tm.now_ns = monotonic_ns();
    tm.now_stamp = stamp;
  }
  return tm.now_ns;
}

void IsolateImpl::cancel_timer(Timer& t) noexcept {
  if (timers_ == nullptr || !t.armed()) return;
  timers_->set.cancel(t);
  timers_dirty_ = true;
}

TimerStats IsolateImpl::timer_stats() const noexcept {
  return timers_ != nullptr ? timers_->set.stats() : TimerStats{};
}

void IsolateImpl::on_timer_message(const Message& message) noexcept {
  IsolateTimers& tm = *timers_;
  if (auto ev = decode_io_event(message); ev && ev->notice == IoNotice::timeout) {
    // The event handler forgets a deadline once it has fired it.
    if (tm.registered == ev->deadline_ns) tm.registered.reset();
  } else {
    tm.self_post_pending = false;
  }
  run_timer_batch();
  // Timers that fell due while the batch ran — and a wakeup due within kTimerSpinNs, of any
  // class — run in further batches of this same message instead of after a round trip through the
  // runner (post, schedule, turn): with dense timers that round trip is most of their lateness.
  // Each is a new batch, so a timer started by a callback still never runs in its own batch.
  // It stops as soon as another task waits for this thread, and at the end of each time slice
  // if a message waits for this isolate (the timers do not starve its messages). With neither,
  // it goes on: leaving costs a round trip through the runner, and that round trip, every
  // slice, was where dense exact timers ran late.
  const std::int64_t slice = std::chrono::nanoseconds(runtime_->options().time_slice).count();
  std::int64_t until = monotonic_ns() + slice;
  while (!dead_requested_.load(std::memory_order_acquire) && !runner_->work_is_waiting()) {
    const std::optional<std::int64_t> next = tm.set.next_wakeup();
    if (!next) break;
    std::int64_t now = monotonic_ns();
    if (now >= until) {
      if (has_work()) break;
      until = now + slice;
    }
    if (*next > now) {
      if (*next - now > kTimerSpinNs) break;
      while (now < *next && !runner_->work_is_waiting()) {
        cpu_relax();
        now = monotonic_ns();
      }
      if (now < *next) break;
    }
    run_timer_batch();
  }
  sync_timer_wakeup();
}

void IsolateImpl::run_timer_batch() noexcept {
  TimerSet& set = timers_->set;
  if (set.begin_batch(monotonic_ns()) == 0) return;
  std::uint64_t skipped = 0;
  IsolateTimers& tm = *timers_;
  // The clock is read before the first callback and then every 8: cheap enough for batches of
  // thousands, close enough for the lateness statistics.
  std::int64_t now = monotonic_ns();
  for (std::uint32_t n = 0; !dead_requested_.load(std::memory_order_acquire); ++n) {
    if (n != 0 && (n & 7) == 0) now = monotonic_ns();
    Timer* t = set.next_in_batch(now, skipped);
    if (t == nullptr) break;
    tm.now_ns = now;  // cached_now() in this callback: the time it started
    tm.now_stamp = handled_.load(std::memory_order_relaxed);
    try {
      TimerSet::callback (*t)(*this, *t, skipped);
    } catch (...) {
      report_exception();
    }
    run_microtasks();
  }
  // Killed mid-batch: the rest of the batch does not run (finish_dead disarms it).
}

void IsolateImpl::report_timer_counters() noexcept {
  IsolateTimers& tm = *timers_;
  const TimerStats now = tm.set.stats_counters();
  TimerStats d;
  d.started = now.started - tm.reported.started;
  d.fired = now.fired - tm.reported.fired;
  d.cancelled = now.cancelled - tm.reported.cancelled;
  d.batches = now.batches - tm.reported.batches;
  d.largest_batch = now.largest_batch;
  const auto live_delta =
      static_cast<std::int64_t>(now.live) - static_cast<std::int64_t>(tm.reported.live);
  if (d.started != 0 || d.fired != 0 || d.cancelled != 0 || d.batches != 0 || live_delta != 0) {
    runtime_->add_timer_counters(d, live_delta);
    tm.reported = now;
  }
}

void IsolateImpl::sync_timer_wakeup() noexcept {
  timers_dirty_ = false;
  IsolateTimers& tm = *timers_;
  report_timer_counters();
  if (is_dead()) return;
  if (tm.set.has_zero_delay()) {
    // One self-post per turn runs every zero-delay timer, in order with the due ones.
    if (!tm.self_post_pending) {
      tm.self_post_pending = true;
      Message wake = Message::u64(0);
      wake.set_port(tm.port);
      enqueue(std::move(wake), Priority::normal);
    }
    return;
  }
  const std::optional<std::int64_t> next = tm.set.next_wakeup();
  if (next == tm.registered) return;  // only when the earliest deadline changes
  if (tm.pool != nullptr) {
    if (next) {
      tm.pool->set_timeout(static_cast<std::uint64_t>(tm.port), *next, tm.set.last_wakeup_exact());
    } else {
      tm.pool->clear_timeout(static_cast<std::uint64_t>(tm.port));
    }
    tm.registered = next;
    return;
  }
  auto eh = runtime_->event_handler();
  if (!eh.ok()) return;  // shutting down: timers will not fire again
  Status st = next ? (*eh)->set_timeout(
                         tm.port, EventHandler::Clock::time_point(std::chrono::nanoseconds(*next)))
                   : (*eh)->clear_timeout(tm.port);
  if (st.ok()) tm.registered = next;
}

// The exit rule (SEMANTICS: an isolate exits when it has no open port and an empty queue):
// with no port anyone can post to and no live timer, nothing can reach it any more.
void IsolateImpl::exit_if_unreachable() noexcept {
  if (closing_.load(std::memory_order_acquire) || !main_closed_.load(std::memory_order_acquire)) {
    return;
  }
  if (IsolateLife* l = life_.load(std::memory_order_acquire)) {
    FlagLock lock(ports_lock_);
    for (PortState* p : l->extra_ports) {
      if (timers_ == nullptr || p->id() != timers_->port) return;  // a port someone can post to
    }
  }
  if (timers_ != nullptr && (timers_->set.live() != 0 || timers_->set.has_zero_delay())) return;
  kill(KillPriority::before_next_event, ExitReason::normal);
}

}  // namespace detail

// The public face: Isolate has no data of its own; every call forwards to IsolateImpl.
using detail::IsolateImpl;

PortId Isolate::main_port() const noexcept {
  return IsolateImpl::of(*this).main_port_id();
}
void* Isolate::data() const noexcept {
  return IsolateImpl::of(*this).data();
}
Runtime& Isolate::runtime() const noexcept {
  return IsolateImpl::of(*this).runtime_impl().owner();
}
bool Isolate::is_dead() const noexcept {
  return IsolateImpl::of(*this).is_dead();
}
IsolateStats Isolate::stats() const noexcept {
  return IsolateImpl::of(*this).stats();
}
PauseCapability Isolate::pause(PauseCapability capability) noexcept {
  return IsolateImpl::of(*this).pause(capability);
}
Status Isolate::resume(PauseCapability capability) noexcept {
  return IsolateImpl::of(*this).resume(capability);
}
Status Isolate::ping(PortId reply, Message response, ControlPriority priority) noexcept {
  return IsolateImpl::of(*this).ping(reply, std::move(response), priority);
}
Status Isolate::add_exit_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).add_listener(true, port);
}
Status Isolate::remove_exit_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).remove_listener(true, port);
}
Status Isolate::add_error_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).add_listener(false, port);
}
Status Isolate::remove_error_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).remove_listener(false, port);
}
void Isolate::set_errors_fatal(bool fatal) noexcept {
  IsolateImpl::of(*this).set_errors_fatal(fatal);
}
Status Isolate::handle_interrupts() noexcept {
  return IsolateImpl::of(*this).handle_interrupts();
}
void Isolate::destroy() noexcept {
  IsolateImpl::of(*this).destroy();
}
bool Isolate::interrupt_requested() const noexcept {
  return IsolateImpl::of(*this).interrupt_requested();
}
void Isolate::kill(KillPriority priority) noexcept {
  IsolateImpl::of(*this).kill(priority);
}
Status Isolate::attach(IsolateResource& resource) noexcept {
  return IsolateImpl::of(*this).attach(resource);
}
bool Isolate::detach(IsolateResource& resource) noexcept {
  return IsolateImpl::of(*this).detach(resource);
}
Result<PortId> Isolate::open_port() {
  return IsolateImpl::of(*this).open_port();
}
Status Isolate::close_port(PortId port) noexcept {
  return IsolateImpl::of(*this).close_port(port);
}
void Isolate::schedule_microtask(MicrotaskFn fn, void* arg, DropFn drop) {
  IsolateImpl::of(*this).schedule_microtask(fn, arg, drop);
}
Status Isolate::start_timer(Timer& timer, std::chrono::nanoseconds delay, TimerFn fn, Slack slack) {
  return IsolateImpl::of(*this).start_timer(timer, delay.count(), 0, fn, slack);
}
Status Isolate::start_periodic(Timer& timer, std::chrono::nanoseconds period, TimerFn fn,
                               Slack slack) {
  if (period.count() <= 0) return Errc::invalid_argument;
  return IsolateImpl::of(*this).start_timer(timer, period.count(), period.count(), fn, slack);
}
Status Isolate::start_timer_at(Timer& timer, TimePoint deadline, TimerFn fn, Slack slack) {
  return IsolateImpl::of(*this).start_timer_at(timer, deadline.count(), 0, fn, slack);
}
Status Isolate::start_periodic_at(Timer& timer, TimePoint first, std::chrono::nanoseconds period,
                                  TimerFn fn, Slack slack) {
  if (period.count() <= 0) return Errc::invalid_argument;
  return IsolateImpl::of(*this).start_timer_at(timer, first.count(), period.count(), fn, slack);
}
TimePoint Isolate::now() const noexcept {
  return MonotonicClock().now();
}
TimePoint Isolate::cached_now() noexcept {
  return TimePoint(IsolateImpl::of(*this).cached_now_ns());
}
void Isolate::cancel_timer(Timer& timer) noexcept {
  IsolateImpl::of(*this).cancel_timer(timer);
}
TimerStats Isolate::timer_stats() const noexcept {
  return IsolateImpl::of(*this).timer_stats();
}

namespace detail {
void retain(Isolate* isolate) noexcept {
  IsolateImpl::of(*isolate).retain();
}
void release(Isolate* isolate) noexcept {
  IsolateImpl::of(*isolate).release();
}
}  // namespace detail

}  // namespace evh
