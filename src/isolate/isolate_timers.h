// IsolateTimers: the glue between one isolate and its timers — created on the isolate's first
// timer (with an internal port, an extra port of the isolate never delivered to the handler,
// that its wakeups arrive on).
//
// It owns the isolate's TimerSet and does what the set cannot know about: starting and
// cancelling from the isolate's turn, running due batches when a wakeup arrives (callbacks,
// microtasks after each, exceptions caught, a kill stopping it between two callbacks), and
// handing the next wakeup to its DeadlineKeeper — only when that wakeup changed (SEMANTICS 16).
// Zero-delay timers need no keeper: the isolate posts itself one wakeup per turn. docs/TIMERS.md
// ("In the isolate") argues the loop. Deadlines are on the runtime's clock; time slices and the
// short polls for a wakeup just ahead are real time, and with a manual clock nothing polls.
//
// Threads: everything but stats() runs on the isolate's own turn; stats() reads counters that
// only the turn writes.
#pragma once

#include <evh/message.h>
#include <evh/timer.h>

#include <cstdint>
#include <optional>

#include "isolate/isolate_host.h"
#include "timer/deadline_keeper.h"
#include "timer/runtime_clock.h"
#include "timer/timer_set.h"

namespace evh::detail {

class IsolateImpl;

class IsolateTimers {
 public:
  // `port`: the isolate's timer port (already open); `keeper`: who waits for its wakeups.
  // Every time here is on the runtime's clock (the host's).
  // `runner_reports_work`: the isolate's runner says when other tasks wait for it (a pool of the
  // runtime's); otherwise the wakeup loop gives way by budget and time slice alone.
  IsolateTimers(IsolateImpl& isolate, PortId port, DeadlineKeeper& keeper,
                bool runner_reports_work);
  IsolateTimers(const IsolateTimers&) = delete;
  IsolateTimers& operator=(const IsolateTimers&) = delete;

  PortId port() const noexcept { return port_; }

  // Arms `t` `delay_ns` after this call (the clock is read here: SEMANTICS 11). These and
  // cancel() return false, doing nothing, when `t` is armed by another isolate.
  bool start(Timer& t, std::int64_t delay_ns, std::int64_t period_ns, TimerFn fn,
             Slack slack) noexcept;
  // Arms `t` for the absolute `deadline_ns`.
  bool start_at(Timer& t, std::int64_t deadline_ns, std::int64_t period_ns, TimerFn fn,
                Slack slack) noexcept;
  bool cancel(Timer& t) noexcept { return set_.cancel(t); }
  // A clock reading taken at most once per message or timer callback (Isolate::cached_now).
  std::int64_t cached_now() noexcept;
  TimerStats stats() const noexcept { return set_.stats(); }
  // Live timers or pending zero-delay ones: the isolate can still be reached (the exit rule).
  bool holds_timers() const noexcept { return set_.live() != 0 || set_.has_zero_delay(); }

  // A message to the timer port arrived (a passed deadline or the zero-delay self-post): run
  // every due batch, then hand the next wakeup over.
  void on_wakeup(const Message& message) noexcept;
  // After a message that started or cancelled timers: report the counters and hand the next
  // wakeup over if it changed.
  void hand_over() noexcept;
  // The isolate died: every timer is disarmed without running, the keeper forgets the wakeup.
  void finish() noexcept;

 private:
  void run_batch() noexcept;
  void report_counters() noexcept;

  IsolateImpl& isolate_;
  IsolateHost& host_;
  const RuntimeClock clock_;
  TimerSet set_;
  PortId port_;
  DeadlineKeeper& keeper_;
  const bool runner_reports_work_;
  std::optional<std::int64_t> registered_;  // the wakeup the keeper holds
  bool self_post_pending_ = false;
  TimerStats reported_;  // counters already added to the runtime's
  // The isolate's cached "now" (Isolate::cached_now): read at most once per message (or per
  // timer callback), like libuv's loop time, for callers who arm many timers at absolute
  // deadlines and accept a reading that may be a little old.
  std::int64_t now_ns_ = 0;
  std::uint64_t now_stamp_ = ~std::uint64_t{0};
};

}  // namespace evh::detail
