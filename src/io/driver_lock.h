// DriverLock: who may drive an event handler now (io/driver.h).
//
// Pool workers only try (`try_lock`): a worker that does not get the driver parks on its own
// condition variable instead, so no worker ever sleeps waiting for it. The handler's shutdown and
// a manual clock's move must get it (`lock`): they announce themselves (waiters_, which makes
// every later try_lock fail, so they cannot be starved by workers taking it back), wake a holder
// that waits in the poller, and sleep on the lock word until it is released.
//
// The no-lost-wakeup argument: lock() increments waiters_ and then tries the word; unlock()
// clears the word and then reads waiters_ (all seq_cst). Either unlock() sees the waiter and
// wakes the futex, or the waiter's next look at the word sees it clear. A waiter that sleeps on a
// word already cleared returns at once (FUTEX_WAIT compares it first).
//
// Threads: any. Debug builds record the holder so that holder-only methods can assert it.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <thread>

#include "io/poller.h"
#include "sync/futex.h"

namespace evh::detail {

class DriverLock {
 public:
  bool try_lock() noexcept {
    // seq_cst: pairs with lock()'s increment; a waiter is never overtaken by a later try.
    if (waiters_.load(std::memory_order_seq_cst) != 0) return false;
    std::uint32_t free = 0;
    // acquire: pairs with unlock()'s store; the previous holder's writes are visible.
    if (!word_.compare_exchange_strong(free, 1, std::memory_order_seq_cst)) return false;
    holder_ = std::this_thread::get_id();
    return true;
  }

  // Blocks until held. `poller` is woken (each time the word is found held), so that a holder
  // waiting in it returns and releases.
  void lock(Poller& poller) noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    for (;;) {
      std::uint32_t free = 0;
      if (word_.compare_exchange_strong(free, 1, std::memory_order_seq_cst)) break;
      poller.wake();
      futex_wait(word_, 1, std::chrono::nanoseconds(-1));
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    holder_ = std::this_thread::get_id();
  }

  void unlock() noexcept {
    holder_ = std::thread::id();
    // seq_cst store then seq_cst load: pairs with lock()'s increment then compare-exchange.
    word_.store(0, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) futex_wake(word_, INT_MAX);
  }

  bool has_waiters() const noexcept { return waiters_.load(std::memory_order_relaxed) != 0; }
  bool held() const noexcept { return word_.load(std::memory_order_relaxed) != 0; }
  // For assertions: the calling thread holds it.
  bool held_by_me() const noexcept { return holder_ == std::this_thread::get_id(); }

 private:
  std::atomic<std::uint32_t> word_{0};  // 1 while held
  std::atomic<std::uint32_t> waiters_{0};
  std::thread::id holder_;  // written by the holder only; read by the holder's assertions
};

}  // namespace evh::detail
