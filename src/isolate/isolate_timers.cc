#include "isolate/isolate_timers.h"

#include <evh/event_handler.h>

#include <chrono>
#include <optional>

#include "base/alloc_fault.h"
#include "base/assert.h"
#include "base/message_access.h"
#include "base/mono_time.h"
#include "isolate/isolate_impl.h"
#include "isolate/isolate_life.h"
#include "sync/spin.h"

namespace evh::detail {
namespace {

// A timer wakeup this soon after a batch is waited for on the spot (see on_wakeup): on the VMs
// this was tuned on a timed sleep costs ~27 µs of CPU and wakes ~25 µs late, so polling a
// shorter gap costs less CPU and no lateness.
constexpr std::int64_t kTimerSpinNs = 20'000;

}  // namespace

// ---- the isolate's side: created on the first start --------------------------------------------

IsolateTimers* IsolateImpl::timers_if_any() const noexcept {
  const IsolateLife* l = life_if_any();
  // acquire: pairs with the release store in timers_or_create (stats from another thread).
  return l != nullptr ? l->timers.load(std::memory_order_acquire) : nullptr;
}

Result<IsolateTimers*> IsolateImpl::timers_or_create() noexcept {
  if (IsolateTimers* timers = timers_if_any(); timers != nullptr) return timers;
  // The keeper (the event handler, for an embedder's runner) must be there before the first
  // deadline is handed to it.
  TaskRunner& runner = this->runner();
  auto keeper = host().deadline_keeper(runner);
  if (!keeper.ok()) return keeper.error();
  auto port = open_port();  // creates the life record
  if (!port.ok()) return port.error();
  IsolateTimers* timers = nullptr;
  try {
    alloc_site();
    timers = new IsolateTimers(*this, *port, **keeper, host().runner_reports_waiting_work(runner));
  } catch (const std::bad_alloc&) {
    (void)close_port(*port);
    return std::make_error_code(std::errc::not_enough_memory);
  }
  life().timers.store(timers, std::memory_order_release);
  return timers;
}

Result<IsolateTimers*> IsolateImpl::timers_for_start(TimerFn fn) noexcept {
  if (fn == nullptr) return Errc::invalid_argument;
  if (is_dead()) return Errc::isolate_dead;
  return timers_or_create();
}

Status IsolateImpl::start_timer(Timer& t, std::int64_t delay_ns, std::int64_t period_ns, TimerFn fn,
                                Slack slack) {
  if (!owns_turn()) return Errc::wrong_thread;
  if (delay_ns < 0 || period_ns < 0) return Errc::invalid_argument;
  auto tm = timers_for_start(fn);
  if (!tm.ok()) return tm.error();
  if (!(*tm)->start(t, delay_ns, period_ns, fn, slack)) return Errc::wrong_thread;
  timers_dirty_ = true;
  return {};
}

Status IsolateImpl::start_timer_at(Timer& t, std::int64_t deadline_ns, std::int64_t period_ns,
                                   TimerFn fn, Slack slack) {
  if (!owns_turn()) return Errc::wrong_thread;
  if (period_ns < 0) return Errc::invalid_argument;
  auto tm = timers_for_start(fn);
  if (!tm.ok()) return tm.error();
  if (!(*tm)->start_at(t, deadline_ns, period_ns, fn, slack)) return Errc::wrong_thread;
  timers_dirty_ = true;
  return {};
}

std::int64_t IsolateImpl::cached_now_ns() noexcept {
  // Off the isolate's turn there is no message to cache for: a plain reading.
  if (!owns_turn()) return host().clock().now_ns();
  // The cache lives with the timers (an idle isolate without timers pays nothing for it); a
  // caller of cached_now() is about to arm timers, so creating them here costs nothing extra.
  auto timers = timers_or_create();
  return timers.ok() ? (*timers)->cached_now() : host().clock().now_ns();
}

Status IsolateImpl::cancel_timer(Timer& t) noexcept {
  if (!owns_turn()) return Errc::wrong_thread;
  IsolateTimers* timers = timers_if_any();
  if (timers == nullptr) {
    // No timer was ever armed here: an armed `t` is another isolate's.
    return TimerSet::owner_of(t) == 0 ? Status{} : Status{Errc::wrong_thread};
  }
  if (TimerSet::owner_of(t) == 0) return {};  // not armed: a no-op (SEMANTICS 14)
  if (!timers->cancel(t)) return Errc::wrong_thread;
  timers_dirty_ = true;
  return {};
}

TimerStats IsolateImpl::timer_stats() const noexcept {
  IsolateTimers* timers = timers_if_any();
  return timers != nullptr ? timers->stats() : TimerStats{};
}

void IsolateImpl::after_timers_changed() noexcept {
  timers_dirty_ = false;
  timers_if_any()->hand_over();
}

// ---- IsolateTimers -----------------------------------------------------------------------------

IsolateTimers::IsolateTimers(IsolateImpl& isolate, PortId port, DeadlineKeeper& keeper,
                             bool runner_reports_work)
    : isolate_(isolate),
      host_(isolate.host()),
      clock_(host_.clock()),
      set_(clock_.now_ns()),
      port_(port),
      keeper_(keeper),
      runner_reports_work_(runner_reports_work) {
  set_.runtime_lateness = &host_.timer_lateness();
  // A manual clock moves only when told: its wakeups cost nothing, so they come at deadlines
  // and a move fires exactly what it reached, instead of waiting for a slack window to close.
  if (clock_.manual()) set_.set_wakeup_merging(TimerWheel::WakeupMerging::none);
}

bool IsolateTimers::start(Timer& t, std::int64_t delay_ns, std::int64_t period_ns, TimerFn fn,
                          Slack slack) noexcept {
  // The clock is read here, at the call, so that the deadline is `delay` after the caller's own
  // reading of "now" (SEMANTICS 11); a cached per-message time could be milliseconds old.
  return set_.start(t, clock_.now_ns(), delay_ns, period_ns, fn, slack);
}

bool IsolateTimers::start_at(Timer& t, std::int64_t deadline_ns, std::int64_t period_ns, TimerFn fn,
                             Slack slack) noexcept {
  // "now" only decides between the wheel and the due-at-once list, and the slack of the time
  // left: the cached reading is enough for that, and it never runs ahead of the clock.
  return set_.start_at(t, cached_now(), deadline_ns, period_ns, fn, slack);
}

std::int64_t IsolateTimers::cached_now() noexcept {
  const std::uint64_t stamp = isolate_.message_stamp();
  if (now_stamp_ != stamp) {
    now_ns_ = clock_.now_ns();
    now_stamp_ = stamp;
  }
  return now_ns_;
}

void IsolateTimers::on_wakeup(const Message& message) noexcept {
  if (auto ev = decode_io_event(message); ev && ev->notice == IoNotice::timeout) {
    // The keeper forgets a deadline once it has handed it over.
    if (registered_ == ev->deadline_ns) registered_.reset();
  } else {
    self_post_pending_ = false;
  }
  run_batch();
  // Timers that fell due while the batch ran — and a wakeup due within kTimerSpinNs, of any
  // class — run in further batches of this same message instead of after a round trip through the
  // runner (post, schedule, turn): with dense timers that round trip is most of their lateness.
  // Each is a new batch, so a timer started by a callback still never runs in its own batch.
  // It stops as soon as another task waits for this thread, and at the end of each time slice
  // if a message waits for this isolate (the timers do not starve its messages). With neither,
  // it goes on: leaving costs a round trip through the runner, and that round trip, every
  // slice, was where dense exact timers ran late.
  // "With neither" is known only on the runtime's own pools. An embedder's runner (a UI thread)
  // may never report waiting work, and a chain of zero-delay timers then kept every other
  // isolate on it from running: there the loop also ends at each slice's end and after the
  // isolate's budget of batches, whatever the runner says.
  // The slice is real time whatever the clock; on the monotonic clock one reading serves both.
  const bool manual = clock_.manual();
  const std::int64_t slice = host_.time_slice().count();
  std::int64_t until = saturating_add(mono_now_ns(), slice);
  std::uint32_t batches = 1;
  while (!isolate_.stop_requested() && !isolate_.runner_busy()) {
    if (!runner_reports_work_ && batches >= isolate_.budget()) break;
    const std::optional<std::int64_t> next = set_.next_wakeup();
    if (!next) break;
    std::int64_t now = clock_.now_ns();
    const std::int64_t real = manual ? mono_now_ns() : now;
    if (real >= until) {
      if (isolate_.has_work() || !runner_reports_work_) break;
      until = saturating_add(real, slice);
    }
    if (*next > now) {
      // A manual clock does not move while we poll it: hand the wakeup over instead.
      if (manual || *next > saturating_add(now, kTimerSpinNs)) break;
      while (now < *next && !isolate_.runner_busy()) {
        cpu_relax();
        now = clock_.now_ns();
      }
      if (now < *next) break;
    }
    run_batch();
    ++batches;
  }
  hand_over();
}

void IsolateTimers::run_batch() noexcept {
  if (set_.begin_batch(clock_.now_ns()) == 0) return;
  std::uint64_t skipped = 0;
  // The clock is read before the first callback and then every 8: cheap enough for batches of
  // thousands, close enough for the lateness statistics.
  std::int64_t now = clock_.now_ns();
  for (std::uint32_t n = 0; !isolate_.stop_requested(); ++n) {
    if (n != 0 && (n & 7) == 0) now = clock_.now_ns();
    Timer* t = set_.next_in_batch(now, skipped);
    if (t == nullptr) break;
    now_ns_ = now;  // cached_now() in this callback: the time it started
    now_stamp_ = isolate_.message_stamp();
    try {
      TimerSet::callback (*t)(isolate_, *t, skipped);
    } catch (...) {
      isolate_.report_exception();
    }
    isolate_.run_microtasks();
  }
  // Killed mid-batch: the rest of the batch does not run (finish() disarms it).
}

void IsolateTimers::report_counters() noexcept {
  const TimerStats now = set_.stats_counters();
  TimerStats d;
  d.started = now.started - reported_.started;
  d.fired = now.fired - reported_.fired;
  d.cancelled = now.cancelled - reported_.cancelled;
  d.batches = now.batches - reported_.batches;
  d.largest_batch = now.largest_batch;
  const auto live_delta =
      static_cast<std::int64_t>(now.live) - static_cast<std::int64_t>(reported_.live);
  if (d.started != 0 || d.fired != 0 || d.cancelled != 0 || d.batches != 0 || live_delta != 0) {
    host_.add_timer_counters(d, live_delta);
    reported_ = now;
  }
}

void IsolateTimers::hand_over() noexcept {
  report_counters();
  if (isolate_.is_dead()) return;
  if (set_.has_zero_delay()) {
    // One self-post per turn runs every zero-delay timer, in order with the due ones.
    if (!self_post_pending_) {
      self_post_pending_ = true;
      isolate_.post_to_self(port_, Message::u64(0), Priority::normal);
    }
    return;
  }
  const std::optional<std::int64_t> next = set_.next_wakeup();
  if (next == registered_) return;  // only when the earliest deadline changes
  const auto key = static_cast<std::uint64_t>(port_);
  Status st;
  if (next) {
    st = keeper_.set_deadline(
        key, *next, set_.last_wakeup_exact() ? WakeupPrecision::exact : WakeupPrecision::slack);
  } else {
    keeper_.clear_deadline(key);
  }
  // A keeper that refused (shutting down) is asked again after the next change.
  if (st.ok()) registered_ = next;
}

void IsolateTimers::finish() noexcept {
  set_.cancel_all();
  report_counters();
  if (registered_) {
    keeper_.clear_deadline(static_cast<std::uint64_t>(port_));
    registered_.reset();
  }
}

}  // namespace evh::detail
