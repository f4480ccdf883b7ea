// bench/raw_floor.h — the `raw` impl's building blocks: what a careful programmer writes by hand
// with plain threads, a mutex-protected queue and an eventfd. It is the floor every evh number
// is compared with, so it is kept minimal and honest: no spinning, no lock-free tricks.
//
// Threads: see each class.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace evh::bench {

// A FIFO of integers for one consumer thread and any number of producers. The producer writes
// the eventfd only when the queue goes from empty to non-empty (one write per message would
// measure the eventfd, not the pattern); the consumer blocks in read() on it.
class EventfdQueue {
 public:
  EventfdQueue();  // throws std::system_error when no eventfd can be had
  ~EventfdQueue();
  EventfdQueue(const EventfdQueue&) = delete;
  EventfdQueue& operator=(const EventfdQueue&) = delete;

  // Any thread.
  void push(std::uint64_t value);

  // Consumer only. Blocks until an item is queued, then pops the oldest one.
  std::uint64_t pop();
  // Consumer only. Blocks until something is queued, then moves everything queued into `out`
  // (which must be empty) under one lock acquisition.
  void pop_all(std::deque<std::uint64_t>& out);
  // Consumer only: how many times a blocking read() returned.
  std::uint64_t wakeups() const noexcept { return wakeups_; }
  void reset_wakeups() noexcept { wakeups_ = 0; }

 private:
  void wait_signal();

  std::mutex mu_;
  std::deque<std::uint64_t> items_;  // guarded by mu_
  int fd_ = -1;
  std::uint64_t wakeups_ = 0;  // consumer-owned
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
