// TimerSet: one isolate's timers — the wheel, the zero-delay list, the batch being fired, stats.
//
// Contract: single-threaded (the isolate's turn). Timer nodes are the caller's (see
// evh/timer.h). Each set has an owner id (unique among live sets, process-wide) that the timers
// armed in it carry: starting or cancelling a timer armed in another set is refused (`false`),
// and reads nothing of that timer but its owner word (an atomic), so it is no data race even when
// the other set's isolate runs at the same time. A batch is detached before its first callback:
// timers started or re-armed while it runs go to the wheel or the zero-delay list and cannot join
// it; cancelling a member of the batch unlinks it, so it does not fire.
#pragma once

#include <evh/timer.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/mono_time.h"
#include "timer/lateness_histogram.h"
#include "timer/timer_wheel.h"

namespace evh::detail {

class TimerSet {
 public:
  // Throws std::bad_alloc when no owner id can be recorded (out of memory).
  explicit TimerSet(std::int64_t now_ns);
  // See TimerWheel::WakeupMerging (a manual clock wakes at deadlines).
  void set_wakeup_merging(TimerWheel::WakeupMerging merging) noexcept {
    wheel_.set_wakeup_merging(merging);
  }
  TimerSet(const TimerSet&) = delete;
  TimerSet& operator=(const TimerSet&) = delete;
  ~TimerSet();

  // The id timers armed here carry (never 0).
  std::uint32_t owner_id() const noexcept { return owner_id_; }
  // The id of the set `t` is armed in, or 0 when it is not armed. Any thread.
  static std::uint32_t owner_of(const Timer& t) noexcept {
    // Only loaded here; atomic_ref of a const object is C++26.
    return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(t.owner_))
        .load(std::memory_order_relaxed);
  }

  // Arms `t` (re-arming it if armed): due at now + delay, then every `period_ns` if > 0.
  // Preconditions: delay_ns ≥ 0, period_ns ≥ 0. A sum past the representable range saturates.
  // False (and nothing done) when `t` is armed in another set.
  bool start(Timer& t, std::int64_t now_ns, std::int64_t delay_ns, std::int64_t period_ns,
             TimerFn fn, Slack slack) noexcept {
    return start_at(t, now_ns, saturating_add(now_ns, delay_ns), period_ns, fn, slack);
  }
  // Arms `t` (re-arming it if armed) for the absolute `deadline_ns`, then every `period_ns` if
  // > 0. A deadline at or before `now_ns` makes it due in the next batch, without a kernel timer
  // (like a zero delay), still ordered by its own deadline. The slack is that of the time left.
  // Inline, with cancel(): starting and cancelling are the hot path of timer churn. False (and
  // nothing done) when `t` is armed in another set.
  bool start_at(Timer& t, std::int64_t now_ns, std::int64_t deadline_ns, std::int64_t period_ns,
                TimerFn fn, Slack slack) noexcept {
    if (!cancel(t)) return false;
    t.fn_ = fn;
    t.period_ = period_ns;
    t.deadline_ = deadline_ns;
    const std::int64_t ahead = deadline_ns > now_ns ? saturating_sub(deadline_ns, now_ns) : 0;
    const std::int64_t slack_ns = slack.for_delay_ns(period_ns > 0 ? period_ns : ahead);
    t.slack_ =
        static_cast<std::uint32_t>(slack_ns < Slack::kMaxSlackNs ? slack_ns : Slack::kMaxSlackNs);
    set_owner(t, owner_id_);
    t.seq_ = next_seq_++;
    ++live_;
    ++started_;
    // Many timers: the wheel's walks overlap their misses from now on (one allocation, once).
    if (live_ == kWidenWheelAt) [[unlikely]]
      (void)wheel_.widen();
    if (ahead == 0) {
      zero_delay_.push_front(t);  // order is restored by the batch sort
    } else {
      wheel_.insert(t);
    }
    return true;
  }
  static constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
    return detail::saturating_add(a, b);
  }
  // Disarms `t` if armed here; nothing when it is not armed. False (and nothing done) when `t`
  // is armed in another set.
  bool cancel(Timer& t) noexcept {
    const std::uint32_t owner = owner_of(t);
    if (owner != owner_id_) return owner == 0;
    TimerList::unlink(t);  // from a wheel slot, the zero-delay list or the batch
    set_owner(t, 0);
    --live_;
    ++cancelled_;
    return true;
  }
  // Disarms every timer (isolate death): none of their callbacks runs.
  void cancel_all() noexcept;

  // Detaches every timer due at `now_ns` as the batch, sorted by (deadline, creation). Returns
  // its size. May allocate (the sort's scratch space grows to the largest batch once).
  std::size_t begin_batch(std::int64_t now_ns);
  // The next member of the batch, disarmed (one-shot) or re-armed for its next period
  // (periodic, fixed schedule: `skipped` whole periods missed are skipped and counted), or null
  // when the batch is done. `fire_ns` is the time the callback is about to run, for lateness.
  Timer* next_in_batch(std::int64_t fire_ns, std::uint64_t& skipped) noexcept;
  bool in_batch() const noexcept { return !batch_.empty(); }

  // When the isolate must look next (see TimerWheel::next_wakeup); the earliest zero-delay
  // deadline when any are pending. nullopt: no timer armed.
  std::optional<std::int64_t> next_wakeup() noexcept;
  bool has_zero_delay() const noexcept { return !zero_delay_.empty(); }
  bool last_wakeup_exact() const noexcept { return wheel_.last_wakeup_exact(); }

  TimerStats stats() const noexcept;
  // The counters only (no percentiles): cheap.
  TimerStats stats_counters() const noexcept;
  std::uint64_t live() const noexcept { return live_; }
  bool wheel_widened() const noexcept { return wheel_.widened(); }
  // The live count at which the wheel widens (TimerWheel::widen).
  static constexpr std::uint64_t kWidenWheelAt = 1024;
  static TimerFn callback(const Timer& t) noexcept { return t.fn_; }

 private:
  static void set_owner(Timer& t, std::uint32_t owner) noexcept {
    std::atomic_ref<std::uint32_t>(t.owner_).store(owner, std::memory_order_relaxed);
  }

  const std::uint32_t owner_id_;
  TimerWheel wheel_;
  TimerList zero_delay_;
  TimerList batch_;
  // The batch's sort keys, copied out so that sorting never chases a pointer: a batch of tens of
  // thousands of timers scattered in memory sorted by dereferencing took tens of milliseconds.
  struct SortKey {
    std::int64_t deadline;
    std::uint64_t seq;
    Timer* timer;
  };
  std::vector<SortKey> scratch_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t live_ = 0;
  std::uint64_t started_ = 0;
  std::uint64_t fired_ = 0;
  std::uint64_t cancelled_ = 0;
  std::uint64_t batches_ = 0;
  std::uint64_t largest_batch_ = 0;
  std::unique_ptr<IsolateLateness> lateness_;  // created by the first fire
 public:
  // The runtime-wide histogram this set also records into (may be null).
  RuntimeLateness* runtime_lateness = nullptr;
};

}  // namespace evh::detail
