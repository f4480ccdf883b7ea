// Spinning helpers: a CPU pause and a bounded backoff that ends in yielding the thread.
#pragma once

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace evh::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// For waits that are expected to last a few dozen instructions (another thread between two of
// its stores). After a short while it yields the CPU, so a preempted peer gets to finish.
class Backoff {
 public:
  void snooze() noexcept {
    if (step_ < 10) {
      for (std::uint32_t i = 0; i < (1u << step_); ++i) cpu_relax();
      ++step_;
    } else {
      sched_yield();
    }
  }

 private:
  std::uint32_t step_ = 0;
};

// Polls `ready()` until it holds (true) or `deadline` passes (false). It does not yield the CPU:
// sched_yield() to a CPU-bound thread gives that thread the CPU for a whole scheduler tick (4 ms
// at HZ=250, seen on Linux 6.x), far longer than any spin; callers keep spins short and adaptive.
template <class Ready>
bool poll_until(std::chrono::steady_clock::time_point deadline, Ready&& ready) noexcept {
  for (std::uint32_t i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if ((i & 15) == 0 && std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

// How long to poll before sleeping, learned from what polling achieved: a poll that saw its
// event doubles the next window (up to the configured maximum), a poll that ended in sleep halves
// it (down to a floor, so it can learn back). When replies come within microseconds the waiter
// keeps polling; when the machine is oversubscribed or replies are slow, it stops burning a CPU
// that the thread it waits for may need. Relaxed atomics: a hint shared by a pool's workers.
class AdaptiveSpin {
 public:
  explicit AdaptiveSpin(std::chrono::nanoseconds max) noexcept
      : max_ns_(max.count()), current_ns_(max.count()) {}

  std::chrono::nanoseconds window() const noexcept {
    return std::chrono::nanoseconds(current_ns_.load(std::memory_order_relaxed));
  }
  void hit() noexcept {
    const std::int64_t c = current_ns_.load(std::memory_order_relaxed);
    current_ns_.store(c > max_ns_ / 2 ? max_ns_ : c * 2, std::memory_order_relaxed);
  }
  void miss() noexcept {
    const std::int64_t c = current_ns_.load(std::memory_order_relaxed);
    const std::int64_t floor = max_ns_ < kFloorNs ? max_ns_ : kFloorNs;
    current_ns_.store(c / 2 < floor ? floor : c / 2, std::memory_order_relaxed);
  }

 private:
  static constexpr std::int64_t kFloorNs = 1000;
  const std::int64_t max_ns_;
  std::atomic<std::int64_t> current_ns_;
};

}  // namespace evh::detail
