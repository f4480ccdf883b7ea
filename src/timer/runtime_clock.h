// RuntimeClock: the clock a runtime's timers run on (RuntimeOptions::clock), as the parts that
// read it and wait for it see it — and ClockWaiter, how a part waiting on a ManualClock hears
// that it moved.
//
// Two kinds, decided once: `monotonic` (the default, or a MonotonicClock) is read straight from
// CLOCK_MONOTONIC with no virtual call, and waited for with kernel timeouts; `manual` (a
// ManualClock) is read from the clock, and never waited for with a kernel timeout: a part that
// waits for a deadline on it registers a ClockWaiter and is told when the clock moves. No other
// Clock can drive a runtime (the Runtime constructor refuses it): evh could not tell when one
// reaches a deadline.
//
// Threads: const methods from any thread. add_waiter/remove_waiter from any thread, never from
// inside clock_moved(). Ownership: a RuntimeClock is a small value (one pointer) that parts keep
// copies of; the Clock is the embedder's and outlives the runtime.
#pragma once

#include <evh/clock.h>

#include <cstdint>

#include "base/mono_time.h"

namespace evh::detail {

class ClockWaiter {
 public:
  // The clock moved (ManualClock::set/advance). Runs on the thread that moved it, with the
  // clock's registry lock held: it hands over what became due and may wait for that to be done,
  // but must not add or remove waiters, or move the clock.
  virtual void clock_moved() noexcept = 0;

 protected:
  ~ClockWaiter() = default;
};

class RuntimeClock {
 public:
  // CLOCK_MONOTONIC.
  RuntimeClock() noexcept = default;
  // `clock`: null for CLOCK_MONOTONIC. Throws std::invalid_argument for a Clock that is neither
  // a MonotonicClock nor a ManualClock.
  explicit RuntimeClock(Clock* clock);

  std::int64_t now_ns() const noexcept {
    return manual_ == nullptr ? mono_now_ns() : manual_->now().count();
  }
  // Time moves only when told: waits for a deadline on it register a ClockWaiter instead of
  // sleeping with a kernel timeout, and polling it for a deadline is pointless.
  bool manual() const noexcept { return manual_ != nullptr; }

  // For a manual clock: `waiter` is told about every move from now on, until removed (which
  // waits out a notification in progress). Nothing for the monotonic clock.
  void add_waiter(ClockWaiter& waiter) const;
  void remove_waiter(ClockWaiter& waiter) const noexcept;

 private:
  ManualClock* manual_ = nullptr;
};

// RAII: registered with a clock for a scope.
class ClockWaiterScope {
 public:
  ClockWaiterScope(const RuntimeClock& clock, ClockWaiter& waiter)
      : clock_(clock), waiter_(waiter) {
    clock_.add_waiter(waiter_);
  }
  ~ClockWaiterScope() { clock_.remove_waiter(waiter_); }
  ClockWaiterScope(const ClockWaiterScope&) = delete;
  ClockWaiterScope& operator=(const ClockWaiterScope&) = delete;

 private:
  const RuntimeClock& clock_;
  ClockWaiter& waiter_;
};

}  // namespace evh::detail
