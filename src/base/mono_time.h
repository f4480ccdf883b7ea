// CLOCK_MONOTONIC as a std::chrono clock, and the conversions between its time points and the
// signed nanosecond counts that deadlines are kept in.
//
// Threads: none of its own; everything here is a pure function or a clock read.
#pragma once

#include <chrono>
#include <cstdint>

namespace evh::detail {

using MonoClock = std::chrono::steady_clock;  // CLOCK_MONOTONIC in libstdc++ and libc++
using MonoTime = MonoClock::time_point;

inline std::int64_t to_ns(MonoTime t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

inline MonoTime from_ns(std::int64_t ns) noexcept {
  return MonoTime(std::chrono::duration_cast<MonoClock::duration>(std::chrono::nanoseconds(ns)));
}

// The kernel's monotonic clock, read now (the vDSO: ~25 ns, no system call).
inline std::int64_t mono_now_ns() noexcept {
  return to_ns(MonoClock::now());
}

}  // namespace evh::detail
