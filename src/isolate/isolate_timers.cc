// The isolate's timers: the glue between an isolate's turn and its TimerSet — starting and
// cancelling, running due batches, and handing the next wakeup to whoever keeps it.
#include "isolate/isolate_timers.h"

#include <evh/clock.h>
#include <evh/event_handler.h>

#include <chrono>
#include <optional>

#include "base/assert.h"
#include "base/message_access.h"
#include "isolate/isolate_impl.h"
#include "runtime/runtime_impl.h"
#include "sync/spin.h"

namespace evh {
namespace detail {

namespace {

std::int64_t monotonic_ns() noexcept {
  return MonotonicClock().now().count();
}

// A timer wakeup this soon after a batch is waited for on the spot (see on_timer_message): on
// the VMs this was tuned on a timed sleep costs ~27 µs of CPU and wakes ~25 µs late, so polling
// a shorter gap costs less CPU and no lateness.
constexpr std::int64_t kTimerSpinNs = 20'000;

}  // namespace

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
      MessageAccess::set_port(wake, tm.port);
      enqueue(std::move(wake), Priority::normal);
    }
    return;
  }
  const std::optional<std::int64_t> next = tm.set.next_wakeup();
  if (next == tm.registered) return;  // only when the earliest deadline changes
  if (tm.pool != nullptr) {
    if (next) {
      (void)tm.pool->set_deadline(
          static_cast<std::uint64_t>(tm.port), *next,
          tm.set.last_wakeup_exact() ? WakeupPrecision::exact : WakeupPrecision::slack);
    } else {
      tm.pool->clear_deadline(static_cast<std::uint64_t>(tm.port));
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

}  // namespace detail
}  // namespace evh
