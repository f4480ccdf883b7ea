// bench/raw_floor.h — the `raw` and `raw-spin` impls' building blocks: what a careful programmer
// writes by hand with plain threads, a mutex-protected vector and an eventfd. They are the floor
// every evh number is compared with, so they are kept minimal and honest: no lock-free tricks, no
// allocation in the steady state (the two vectors of a queue are swapped, never freed).
//
// Two ways to wait, so that spinning is compared with spinning and blocking with blocking:
//   - `Wait::block` (raw): a consumer that finds its queue empty blocks in read() on the eventfd;
//   - `Wait::spin` (raw-spin): it first polls for as long as evh's own waiters do (evh's default
//     `RuntimeOptions::spin_before_park`, learned the same way: a poll that saw its item doubles
//     the next window up to that maximum, one that ended in sleep halves it down to 1 µs), then
//     blocks.
// The same queue is the measuring side's receiver in the messaging workloads, for every impl, so
// that every reply path ends in the same kind of receiver (docs/BENCHMARKS.md).
//
// Threads: see each class.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

namespace evh::bench {

enum class Wait { block, spin };

// "raw" or "raw-spin" to its Wait; the impl names of BENCHMARKS.md.
inline Wait raw_wait(std::string_view impl) {
  return impl == "raw-spin" ? Wait::spin : Wait::block;
}

// How long a `Wait::spin` waiter polls before it parks, learned from what polling achieved.
// One waiter thread only.
class SpinWindow {
 public:
  SpinWindow();  // starts at the maximum: evh's default spin_before_park
  std::chrono::nanoseconds window() const noexcept { return current_; }
  void hit() noexcept;
  void miss() noexcept;

 private:
  std::chrono::nanoseconds max_;
  std::chrono::nanoseconds current_;
};

// A FIFO of integers for one consumer thread and any number of producers. A producer writes the
// eventfd only when the consumer has said it is going to sleep (one write per message would
// measure the eventfd, not the pattern).
class EventfdQueue {
 public:
  explicit EventfdQueue(Wait wait = Wait::block);  // throws std::system_error without an eventfd
  ~EventfdQueue();
  EventfdQueue(const EventfdQueue&) = delete;
  EventfdQueue& operator=(const EventfdQueue&) = delete;

  // Any thread.
  void push(std::uint64_t value);

  // Consumer only. Waits until an item is queued, then pops the oldest one.
  std::uint64_t pop();
  // Consumer only. Waits until something is queued, then swaps everything queued into `out`
  // (which must be empty; its capacity becomes the producers' next buffer) under one lock
  // acquisition.
  void pop_all(std::vector<std::uint64_t>& out);
  // Consumer only: how many times it slept in read().
  std::uint64_t wakeups() const noexcept { return wakeups_; }
  void reset_wakeups() noexcept { wakeups_ = 0; }

 private:
  // Waits until `nonempty_` is set: spins first for Wait::spin, then sleeps on the eventfd. A
  // message that never comes hangs the cell until the suite's watchdog ends the run; a timed
  // wait would cost a poll() beside every read() on the measured path.
  void wait_nonempty();

  std::mutex mu_;
  std::vector<std::uint64_t> items_;  // guarded by mu_
  // Set by the push that makes items_ non-empty, cleared by the consumer when it takes them.
  // seq_cst with sleeping_: the producer stores nonempty_ then loads sleeping_, the consumer
  // stores sleeping_ then loads nonempty_, so at least one of them sees the other's store.
  std::atomic<bool> nonempty_{false};
  std::atomic<bool> sleeping_{false};
  int fd_ = -1;
  Wait wait_;
  SpinWindow spin_;                    // consumer-owned
  std::vector<std::uint64_t> buffer_;  // consumer-owned: items taken, not yet popped
  std::size_t next_ = 0;               // consumer-owned: index of the next item of buffer_
  std::uint64_t wakeups_ = 0;          // consumer-owned
};

// A task for RawPool. The pool borrows it from `post()` until `run()` returns.
class RawTask {
 public:
  virtual void run() noexcept = 0;

 protected:
  ~RawTask() = default;
};

// The floor of a thread pool: `workers` threads sharing one FIFO behind one mutex and one
// condition variable.
class RawPool {
 public:
  explicit RawPool(unsigned workers);
  // Stops the workers and joins them; tasks still queued are not run.
  ~RawPool();
  RawPool(const RawPool&) = delete;
  RawPool& operator=(const RawPool&) = delete;

  // Any thread, including a worker from inside a task.
  void post(RawTask& task);

 private:
  void work();

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<RawTask*> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace evh::bench
