// Spinning helpers: a CPU pause and a bounded backoff that ends in yielding the thread.
#pragma once

#include <sched.h>

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

}  // namespace evh::detail
