// evh/clock.h — the time source of timers: CLOCK_MONOTONIC in production, a manual clock in
// tests.
//
// A runtime's timers, port timeouts and Receiver deadlines all run on its clock
// (RuntimeOptions::clock): the monotonic clock by default, or a ManualClock, which moves only
// when told. With a ManualClock nothing the runtime times becomes due while the clock stands
// still, however much real time passes, and `set()`/`advance()` make due exactly what the new
// time has reached — so a test of timer logic is exact and takes no real time (Tokio's paused
// time, Seastar's manual clock). What evh does on real time whatever the clock — spin windows,
// time slices, idle workers timing out, accept back-offs, IsolateMutex::try_lock_for — is
// scheduling, not timing, and decides nothing about what fires.
//
// A Clock never goes backwards; evh checks it in debug builds.
//
// Threads: `now()` may be called from any thread. `ManualClock::set`/`advance` may be called
// from any thread, also from inside an isolate; calls are serialised. Each wakes every runtime
// part waiting on the clock and returns once every deadline the new time reached has been
// handed to its port as a message (an isolate's timer wakeup, a port's timeout) or to its
// waiting Receiver — in the same order as with the monotonic clock; the callbacks then run on
// the runtime's threads as usual. A message posted after `advance()` returns therefore queues
// behind the wakeups it caused.
//
// Ownership: a clock given to a runtime must outlive it.
#pragma once

#include <evh/export.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

namespace evh {

namespace detail {
class ClockWaiter;
struct ClockAccess;
}  // namespace detail

// Nanoseconds on the monotonic clock (or the manual clock's own epoch).
using TimePoint = std::chrono::nanoseconds;

class EVH_API Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const noexcept = 0;
};

// CLOCK_MONOTONIC: changing the wall clock moves no timer (SEMANTICS 11).
class EVH_API MonotonicClock final : public Clock {
 public:
  TimePoint now() const noexcept override {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return TimePoint(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
  }
};

// A clock that moves only when told (see above).
class EVH_API ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint(1'000'000'000)) noexcept : now_(start.count()) {}
  ~ManualClock();  // every runtime that used it must be gone
  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  TimePoint now() const noexcept override {
    // seq_cst (a plain load on x86): partner of set()/advance()'s store, see runtime_clock.cc.
    return TimePoint(now_.load(std::memory_order_seq_cst));
  }
  // Moves to `t`. Moving backwards is refused (returns false): time never goes back.
  bool set(TimePoint t) noexcept;
  // Moves forward by `d` (a negative `d` does nothing).
  void advance(std::chrono::nanoseconds d) noexcept;

 private:
  friend struct detail::ClockAccess;
  std::atomic<std::int64_t> now_;
  std::mutex mu_;  // guards waiters_; held while they are told, so moves are serialised
  std::vector<detail::ClockWaiter*> waiters_;
};

}  // namespace evh
