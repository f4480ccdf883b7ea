// Spinning helpers: a CPU pause and a bounded backoff that ends in yielding the thread.
#pragma once

#include <sched.h>

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

}  // namespace evh::detail
