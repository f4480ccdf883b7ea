#include "timer/runtime_clock.h"

#include <algorithm>
#include <stdexcept>

#include "base/assert.h"

namespace evh {
namespace detail {

struct ClockAccess {
  static void add(ManualClock& c, ClockWaiter& w) {
    std::lock_guard lock(c.mu_);
    c.waiters_.push_back(&w);
  }
  static void remove(ManualClock& c, ClockWaiter& w) noexcept {
    // Taking the lock waits out a notification in progress: once this returns, `w` is not told
    // again.
    std::lock_guard lock(c.mu_);
    std::erase(c.waiters_, &w);
  }
};

RuntimeClock::RuntimeClock(Clock* clock) {
  if (clock == nullptr || dynamic_cast<MonotonicClock*>(clock) != nullptr) return;
  manual_ = dynamic_cast<ManualClock*>(clock);
  if (manual_ == nullptr) {
    throw std::invalid_argument("evh: a runtime's clock is a MonotonicClock or a ManualClock");
  }
}

void RuntimeClock::add_waiter(ClockWaiter& waiter) const {
  if (manual_ != nullptr) ClockAccess::add(*manual_, waiter);
}

void RuntimeClock::remove_waiter(ClockWaiter& waiter) const noexcept {
  if (manual_ != nullptr) ClockAccess::remove(*manual_, waiter);
}

}  // namespace detail

ManualClock::~ManualClock() {
  EVH_ASSERT(waiters_.empty(), "a ManualClock destroyed while a runtime still waits on it");
}

bool ManualClock::set(TimePoint t) noexcept {
  std::lock_guard lock(mu_);
  // Stored under the lock: a waiter that registers after this sees the new time, one that
  // registered before is told below.
  std::int64_t cur = now_.load(std::memory_order_relaxed);
  if (t.count() < cur) return false;
  // seq_cst: partner of the seq_cst load in now() by a waiter that has just said it sleeps
  // (ReceiverImpl): either it sees this time, or clock_moved() below sees that it sleeps.
  now_.store(t.count(), std::memory_order_seq_cst);
  for (detail::ClockWaiter* w : waiters_) w->clock_moved();
  return true;
}

void ManualClock::advance(std::chrono::nanoseconds d) noexcept {
  if (d.count() <= 0) return;
  std::lock_guard lock(mu_);
  // Saturated: a move past the end of time stops there, never wraps into the past.
  now_.store(detail::saturating_add(now_.load(std::memory_order_relaxed), d.count()),
             std::memory_order_seq_cst);  // as set()
  for (detail::ClockWaiter* w : waiters_) w->clock_moved();
}

}  // namespace evh
