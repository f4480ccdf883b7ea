// evh/task_runner.h — where an isolate's message handling runs.
//
// A `TaskRunner` runs `Task`s. evh ships two: the runtime's shared thread pool, and
// `DedicatedRunner`s (one thread each, from `Runtime::create_dedicated_runner`). An embedder may
// implement its own — e.g. to run an isolate on its UI thread — by implementing `post()`.
//
// Contract for implementers:
//   - `post()` may be called from any thread, concurrently, and must not block. When a post to
//     a port makes an isolate runnable, evh calls it holding none of its locks, so it may call
//     back into the runtime: post, open or close ports (issue 14, defect 7).
//   - Each posted task must be run exactly once, by calling `task.run()` on the runner's thread,
//     and never on two threads at once. A task may post itself again from inside `run()`.
//   - While the runner holds a task, it may use `task.runner_link` to queue it; the link is the
//     runner's from `post()` until it calls `run()`.
//   - The runner must outlive every isolate bound to it.
#pragma once

#include <evh/export.h>

namespace evh {

class EVH_API Task {
 public:
  // Runs the task; never throws (evh's tasks catch what embedder callbacks throw).
  virtual void run() noexcept = 0;

  Task* runner_link = nullptr;  // owned by the runner while the task is queued

 protected:
  Task() = default;
  ~Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
};

class EVH_API TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Thread-safe and non-blocking; `task` stays alive at least until its `run()` returns.
  // Used when a task becomes runnable (an isolate's mailbox went from empty to non-empty).
  virtual void post(Task& task) noexcept = 0;
  // Used when a running task gives way after its budget with work left. A fair runner queues it
  // behind tasks that just became runnable; the default treats it like any other post.
  virtual void post_yielded(Task& task) noexcept { post(task); }
  // Asked by a running task between units of work (an isolate: after each message): true when
  // other tasks are waiting for this runner's threads, so the running one should give way early.
  // Must be cheap (a relaxed load or two) and thread-safe. The default never asks to give way.
  virtual bool work_is_waiting() const noexcept { return false; }
  // Called by a long-running task at its safe points (an isolate: handle_interrupts()), on the
  // runner's thread: work this thread set aside to run after the current task (a pool's LIFO
  // slot) should go where another thread can take it, since the current task may run for a long
  // time yet. The default sets nothing aside.
  virtual void share_local_work() noexcept {}
};

}  // namespace evh
