#include "sched/thread_pool.h"

#include <pthread.h>
#include <sys/prctl.h>

#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/mono_time.h"
#include "io/poller.h"
#include "sync/spin.h"

namespace evh::detail {

thread_local ThreadPool::Worker* ThreadPool::tls_worker_ = nullptr;

ThreadPool::ThreadPool(ThreadPoolOptions options)
    : options_(std::move(options)),
      clock_(options_.clock),
      spin_(std::chrono::nanoseconds(saturating_ns(options_.spin))) {
  EVH_ASSERT(options_.max_threads >= 1, "a pool needs at least one thread");
  if (clock_.manual()) {
    clock_.add_waiter(*this);
    clock_registered_.store(true, std::memory_order_relaxed);
  }
  if (options_.start_min_threads) {
    for (unsigned i = 0; i < options_.min_threads; ++i) {
      {
        std::lock_guard lock(mu_);
        ++live_;
        ++starting_;
      }
      start_worker();
    }
  }
}

ThreadPool::~ThreadPool() {
  shutdown();
}

bool ThreadPool::on_worker_thread() const noexcept {
  return tls_worker_ != nullptr && tls_worker_->pool == this;
}

void ThreadPool::post(Task& task) noexcept {
  if (Worker* w = tls_worker_; w != nullptr && w->pool == this) {
    Task* displaced = w->lifo;
    w->lifo = &task;
    if (displaced != nullptr) enqueue(*displaced, false);
    return;
  }
  enqueue(task, false);
}

void ThreadPool::share_local_work() noexcept {
  // A task posted from a running task waits in this worker's LIFO slot, where no other worker
  // looks: fine for a message hand-off, where the poster is about to finish, but a poster that
  // runs on (a script's long loop) would keep it there for good while other workers sit idle.
  Worker* w = tls_worker_;
  if (w == nullptr || w->pool != this || w->lifo == nullptr) return;
  Task* t = std::exchange(w->lifo, nullptr);
  enqueue(*t, false, Poster::runs_on);
}

void ThreadPool::post_yielded(Task& task) noexcept {
  // A task giving way on a worker of this pool while no other task is queued and the worker's
  // LIFO slot is free goes into the slot: the worker still looks at due deadlines and the poller
  // before it runs it again (worker_main), which is all that giving way would have let happen,
  // without two trips through mu_ (a flooded isolate gives way every `budget` messages: issue 19,
  // port_flood_batch). A task queued by another thread after the relaxed look below waits at
  // most for the slot task's next message: it makes work_is_waiting() true (or wakes a worker
  // for itself), and the slot task then gives way to the queue. The slot counts towards
  // kMaxLifoStreak as any other slot run does.
  if (Worker* w = tls_worker_; w != nullptr && w->pool == this && w->lifo == nullptr &&
                               queued_.load(std::memory_order_relaxed) == 0) {
    w->lifo = &task;
    return;
  }
  enqueue(task, true);
}

bool ThreadPool::work_is_waiting() const noexcept {
  // Relaxed reads of counters kept under mu_: a hint, checked once per message by running turns.
  // Fresh tasks that a polling or parked (being woken) worker will take do not count.
  return fresh_queued_.load(std::memory_order_relaxed) >
         spinning_.load(std::memory_order_relaxed) + parked_count_.load(std::memory_order_relaxed) +
             (driver_parked_.load(std::memory_order_relaxed) ? 1u : 0u);
}

bool ThreadPool::try_hand_off(Task& task) noexcept {
  // Relaxed looks first: most posts find the slot closed and should not write its line. Only
  // when nothing is queued, so that a handed-off task overtakes nothing.
  if (queued_.load(std::memory_order_relaxed) != 0 ||
      handoff_.load(std::memory_order_relaxed) != nullptr) {
    return false;
  }
  Task* open = nullptr;
  // release: what the poster wrote before posting is seen by the worker that runs the task.
  return handoff_.compare_exchange_strong(open, &task, std::memory_order_release,
                                          std::memory_order_relaxed);
}

void ThreadPool::enqueue(Task& task, bool yielded, Poster poster) noexcept {
  if (!yielded && try_hand_off(task)) return;
  bool start = false;
  {
    std::lock_guard lock(mu_);
    (yielded ? yielded_ : fresh_).push_back(task);
    queued_.fetch_add(1, std::memory_order_relaxed);
    if (!yielded) fresh_queued_.fetch_add(1, std::memory_order_relaxed);
    start = wake_locked(poster);
  }
  if (start) start_worker();
}

void ThreadPool::update_earliest_locked() noexcept {
  earliest_ns_.store(timed_.empty() ? kNever : timed_.top().deadline, std::memory_order_relaxed);
}

Status ThreadPool::set_deadline(std::uint64_t key, std::int64_t deadline_ns,
                                WakeupPrecision precision) noexcept {
  EVH_ASSERT(options_.on_due != nullptr, "timeouts need ThreadPoolOptions::on_due");
  bool start = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Errc::shutting_down;
    try {
      timed_.set(key, deadline_ns, precision == WakeupPrecision::exact ? 1u : 0u);
    } catch (const std::bad_alloc&) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
    update_earliest_locked();
    if (keeper_ != nullptr) {
      // The keeper sleeps until a later deadline: make it look again.
      if (deadline_ns < keeper_until_) {
        keeper_->rearm = true;
        if (keeper_->driving) {
          (void)unpark_driver_locked();
        } else {
          keeper_->cv.notify_one();
        }
      }
    } else if (driver_ != nullptr) {
      // The driver keeps the deadlines: its holder parks as the keeper, and while nobody holds
      // it every worker is busy and looks between tasks.
    } else if (!on_worker_thread() && spinning_.load(std::memory_order_relaxed) == 0) {
      // Nobody will look at the deadline soon (a busy worker looks between tasks, a polling
      // one parks as keeper, and so does the worker calling this): get a worker to keep it.
      if (!wake_parked_locked() && live_ == 0 && options_.max_threads > 0) {
        ++live_;
        ++starting_;
        start = true;
      }
    }
  }
  if (start) start_worker();
  return {};
}

void ThreadPool::clear_deadline(std::uint64_t key) noexcept {
  std::lock_guard lock(mu_);
  if (timed_.erase(key)) update_earliest_locked();
}

int ThreadPool::fire_due() noexcept {
  const std::int64_t earliest = earliest_ns_.load(std::memory_order_relaxed);
  if (earliest == kNever) return 0;
  // With a manual clock, a move must not return while a worker that took due deadlines out of
  // the heap has not handed them over yet: firing is serialised (a move waits its turn).
  std::unique_lock firing(firing_mu_, std::defer_lock);
  if (clock_.manual()) firing.lock();
  const std::int64_t now = clock_.now_ns();
  if (earliest > now) return 0;
  // Few are due at once (one per isolate); a small fixed buffer keeps this allocation-free.
  std::uint64_t keys[kMaxDue];
  std::int64_t deadlines[kMaxDue];
  int n = 0;
  {
    std::lock_guard lock(mu_);
    while (n < kMaxDue && !timed_.empty() && timed_.top().deadline <= now) {
      const DeadlineHeap::Entry e = timed_.pop();
      keys[n] = e.key;
      deadlines[n] = e.deadline;
      ++n;
    }
    update_earliest_locked();
  }
  timeouts_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) options_.on_due(options_.on_due_ctx, keys[i], deadlines[i]);
  return n;
}

void ThreadPool::clock_moved() noexcept {
  // Everything the move made due is handed over before the clock's move returns (evh/clock.h).
  while (fire_due() == kMaxDue) {
  }
}

bool ThreadPool::wake_locked(Poster poster) noexcept {
  // A polling worker re-checks the queues under mu_ before it parks, so it cannot miss a task
  // queued under mu_; wake others only for work beyond what the pollers will take. A worker of
  // this pool that posts (a task giving way, a displaced LIFO task) is about to look for work
  // itself, so it counts as one more taker: a flooded isolate that yields every budget does not
  // wake a sleeping worker each time just for that worker to find the queue empty.
  const std::uint64_t takers = spinning_.load(std::memory_order_relaxed) +
                               (poster == Poster::takes_next && on_worker_thread() ? 1 : 0);
  if (queued_.load(std::memory_order_relaxed) <= takers) return false;
  if (wake_parked_locked()) return false;
  // The only idle worker waits in the poller: one eventfd write wakes it.
  if (unpark_driver_locked()) return false;
  if (!stopping_ && live_ < options_.max_threads) {
    ++live_;  // reserved; start_worker() undoes it if the thread cannot be created
    ++starting_;
    return true;
  }
  return false;
}

void ThreadPool::start_worker() noexcept {
  std::vector<std::thread> reaped;
  Worker* w = nullptr;
  {
    std::lock_guard lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->exited) {
        reaped.push_back(std::move(it->thread));
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    workers_.emplace_back();
    w = &workers_.back();
    w->pool = this;
  }
  for (std::thread& t : reaped) {
    if (t.joinable()) t.join();
  }
  std::thread thread;
  try {
    thread = std::thread([this, w] { worker_main(w); });
  } catch (...) {
    // No thread now; the task stays queued for the next worker or for shutdown's final drain.
    std::lock_guard lock(mu_);
    --live_;
    --starting_;
    w->exited = true;
    return;
  }
  started_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  w->thread = std::move(thread);
  --starting_;
}

Task* ThreadPool::pop_locked() noexcept {
  Task* t = nullptr;
  if (!yielded_.empty() && (fresh_.empty() || fresh_streak_ >= kFreshPicksBeforeYielded)) {
    t = &yielded_.front();
    yielded_.pop_front();
    fresh_streak_ = 0;
  } else if (!fresh_.empty()) {
    t = &fresh_.front();
    fresh_.pop_front();
    fresh_queued_.fetch_sub(1, std::memory_order_relaxed);
    ++fresh_streak_;
  }
  if (t != nullptr) queued_.fetch_sub(1, std::memory_order_relaxed);
  return t;
}

bool ThreadPool::wake_parked_locked() noexcept {
  if (parked_.empty()) return false;
  Worker* w = &parked_.front();
  parked_.pop_front();
  parked_count_.fetch_sub(1, std::memory_order_relaxed);
  w->wake = true;
  w->cv.notify_one();
  return true;
}

void ThreadPool::unpark_locked(Worker* self) noexcept {
  if (!self->parked_hook.is_linked()) return;  // a waker took it off already
  parked_.erase(parked_.iterator_to(*self));
  parked_count_.fetch_sub(1, std::memory_order_relaxed);
}

void ThreadPool::worker_main(Worker* self) noexcept {
  tls_worker_ = self;
  {
    std::string name = options_.name.substr(0, 15);
    pthread_setname_np(pthread_self(), name.c_str());
    // Timed waits (the keeper's) end when asked, not up to 50 µs later (the default slack).
    if (options_.on_due != nullptr) (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  }
  std::unique_lock lock(mu_, std::defer_lock);
  for (;;) {
    fire_due();
    drive_between_tasks();
    if (self->lifo != nullptr) {
      Task* t = self->lifo;
      self->lifo = nullptr;
      if (self->lifo_streak < kMaxLifoStreak) {
        ++self->lifo_streak;
        t->run();
        continue;
      }
      enqueue(*t, false);  // a long streak: let queued work go first
    }
    self->lifo_streak = 0;

    lock.lock();
    Task* t = pop_locked();
    if (t != nullptr) {
      lock.unlock();
      t->run();
      continue;
    }
    // Nothing to run: take the event handler's driver if nobody holds it, and wait in the poller
    // (mu_ still held: the queues drive_idle looks at again are the ones just found empty).
    if (IoDriver* d = take_driver_locked()) {
      drive_idle(self, *d, lock);
      continue;
    }
    lock.unlock();

    // Poll for a while before sleeping: a task that arrives now costs its poster no syscall.
    // Only one worker polls at a time, so idle workers do not crowd out busy threads.
    unsigned expected = 0;
    // acquire: pairs with the previous poller's release below, so that its close of the hand-off
    // slot comes before this poller's open in the slot's modification order.
    if (options_.spin.count() > 0 &&
        spinning_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
      // The poll ends early at the pool's earliest deadline: a due timer does not wait for it.
      // (A manual clock's deadlines are handed over by its moves: not waited for here.)
      const bool deadlines = !clock_.manual();
      const std::int64_t now = mono_now_ns();
      std::int64_t end = saturating_add(now, spin_.window().count());
      const std::int64_t earliest =
          deadlines ? earliest_ns_.load(std::memory_order_relaxed) : kNever;
      if (earliest < end) end = earliest;
      handoff_.store(nullptr, std::memory_order_relaxed);  // open the slot
      const bool found = poll_until(from_ns(end), [this, end, deadlines] {
        return handoff_.load(std::memory_order_relaxed) != nullptr ||
               queued_.load(std::memory_order_relaxed) != 0 ||
               (deadlines && earliest_ns_.load(std::memory_order_relaxed) < end);
      });
      // Close it: a task put there before this is ours to run; a post after it queues.
      // acquire: pairs with the poster's release.
      Task* handed = handoff_.exchange(handoff_closed(), std::memory_order_acquire);
      spinning_.store(0, std::memory_order_release);
      if (handed != nullptr) {
        spin_.hit();
        handoffs_.store(handoffs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        handed->run();
        continue;
      }
      if (found) {
        spin_.hit();
        // The post that ended the poll may still hold mu_ for a few instructions (it counts the
        // task, then decides whom to wake): try for a moment before blocking, rather than sleep
        // in the kernel for a lock about to be free and make the poster pay a futex wake.
        for (int i = 0; i < kLockTries && !lock.try_lock(); ++i) cpu_relax();
      } else if (end == earliest) {
        continue;  // a deadline is due: hand it over (loop top), then look for work again
      } else {
        spin_.miss();
      }
    }

    if (!lock.owns_lock()) lock.lock();
    t = pop_locked();
    if (t != nullptr) {
      lock.unlock();
      t->run();
      continue;
    }
    if (stopping_) {
      --live_;
      self->exited = true;
      lock.unlock();
      break;
    }
    if (IoDriver* driver = take_driver_locked()) {  // released while this worker polled
      drive_idle(self, *driver, lock);
      continue;
    }
    self->wake = false;
    parked_.push_front(*self);
    parked_count_.fetch_add(1, std::memory_order_relaxed);
    parks_.fetch_add(1, std::memory_order_relaxed);
    bool woken;
    if (keeper_ == nullptr && driver_ == nullptr && !timed_.empty() && !clock_.manual()) {
      // The keeper: parked like the others (a post wakes it for a task), but only until the
      // earliest deadline, or until an earlier one is set.
      keeper_ = self;
      self->rearm = false;
      keeper_until_ = timed_.top().deadline;
      const bool spin = timed_.top().tag != 0;
      const MonoTime wake_at = from_ns(saturating_sub(keeper_until_, spin ? kSpinAheadNs : 0));
      const std::int64_t until = keeper_until_;
      self->cv.wait_until(lock, wake_at, [&] { return self->wake || self->rearm || stopping_; });
      if (keeper_ == self) {  // else attach_driver() took the role away
        keeper_ = nullptr;
        keeper_until_ = kNever;
      }
      woken = self->wake;
      if (spin && !woken && !self->rearm && !stopping_) {
        // Still parked: poll the clock up to the deadline unless a task or an earlier deadline
        // comes (a post that finds us on the parked stack wakes us through `wake`).
        lock.unlock();
        poll_until(from_ns(until), [&] {
          return queued_.load(std::memory_order_relaxed) != 0 ||
                 earliest_ns_.load(std::memory_order_relaxed) < until;
        });
        lock.lock();
        woken = self->wake;
      }
      if (!woken) {
        unpark_locked(self);
      }
      lock.unlock();
      continue;
    }
    if (options_.idle_timeout.count() < 0) {
      self->cv.wait(lock, [&] { return self->wake || stopping_; });
      woken = true;
    } else {
      // Saturated: an idle timeout past the end of time is waited for as an absolute time.
      const MonoTime idle_until = mono_after(
          MonoClock::now(), std::chrono::nanoseconds(saturating_ns(options_.idle_timeout)));
      woken = self->cv.wait_until(lock, idle_until, [&] { return self->wake || stopping_; });
    }
    if (!self->wake) {  // timed out or stopping: take ourselves off the parked stack
      unpark_locked(self);
      if (!woken && !stopping_ && live_ > options_.min_threads && fresh_.empty() &&
          yielded_.empty() && (timed_.empty() || keeper_ != nullptr || clock_.manual()) &&
          (driver_ == nullptr || driver_held_)) {
        --live_;
        self->exited = true;
        lock.unlock();
        break;
      }
    }
    lock.unlock();
  }
  tls_worker_ = nullptr;
}

void ThreadPool::shutdown() noexcept {
  // First: a move of the clock must not hand deadlines to a pool being taken apart.
  if (clock_registered_.exchange(false, std::memory_order_acq_rel)) clock_.remove_waiter(*this);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    (void)unpark_driver_locked();
    while (!parked_.empty()) {
      Worker& w = parked_.front();
      parked_.pop_front();
      parked_count_.fetch_sub(1, std::memory_order_relaxed);
      w.cv.notify_one();
    }
  }
  EVH_ASSERT(!on_worker_thread(), "a pool cannot shut itself down from one of its workers");
  for (;;) {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      for (Worker& w : workers_) {
        if (w.thread.joinable()) threads.push_back(std::move(w.thread));
      }
      if (threads.empty() && starting_ == 0) break;
    }
    if (threads.empty()) sched_yield();  // a worker is being started: it will be recorded soon
    for (std::thread& t : threads) t.join();
  }
  // Workers that idled out earlier may have left tasks queued behind them: run them here.
  std::unique_lock lock(mu_);
  while (Task* t = pop_locked()) {
    lock.unlock();
    t->run();
    lock.lock();
  }
  workers_.clear();
}

ThreadPoolStats ThreadPool::stats() const noexcept {
  std::lock_guard lock(mu_);
  ThreadPoolStats s;
  s.live = live_;
  s.started = started_.load(std::memory_order_relaxed);
  s.parks = parks_.load(std::memory_order_relaxed);
  s.timeouts = timeouts_.load(std::memory_order_relaxed);
  s.driver_parks = driver_parks_.load(std::memory_order_relaxed);
  s.driver_unparks = driver_unparks_.load(std::memory_order_relaxed);
  s.driver_parked = driver_parked_.load(std::memory_order_relaxed);
  s.handoffs = handoffs_.load(std::memory_order_relaxed);
  s.polling = handoff_.load(std::memory_order_relaxed) == nullptr;
  return s;
}

}  // namespace evh::detail
