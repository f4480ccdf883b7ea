// IoDriver and DriverHost: how a pool's idle workers drive an event handler — wait in its poller,
// run its commands, dispatch its readiness — so that the thread the kernel wakes is the one that
// runs the isolate the event is for (one wakeup from the kernel to the handler; Tokio's parked
// worker holding the driver is the model, docs/EVENT_HANDLER.md "Who waits where").
//
// The event handler implements IoDriver; the pool (a layer above: sched) implements DriverHost
// and calls down. One thread at a time holds the driver: `try_acquire()` makes the caller the
// holder, and only the holder calls `drive()`, until `release()`. The handler's own threads of
// control — its shutdown and a manual clock's move — take it too, through the handler; a pool
// worker never waits for it (try_acquire fails while another thread holds it or waits for it).
//
// The lost-wakeup argument lives with the pool (sched/thread_pool.h): a worker parks in the
// poller only after it has found the pool's queues empty under the pool's lock and marked itself
// parked there; a post takes the same lock, and wakes a parked driver with one `unpark()` — an
// eventfd write, which a wait that has not yet begun also sees.
//
// Threads: as documented per method. Memory: nothing is borrowed across calls.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/mono_time.h"

namespace evh::detail {

class IoDriver {
 public:
  // Any thread. Becomes the holder; false when another thread holds the driver or waits for it.
  virtual bool try_acquire() noexcept = 0;
  // The holder: gives the driver up.
  virtual void release() noexcept = 0;
  // The holder: one pass of the event handler — waits for readiness at most until `until`
  // (Poller::kNoWait only looks; it looks without waiting anyway while commands are queued), then
  // runs the queued commands, dispatches the readiness (posting to ports: a post to an isolate on
  // the holder's own pool lands in the holder's LIFO slot), and expires due timeouts. Returns
  // early when unpark() is called or a command arrives.
  virtual void drive(MonoTime until) noexcept = 0;
  // Any thread, never blocks: makes a drive() that waits in the poller (or is about to) return.
  virtual void unpark() noexcept = 0;
  // Any thread, a hint: a thread that is not a pool worker (shutdown, a clock move) waits for the
  // driver; the holder should release it.
  virtual bool release_requested() const noexcept = 0;

 protected:
  ~IoDriver() = default;
};

class DriverHost {
 public:
  // From now on the host's idle workers drive `driver` (one is woken or started to take it).
  virtual void attach_driver(IoDriver& driver) noexcept = 0;
  // No worker takes `driver` any more, and a worker waiting in it is unparked. The holder, if
  // any, releases it soon after; the caller then waits for it (the handler's shutdown).
  virtual void detach_driver(IoDriver& driver) noexcept = 0;
  // A thread that is not one of the host's workers held the driver and has released it: an idle
  // worker should take it up again.
  virtual void driver_released() noexcept = 0;

 protected:
  ~DriverHost() = default;
};

}  // namespace evh::detail
