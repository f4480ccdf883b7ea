// evh/clock.h — the time source of timers: CLOCK_MONOTONIC in production, a manual clock in
// tests.
//
// Timers read "now" only through a Clock, so ordering tests can set time exactly and run
// instantly. A Clock must never go backwards; evh checks it in debug builds.
//
// Threads: `now()` may be called from any thread. `ManualClock::set`/`advance` may be called from
// any thread; a runtime driven by a ManualClock does not wake up by itself when it is advanced —
// tests call `Isolate`-level entry points that read it.
#pragma once

#include <evh/export.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace evh {

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

class EVH_API ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint(1'000'000'000)) noexcept : now_(start.count()) {}
  TimePoint now() const noexcept override {
    return TimePoint(now_.load(std::memory_order_acquire));
  }
  // Moving backwards is refused (returns false): time never goes back.
  bool set(TimePoint t) noexcept {
    std::int64_t cur = now_.load(std::memory_order_relaxed);
    while (t.count() >= cur) {
      if (now_.compare_exchange_weak(cur, t.count(), std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  void advance(std::chrono::nanoseconds d) noexcept {
    if (d.count() > 0) now_.fetch_add(d.count(), std::memory_order_acq_rel);
  }

 private:
  std::atomic<std::int64_t> now_;
};

}  // namespace evh
