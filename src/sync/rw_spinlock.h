// A reader-writer spin lock in one word, for very short critical sections (a hash probe).
// Writers announce themselves first, so a steady stream of readers cannot starve them.
#pragma once

#include <atomic>
#include <cstdint>

#include "sync/spin.h"

namespace evh::detail {

class RwSpinLock {
 public:
  void lock_shared() noexcept {
    for (;;) {
      // acquire: pairs with the release in unlock(), so the reader sees the writer's changes.
      if ((word_.fetch_add(1, std::memory_order_acquire) & kWriter) == 0) return;
      word_.fetch_sub(1, std::memory_order_relaxed);
      Backoff backoff;
      while ((word_.load(std::memory_order_relaxed) & kWriter) != 0) backoff.snooze();
    }
  }
  void unlock_shared() noexcept { word_.fetch_sub(1, std::memory_order_release); }

  void lock() noexcept {
    Backoff backoff;
    // Claim the writer bit, then wait for the readers inside to leave.
    while ((word_.fetch_or(kWriter, std::memory_order_acquire) & kWriter) != 0) backoff.snooze();
    Backoff drain;
    // acquire: pairs with the readers' release in unlock_shared().
    while ((word_.load(std::memory_order_acquire) & ~kWriter) != 0) drain.snooze();
  }
  void unlock() noexcept { word_.fetch_and(~kWriter, std::memory_order_release); }

 private:
  static constexpr std::uint32_t kWriter = 1u << 31;
  std::atomic<std::uint32_t> word_{0};
};

}  // namespace evh::detail
