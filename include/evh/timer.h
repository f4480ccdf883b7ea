// evh/timer.h — isolate timers: one-shot, periodic and zero-delay, with slack classes.
//
// A `Timer` is an intrusive node the embedder owns (typically a field of its own timer object):
// starting and cancelling it allocate nothing and take O(1) (the one exception: the start that
// brings an isolate to 1,024 live timers widens its wheel once, one 24 KB block). Start, cancel
// and every callback happen on the owning isolate's own turn (`Isolate::start_timer` etc.); every
// build checks it (`Errc::wrong_thread`). An armed Timer records the isolate that armed it: until
// it is disarmed (cancelled, fired once, its isolate gone), starting or cancelling it through
// another isolate returns `Errc::wrong_thread` and changes nothing.
//
// Lifetime: while a Timer is armed it must neither move nor be destroyed; cancel it first (or let
// it fire: a one-shot timer is disarmed before its callback runs). Destroying the isolate cancels
// every timer it still holds, without calling them. Cancelling an unarmed timer, twice, or after
// it fired is a harmless no-op (SEMANTICS 14).
//
// Order (SEMANTICS 12-13): within an isolate, due timers fire in (deadline, creation) order; a
// timer never fires before its deadline on the clock; every timer due at a wakeup runs in one
// batch, with the isolate's microtasks drained after each callback; a timer started (or a
// periodic one re-armed) during a batch never runs in that batch; a callback may cancel any timer,
// including later ones of the same batch.
//
// Slack: a timer may fire up to its slack after its deadline, so that timers whose windows overlap
// share one wakeup. `Slack::exact()` fires as soon as the kernel allows; the default,
// `Slack::coarse()`, allows min(50 µs, delay / 8); `Slack::custom(d)` allows `d`, of which at
// most kMaxSlackNs (~4.29 s) is used (less slack only makes a timer fire closer to its deadline).
#pragma once

#include <chrono>
#include <cstdint>

namespace evh {

class Isolate;
class Timer;

namespace detail {
class TimerWheel;
class TimerSet;
struct TimerList;
struct TimerChains;
}  // namespace detail

// `skipped` is the number of periods a periodic timer missed since its previous run (it runs once
// for them: no burst, no drift); 0 for one-shot timers. The callback may throw: the exception is
// caught, counted and reported like a message handler's.
using TimerFn = void (*)(Isolate& self, Timer& timer, std::uint64_t skipped);

class Slack {
 public:
  static constexpr Slack exact() noexcept { return Slack(Kind::exact, 0); }
  static constexpr Slack coarse() noexcept { return Slack(Kind::coarse, 0); }
  // A negative slack is treated as exact.
  static constexpr Slack custom(std::chrono::nanoseconds d) noexcept {
    return Slack(Kind::custom, d.count() > 0 ? d.count() : 0);
  }
  // The slack this class allows for a timer of the given delay (or period).
  constexpr std::int64_t for_delay_ns(std::int64_t delay_ns) const noexcept {
    switch (kind_) {
      case Kind::exact:
        return 0;
      case Kind::custom:
        return ns_;
      case Kind::coarse: {
        const std::int64_t eighth = delay_ns / 8;
        return eighth < kCoarseMaxNs ? (eighth > 0 ? eighth : 0) : kCoarseMaxNs;
      }
    }
    return 0;
  }
  static constexpr std::int64_t kCoarseMaxNs = 50'000;
  static constexpr std::int64_t kMaxSlackNs = 0xffff'ffff;

 private:
  enum class Kind : std::uint8_t { exact, coarse, custom };
  constexpr Slack(Kind k, std::int64_t ns) noexcept : kind_(k), ns_(ns) {}
  Kind kind_;
  std::int64_t ns_;
};

// Counters of one isolate's timers (`Isolate::timer_stats`) or of a whole runtime
// (`Runtime::timer_stats`); O(1) to read. Lateness is fire time − deadline, in nanoseconds, as
// seen just before each callback; percentiles come from a log-linear histogram (isolate: 1/8
// relative resolution, runtime: 1/16).
struct TimerStats {
  std::uint64_t live = 0;  // armed now
  std::uint64_t started = 0;
  std::uint64_t fired = 0;      // callbacks run (a periodic timer counts once per run)
  std::uint64_t cancelled = 0;  // cancels of armed timers
  std::uint64_t batches = 0;
  std::uint64_t largest_batch = 0;
  std::uint64_t late_p50_ns = 0;
  std::uint64_t late_p99_ns = 0;
  std::uint64_t late_p999_ns = 0;
  std::uint64_t late_max_ns = 0;
};

// One cache line, aligned: the wheel touches a timer once per cascade and once to fire it, and a
// node straddling two lines (a plain 8-aligned array of them from malloc does) costs two misses.
// The line is full: the slack (32 bits) and the owner (a 32-bit id unique among live isolates
// with timers) share the word that would otherwise hold deadline + slack.
class alignas(64) Timer {
 public:
  Timer() noexcept = default;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool armed() const noexcept { return pprev_ != nullptr; }
  // The deadline of the current (or last) arming, on the isolate's clock, in nanoseconds.
  std::int64_t deadline_ns() const noexcept { return deadline_; }
  bool periodic() const noexcept { return period_ > 0; }

  void* user = nullptr;  // the embedder's: evh never touches it

 private:
  friend class detail::TimerWheel;
  friend class detail::TimerSet;
  friend struct detail::TimerList;
  friend struct detail::TimerChains;

  Timer* next_ = nullptr;
  Timer** pprev_ = nullptr;  // the link that points at this timer; null: not armed
  std::int64_t deadline_ = 0;
  std::uint32_t slack_ = 0;  // the window [deadline, deadline + slack] it may fire in
  // The id of the timer set (isolate) it is armed in, 0 while disarmed. Read and written as an
  // atomic (std::atomic_ref, relaxed): another isolate's start or cancel reads it to refuse.
  alignas(4) std::uint32_t owner_ = 0;
  std::uint64_t seq_ = 0;    // creation order, for ties
  std::int64_t period_ = 0;  // 0: one-shot
  TimerFn fn_ = nullptr;
};
static_assert(sizeof(Timer) == 64, "a timer is one cache line");

}  // namespace evh
