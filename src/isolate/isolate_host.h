// IsolateHost: what an isolate needs from the runtime that owns it.
//
// The runtime implements it; an isolate (and a Receiver, through the PortDirectory part) knows
// nothing else of the runtime — the arrow points down only: the runtime creates and destroys
// isolates, and isolates reach back only through this interface, never into RuntimeImpl.
//
// Threads: every method may be called from any thread; none blocks (deadline_keeper() may start
// the event handler once, which creates a thread).
#pragma once

#include <evh/error.h>
#include <evh/task_runner.h>
#include <evh/timer.h>

#include <chrono>
#include <cstdint>
#include <exception>

#include "port/port_directory.h"
#include "timer/deadline_keeper.h"
#include "timer/lateness_histogram.h"
#include "timer/runtime_clock.h"

namespace evh {
class Isolate;
class Runtime;
}  // namespace evh

namespace evh::detail {

class IsolateImpl;

class IsolateHost : public PortDirectory {
 public:
  // The public face (Isolate::runtime()).
  virtual Runtime& runtime() noexcept = 0;
  // RuntimeOptions::time_slice: how long a turn runs before it gives way.
  virtual std::chrono::nanoseconds time_slice() const noexcept = 0;
  // The clock timers run on (RuntimeOptions::clock).
  virtual RuntimeClock clock() const noexcept = 0;

  // Who keeps the next timer wakeup of an isolate on `runner`: the runtime's pool behind it
  // (the shared pool or a dedicated runner), else the event handler, started if needed (its
  // error when it cannot start, `Errc::shutting_down` once the runtime shuts down).
  virtual Result<DeadlineKeeper*> deadline_keeper(TaskRunner& runner) noexcept = 0;
  // True when `runner` is one of the runtime's pools, whose work_is_waiting() tells the truth;
  // an embedder's runner may never say that other tasks wait (the TaskRunner default).
  virtual bool runner_reports_waiting_work(TaskRunner& runner) noexcept = 0;
  // Every isolate's timers also record their lateness here, and add their counter changes.
  virtual RuntimeLateness& timer_lateness() noexcept = 0;
  virtual void add_timer_counters(const TimerStats& delta, std::int64_t live_delta) noexcept = 0;

  // An exception escaped a callback of `isolate` (on its turn): count it, tell on_uncaught.
  virtual void report_exception(Isolate& isolate, std::exception_ptr error) noexcept = 0;
  // The isolate has died: drop the runtime's reference to it (once; later calls do nothing).
  virtual void forget(IsolateImpl& isolate) noexcept = 0;
  // The isolate's last reference went and it has been destroyed: take its memory back.
  virtual void free(void* isolate_memory) noexcept = 0;

  // The runner and the budget of an isolate spawned without its own: kept here once rather than
  // in every isolate (an idle isolate's bytes). Set by the runtime's constructor, then read only.
  TaskRunner& default_runner() const noexcept { return *default_runner_; }
  std::uint32_t default_budget() const noexcept { return default_budget_; }

 protected:
  ~IsolateHost() = default;
  void set_defaults(TaskRunner& runner, std::uint32_t budget) noexcept {
    default_runner_ = &runner;
    default_budget_ = budget;
  }

 private:
  TaskRunner* default_runner_ = nullptr;
  std::uint32_t default_budget_ = 0;
};

}  // namespace evh::detail
