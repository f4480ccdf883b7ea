// CLOCK_MONOTONIC as a std::chrono clock, the conversions between its time points and the
// signed nanosecond counts that deadlines are kept in, and the saturating arithmetic every
// "now + duration" in evh goes through: a duration too large to represent means "never"
// (INT64_MAX nanoseconds), never a wrap into the past (SEMANTICS 11).
//
// Threads: none of its own; everything here is a pure function or a clock read.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>

namespace evh::detail {

using MonoClock = std::chrono::steady_clock;  // CLOCK_MONOTONIC in libstdc++ and libc++
using MonoTime = MonoClock::time_point;

inline std::int64_t to_ns(MonoTime t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

inline MonoTime from_ns(std::int64_t ns) noexcept {
  return MonoTime(std::chrono::duration_cast<MonoClock::duration>(std::chrono::nanoseconds(ns)));
}

// a + b, clamped to the int64 range.
constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return b > 0 ? INT64_MAX : INT64_MIN;
  return sum;
}
// a - b, clamped to the int64 range.
constexpr std::int64_t saturating_sub(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t diff = 0;
  if (__builtin_sub_overflow(a, b, &diff)) return b < 0 ? INT64_MAX : INT64_MIN;
  return diff;
}

// `d` in nanoseconds, clamped to the int64 range (an implicit conversion of, say,
// `std::chrono::milliseconds::max()` to nanoseconds overflows).
template <class Rep, class Period>
constexpr std::int64_t saturating_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using ToNano = std::ratio_divide<Period, std::nano>;
  static_assert(std::numeric_limits<Rep>::is_integer, "integral durations only");
  const auto count = static_cast<std::int64_t>(d.count());
  if constexpr (ToNano::den == 1) {
    std::int64_t ns = 0;
    if (__builtin_mul_overflow(count, static_cast<std::int64_t>(ToNano::num), &ns)) {
      return count > 0 ? INT64_MAX : INT64_MIN;
    }
    return ns;
  } else {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }
}

// `t + d`, saturated: a deadline past the clock's range is the end of time, never the past.
inline MonoTime mono_after(MonoTime t, std::chrono::nanoseconds d) noexcept {
  return from_ns(saturating_add(to_ns(t), d.count()));
}

// The kernel's monotonic clock, read now (the vDSO: ~25 ns, no system call).
inline std::int64_t mono_now_ns() noexcept {
  return to_ns(MonoClock::now());
}

}  // namespace evh::detail
