// ThreadPool: the shared TaskRunner. Grows on demand, idles out, never loses a task.
//
// Queues: tasks that just became runnable ("fresh") and tasks that gave way after their budget
// ("yielded") are kept apart. Workers take fresh tasks first, so an isolate woken by a message
// is not stuck behind every busy isolate's next turn — that is what keeps the latency of a
// lightly loaded isolate proportional when the pool is oversubscribed (SEMANTICS 7) — but every
// fourth pick in a row of fresh work takes a yielded task if one waits, so busy isolates are
// never starved.
//
// LIFO slot: a task posted from a worker of this pool (an isolate messaging another) goes into
// that worker's slot and runs right after the current task, without a cross-thread wakeup. A
// displaced slot task moves to the fresh queue; after kMaxLifoStreak slot runs in a row the slot
// task goes to the fresh queue too, so a ping-pong pair cannot starve other work. A task that
// gives way (post_yielded) from a worker while nothing is queued takes the free slot too: there
// is nobody to give way to, and the worker's look at deadlines and the poller between tasks
// happens all the same.
//
// Preemption on demand: a running isolate asks `work_is_waiting()` after each message and gives
// way when a fresh task waits with no free worker to take it, so a message to an idle isolate
// waits for at most one message of a busy one, not for a whole budget.
//
// Sleeping: an idle worker polls for `spin` before parking on its own condition variable; a post
// wakes a parked worker only when no worker is polling. Workers parked longer than
// `idle_timeout` exit, down to `min_threads`.
//
// Hand-off: the polling worker (one at a time) opens a one-task slot for the length of its poll.
// A fresh task posted while nothing is queued and the slot is open is put there with one CAS and
// no mu_: the poller takes it and runs it. That is the whole cross-thread cost of a message round
// trip to an idle isolate (thread_pingpong, isolate_pingpong_dedicated): before it, the poster
// and the poller met on mu_, and the poller, seeing the task counted while the poster still held
// mu_, slept in the kernel for it (a futex wait and wake per round trip). The slot cannot lose a
// task: the poller closes it with an exchange, so in the slot's modification order a poster's
// CAS either comes first (the exchange returns the task, which the poller runs) or finds it
// closed (the poster queues the task as before). A task in the slot is not queued, so it is not
// "waiting work" for work_is_waiting(): a worker is already taking it.
//
// Timeouts: the pool also keeps one deadline per key (the runtime uses an isolate's timer port
// id), like the event handler's timeouts, and calls `on_due(key, deadline)` on a worker once the
// deadline has passed — never before. An idle worker waits for the earliest deadline itself
// (the "keeper": parked with a timeout instead of for ever), so an isolate's timers on the pool
// wake one thread, the one that then runs the batch, instead of an I/O thread that wakes a
// worker. A busy worker looks at the earliest deadline between tasks.
//
// The poller: an event handler attached with attach_driver() (the runtime's own) is driven by
// the idle workers (io/driver.h). An idle worker that finds the driver free takes it and waits in
// the poller at once (no spin there: drive_idle says why) — for readiness, commands, a post, or
// the pool's earliest deadline, which makes it the keeper too — instead of on its condition
// variable (a keeper parked there when the driver is attached gives the role up). What
// it dispatches to an isolate of this pool lands in its LIFO slot, so the thread the kernel woke
// runs the isolate: one wakeup per event. A post that needs a worker wakes a worker parked on
// its condition variable first, else the driver, through the poller (one eventfd write, only
// when it is parked there), else starts one. A worker that leaves the driver to run work takes
// it back when it is idle again; it wakes a parked worker to take it up only when a deadline is
// due within `io_interval` (see release_driver_for_work for why not always); while no idle
// worker holds it, a worker between tasks runs one non-blocking pass once the poller has not
// been looked at for `io_interval`. The worker holding the driver never idles out.
//
// Why no wakeup is lost: a worker parks in the poller only after it found the queues empty and
// marked itself parked there (driver_parked_), both under mu_; a post queues under mu_ and reads
// the mark there. So either the worker saw the task, or the post saw the mark and wrote the
// eventfd — which ends the wait even if the worker has not yet entered epoll_wait (the eventfd
// stays readable until read). The driver clears the mark after its wait; a post that cleared it
// first has written the eventfd, and the wait returns at once. An earlier deadline set while it
// waits wakes it the same way.
//
// Threads: post()/post_yielded() from any thread, never blocking for longer than a short mutex
// hold. shutdown() from a thread that is not one of the pool's.
#pragma once

#include <evh/task_runner.h>

#include <atomic>
#include <boost/intrusive/list.hpp>
#include <boost/intrusive/member_value_traits.hpp>
#include <boost/intrusive/slist.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <thread>

#include "base/intrusive.h"
#include "io/driver.h"
#include "sync/spin.h"
#include "timer/deadline_heap.h"
#include "timer/deadline_keeper.h"
#include "timer/runtime_clock.h"

namespace evh::detail {

struct ThreadPoolOptions {
  unsigned min_threads = 0;
  unsigned max_threads = 1;
  std::chrono::milliseconds idle_timeout{5000};  // negative: workers never idle out
  std::chrono::microseconds spin{50};
  std::string name = "evh-worker";
  bool start_min_threads = false;  // start min_threads at construction
  // Called on a worker, without the pool's lock, when a deadline set with set_deadline()
  // passes — or, with a manual clock, on the thread that moved the clock past it.
  void (*on_due)(void* ctx, std::uint64_t key, std::int64_t deadline_ns) noexcept = nullptr;
  void* on_due_ctx = nullptr;
  // The clock deadlines are on (the runtime's; by default CLOCK_MONOTONIC).
  RuntimeClock clock{};
  // With a driver attached: while every worker is busy, the longest a poller goes unlooked at
  // (a worker between tasks runs one non-blocking pass after it).
  std::chrono::microseconds io_interval{500};
};

struct ThreadPoolStats {
  std::uint64_t live = 0;
  std::uint64_t started = 0;
  std::uint64_t parks = 0;           // times a worker slept in the kernel
  std::uint64_t timeouts = 0;        // deadlines that passed and were handed to on_due
  std::uint64_t driver_parks = 0;    // times a worker waited in the poller (not in `parks`)
  std::uint64_t driver_unparks = 0;  // eventfd writes to wake a worker waiting in the poller
  bool driver_parked = false;        // a worker waits in the poller now
  std::uint64_t handoffs = 0;        // tasks a polling worker took from the hand-off slot
  bool polling = false;              // a worker polls now, its hand-off slot open
};

class ThreadPool final : public TaskRunner,
                         public DeadlineKeeper,
                         public DriverHost,
                         private ClockWaiter {
 public:
  explicit ThreadPool(ThreadPoolOptions options);
  ~ThreadPool() override;  // shutdown()

  void post(Task& task) noexcept override;
  void post_yielded(Task& task) noexcept override;
  bool work_is_waiting() const noexcept override;
  // On a worker of this pool: its LIFO task, if any, joins the shared queue (waking a worker).
  void share_local_work() noexcept override;

  // DeadlineKeeper: sets `key`'s one deadline (nanoseconds on the pool's clock), replacing an
  // earlier one; on_due is called once it has passed. Any thread. Needs ThreadPoolOptions::on_due.
  // With a manual clock nobody waits for a deadline: a move of the clock hands over what it
  // made due before it returns, and a worker looks between tasks (a deadline already due).
  // `WakeupPrecision::exact`: the keeper wakes kSpinAheadNs early and polls the clock up to the
  // deadline (while no task waits), so that a late wake-up of the kernel does not make it late.
  // `Errc::shutting_down` once shutdown() has begun.
  Status set_deadline(std::uint64_t key, std::int64_t deadline_ns,
                      WakeupPrecision precision = WakeupPrecision::slack) noexcept override;
  void clear_deadline(std::uint64_t key) noexcept override;

  // DriverHost (io/driver.h): the idle workers drive `driver` from now on, one at a time.
  void attach_driver(IoDriver& driver) noexcept override;
  void detach_driver(IoDriver& driver) noexcept override;
  void driver_released() noexcept override;

  // Runs every task already queued or posted meanwhile, then joins every worker. Idempotent.
  void shutdown() noexcept;
  ThreadPoolStats stats() const noexcept;
  // True when called from one of this pool's workers.
  bool on_worker_thread() const noexcept;

 private:
  struct Worker {
    ThreadPool* pool = nullptr;
    // The LIFO slot and its streak are touched only by this worker's own thread.
    Task* lifo = nullptr;
    unsigned lifo_streak = 0;
    // Guarded by pool->mu_.
    std::condition_variable cv;
    bool wake = false;
    bool rearm = false;    // as keeper: an earlier deadline was set
    bool driving = false;  // as keeper, waiting in the poller (wake it with unpark_driver_locked)
    bool exited = false;
    // On the parked stack while linked (safe_link: is_linked() says whether it is).
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>>
        parked_hook;
    std::thread thread;
  };
  // A FIFO of tasks linked through Task::runner_link, the link the TaskRunner contract lends a
  // runner while it holds a task (base/intrusive.h): no allocation per post.
  using TaskFifo =
      boost::intrusive::slist<Task,
                              boost::intrusive::value_traits<boost::intrusive::member_value_traits<
                                  Task, PointerSlotNodeTraits<Task, &Task::runner_link>,
                                  &Task::runner_link, boost::intrusive::normal_link>>,
                              boost::intrusive::header_holder_type<PointerSlotHeader<Task>>,
                              boost::intrusive::cache_last<true>, boost::intrusive::linear<true>,
                              boost::intrusive::constant_time_size<false>>;
  // Parked workers, most recently parked first (a stack), unlinkable from the middle when a
  // worker stops waiting by itself (timed out, stopping).
  using ParkedStack = boost::intrusive::list<
      Worker,
      boost::intrusive::member_hook<Worker,
                                    boost::intrusive::list_member_hook<
                                        boost::intrusive::link_mode<boost::intrusive::safe_link>>,
                                    &Worker::parked_hook>,
      boost::intrusive::constant_time_size<false>>;
  static constexpr unsigned kMaxLifoStreak = 32;
  static constexpr unsigned kFreshPicksBeforeYielded = 4;
  // try_lock()s of mu_ by a worker whose poll saw a task counted, before it blocks on mu_.
  static constexpr int kLockTries = 200;

  void worker_main(Worker* self) noexcept;
  // Idle, holding `driver`, `lock` (on mu_) held: waits in the driver until work comes. Returns
  // having released the driver and `lock`.
  void drive_idle(Worker* self, IoDriver& driver, std::unique_lock<std::mutex>& lock) noexcept;
  // Busy, between tasks: one non-blocking pass when nobody drives and one is due.
  void drive_between_tasks() noexcept;
  // Takes the driver if it is attached and free. mu_ held.
  IoDriver* take_driver_locked() noexcept;
  // Gives the driver up to run work; a worker parked on its condition variable is woken to take
  // it only for a deadline due within io_interval. The _locked form with mu_ held.
  void release_driver_for_work(IoDriver& driver) noexcept;
  void release_driver_for_work_locked(IoDriver& driver) noexcept;
  // Wakes the worker waiting in the poller, if one is. mu_ held.
  bool unpark_driver_locked() noexcept;
  Task* pop_locked() noexcept;
  // Whether a worker of this pool that queues a task will look for work itself next (a task
  // giving way, a displaced LIFO task) or goes on running (share_local_work).
  enum class Poster { takes_next, runs_on };
  // Called with mu_ held after queueing: wakes a parked worker or asks for a new one. Returns
  // true when the caller must start a thread (after dropping the lock).
  bool wake_locked(Poster poster) noexcept;
  void start_worker() noexcept;
  void enqueue(Task& task, bool yielded, Poster poster = Poster::takes_next) noexcept;
  // Puts a fresh task in the polling worker's hand-off slot; false when no worker polls or work
  // is queued (then the task is queued as usual).
  bool try_hand_off(Task& task) noexcept;
  // Hands passed deadlines to on_due (takes mu_), at most kMaxDue; returns how many. Cheap when
  // none is due.
  int fire_due() noexcept;
  // ClockWaiter: a manual clock moved; hand over everything it made due.
  void clock_moved() noexcept override;
  // Takes a worker that was not woken (timed out, stopping) off the parked stack. mu_ held.
  void unpark_locked(Worker* self) noexcept;
  // Pops the most recently parked worker and wakes it for a task; false if none is parked.
  bool wake_parked_locked() noexcept;
  void update_earliest_locked() noexcept;

  // The worker running on this thread, if any. Private to the pool: it routes a post made from
  // inside a task to that worker's LIFO slot; nothing outside the pool can see it.
  static thread_local Worker* tls_worker_;

  const ThreadPoolOptions options_;
  const RuntimeClock clock_;
  AdaptiveSpin spin_;  // how long an idle worker polls before parking
  mutable std::mutex mu_;
  TaskFifo fresh_;
  TaskFifo yielded_;
  unsigned fresh_streak_ = 0;
  // Tasks in fresh_ + yielded_; read without the lock by polling workers.
  std::atomic<std::uint64_t> queued_{0};
  std::atomic<std::uint64_t> fresh_queued_{0};  // tasks in fresh_
  std::atomic<unsigned> spinning_{0};
  // The polling worker's hand-off slot (see "Hand-off" above): handoff_closed() while no worker
  // polls, nullptr while one polls and takes what is put here, else the task put there.
  std::atomic<Task*> handoff_{handoff_closed()};
  std::atomic<std::uint64_t> handoffs_{0};
  static Task* handoff_closed() noexcept {
    return reinterpret_cast<Task*>(std::uintptr_t{1});  // never a Task's address
  }
  ParkedStack parked_;
  std::atomic<unsigned> parked_count_{0};
  unsigned live_ = 0;      // workers started (or reserved) and not exited
  unsigned starting_ = 0;  // reserved by wake_locked() whose thread is not yet recorded
  bool stopping_ = false;
  std::list<Worker> workers_;  // every worker ever started and not yet reaped
  std::atomic<std::uint64_t> started_{0};
  std::atomic<std::uint64_t> parks_{0};

  // The attached event handler (guarded by mu_, except the atomics, which are hints).
  IoDriver* driver_ = nullptr;
  bool driver_held_ = false;              // a worker of this pool holds it
  std::atomic<bool> driver_free_{false};  // attached and held by no worker: busy workers look
  std::atomic<std::int64_t> driver_free_since_{0};  // when it was last released
  std::atomic<bool> driver_parked_{false};  // the holder waits in the poller (set under mu_)
  std::atomic<std::uint64_t> driver_parks_{0};
  std::atomic<std::uint64_t> driver_unparks_{0};

  // Timeouts (guarded by mu_, except the atomics).
  DeadlineHeap timed_;
  std::atomic<std::int64_t> earliest_ns_{kNever};  // timed_'s top, for lock-free looks
  Worker* keeper_ = nullptr;                       // the worker waiting for timed_'s top, if any
  std::int64_t keeper_until_ = kNever;             // what it waits for
  std::atomic<std::uint64_t> timeouts_{0};
  static constexpr std::int64_t kNever = INT64_MAX;
  static constexpr std::int64_t kSpinAheadNs = 25'000;
  static constexpr int kMaxDue = 16;
  std::atomic<bool> clock_registered_{false};  // a waiter of a manual clock until shutdown
  std::mutex firing_mu_;  // manual clock only: held while fire_due() hands deadlines over
};

}  // namespace evh::detail
