// ThreadPool's I/O driver (sched/thread_pool.h, "The poller"): the idle worker that waits in the
// poller for the pool, how it is handed over, released for work and woken, and the idle loop it
// runs. The rest of the pool is in thread_pool.cc.
#include <utility>

#include "base/assert.h"
#include "base/mono_time.h"
#include "io/poller.h"
#include "sched/thread_pool.h"
#include "sync/spin.h"

namespace evh::detail {

bool ThreadPool::unpark_driver_locked() noexcept {
  // Only when it is parked there (see the header for why this loses no wakeup).
  if (driver_ == nullptr || !driver_parked_.exchange(false, std::memory_order_relaxed)) {
    return false;
  }
  driver_unparks_.fetch_add(1, std::memory_order_relaxed);
  driver_->unpark();
  return true;
}

IoDriver* ThreadPool::take_driver_locked() noexcept {
  if (driver_ == nullptr || driver_held_ || stopping_ || !driver_->try_acquire()) return nullptr;
  driver_held_ = true;
  driver_free_.store(false, std::memory_order_relaxed);
  return driver_;
}

void ThreadPool::release_driver_for_work(IoDriver& driver) noexcept {
  std::lock_guard lock(mu_);
  release_driver_for_work_locked(driver);
}

void ThreadPool::release_driver_for_work_locked(IoDriver& driver) noexcept {
  driver.release();
  driver_held_ = false;
  if (driver_ != &driver) return;  // detached meanwhile
  const std::int64_t now = mono_now_ns();
  driver_free_since_.store(now, std::memory_order_relaxed);
  driver_free_.store(true, std::memory_order_relaxed);
  // Nobody is woken to take the driver up: this worker takes it back when it is idle again —
  // after a turn of microseconds, the common case — and while it is busy a worker between tasks
  // looks at the poller once io_interval has passed (Tokio's choice too). Waking a sleeping worker
  // here put a second thread wakeup beside every event, the cost issue 15 removes; on a loaded
  // machine the woken worker's spin took the CPU from the turn itself (fd_event_latency p99
  // 3.3 ms against raw's 74 µs, and 2.3x raw's CPU per round trip). The exception is a deadline
  // due within io_interval, which nobody else would wait for: a sleeping worker takes the driver
  // up to keep it. The cost: readiness and later deadlines wait for a single long handler while a
  // worker sleeps (docs/EVENT_HANDLER.md). Deadlines already due are not that exception: this
  // worker hands them over before anything else (worker_main's loop and drive_between_tasks
  // start with fire_due), so only the first one after now counts. Counting the due one too woke
  // a second worker at every timer wakeup, and the two then handed the driver back and forth —
  // a futex wake, an eventfd unpark and a park beside every deadline (+15-25 % CPU in
  // timer_batch, issue 16).
  if (!driver.release_requested() && !clock_.manual() &&
      timed_.earliest_after(now, kNever) <= now + options_.io_interval.count() * 1000) {
    (void)wake_parked_locked();
  }
}

void ThreadPool::attach_driver(IoDriver& driver) noexcept {
  bool start = false;
  {
    std::lock_guard lock(mu_);
    EVH_ASSERT(driver_ == nullptr, "one driver per pool");
    driver_ = &driver;
    driver_free_since_.store(mono_now_ns(), std::memory_order_relaxed);
    driver_free_.store(true, std::memory_order_relaxed);
    // A keeper parked on its condition variable gives the role up to the driver's holder (one
    // keeper at a time): it wakes, and finds the driver free or held.
    if (keeper_ != nullptr && !keeper_->driving) {
      keeper_->rearm = true;
      keeper_->cv.notify_one();
      keeper_ = nullptr;
      keeper_until_ = kNever;
    }
    // Someone must take it: a parked worker, else a new one; if every worker is busy, the first
    // to finish its task does.
    if (!wake_parked_locked() && !stopping_ && live_ < options_.max_threads) {
      ++live_;
      ++starting_;
      start = true;
    }
  }
  if (start) start_worker();
}

void ThreadPool::detach_driver(IoDriver& driver) noexcept {
  std::lock_guard lock(mu_);
  if (driver_ != &driver) return;
  (void)unpark_driver_locked();
  driver_ = nullptr;
  driver_free_.store(false, std::memory_order_relaxed);
}

void ThreadPool::driver_released() noexcept {
  std::lock_guard lock(mu_);
  if (driver_ != nullptr && !driver_held_) (void)wake_parked_locked();
}

void ThreadPool::drive_between_tasks() noexcept {
  // Nobody holds the driver while its last holder runs a turn and no other worker is idle: then
  // a worker between tasks looks at the poller once in a while.
  if (!driver_free_.load(std::memory_order_relaxed)) return;
  const std::int64_t now = mono_now_ns();
  if (now - driver_free_since_.load(std::memory_order_relaxed) <
      options_.io_interval.count() * 1000) {
    return;
  }
  IoDriver* d = nullptr;
  {
    std::lock_guard lock(mu_);
    d = take_driver_locked();
  }
  if (d == nullptr) return;
  d->drive(Poller::kNoWait);
  release_driver_for_work(*d);
  fire_due();  // what fell due is this worker's to hand over (release_driver_for_work says why)
}

void ThreadPool::drive_idle(Worker* self, IoDriver& d,
                            std::unique_lock<std::mutex>& lock) noexcept {
  const bool manual = clock_.manual();
  // mu_ is taken twice per event: here, where the worker that found no task (worker_main, same
  // hold) marks itself parked, and once after the wait, where it stops being the keeper and — for
  // the event's turn — gives the driver up. Every look at the queues and every change of the
  // marks is under it as before; only the separate takes between them are gone (five per event
  // before: after the wait, at the top of the loop, to give the driver up, in worker_main to pop,
  // and here again).
  for (;;) {
    // No spin first: the holder waits in the poller at once, and another idle worker, if any,
    // spins on the queues (one spinner at a time). Polling the poller for the adaptive window
    // (epoll_wait(0) every 2 µs) measured worse on the 2-vCPU VM, loaded or not:
    // fd_event_latency p50 1.18x / p99 1.65x the best peer and 1.8x its CPU per round trip,
    // against 1.10x / 1.08x / 1.06x without it (evh-bench, medians of 3, one run each) — the
    // spinning holder took the CPU the client and the turn needed, and the adaptive window
    // reads every spin as a hit in a ping-pong.
    // Park in the poller, as the keeper of the pool's deadlines. Marked parked under mu_ after
    // the queues were found empty: see the header for why no post is missed.
    std::int64_t until = kNever;
    bool exact = false;
    if (!manual && !timed_.empty()) {
      until = timed_.top().deadline;
      exact = timed_.top().tag != 0;
    }
    if (self->lifo != nullptr || !fresh_.empty() || !yielded_.empty() || stopping_ ||
        driver_ != &d || d.release_requested() || (until != kNever && until <= mono_now_ns())) {
      release_driver_for_work_locked(d);
      lock.unlock();
      return;
    }
    EVH_ASSERT(keeper_ == nullptr, "a second keeper while the driver is attached");
    keeper_ = self;
    keeper_until_ = until;
    self->rearm = false;
    self->driving = true;
    driver_parked_.store(true, std::memory_order_relaxed);
    driver_parks_.fetch_add(1, std::memory_order_relaxed);
    lock.unlock();
    d.drive(until == kNever ? Poller::kForever
                            : from_ns(saturating_sub(until, exact ? kSpinAheadNs : 0)));
    driver_parked_.store(false, std::memory_order_relaxed);
    lock.lock();
    if (keeper_ == self) {
      keeper_ = nullptr;
      keeper_until_ = kNever;
    }
    self->driving = false;
    if (exact && !self->rearm) {
      lock.unlock();
      // Woken ahead of an exact deadline: poll the clock up to it unless work comes.
      poll_until(from_ns(until), [&] {
        return self->lifo != nullptr || queued_.load(std::memory_order_relaxed) != 0 ||
               earliest_ns_.load(std::memory_order_relaxed) < until;
      });
      lock.lock();
    }
    // Readiness for other runners (a Receiver, another pool) leaves no work here: keep the
    // driver and go round again (mu_ held, as at the first look).
  }
}

}  // namespace evh::detail
