// bench/micro/inline_runner.h — an embedder TaskRunner (evh/task_runner.h) whose tasks run on the
// benchmark's own thread, when it calls run_pending(). With it, code that must run on an
// isolate's turn (timers, handlers) runs inside Google Benchmark's timing loop, on its thread.
//
// Threads: post() from any thread; run_pending() from the benchmark's thread only.
#pragma once

#include <evh/task_runner.h>

#include <mutex>

namespace evh::bench {

class InlineRunner final : public TaskRunner {
 public:
  void post(Task& task) noexcept override {
    std::lock_guard lock(mu_);
    task.runner_link = nullptr;
    if (tail_ == nullptr) {
      head_ = &task;
    } else {
      tail_->runner_link = &task;
    }
    tail_ = &task;
  }

  // Runs every task queued now (not those they post); returns how many ran.
  int run_pending() noexcept {
    Task* task;
    {
      std::lock_guard lock(mu_);
      task = head_;
      head_ = tail_ = nullptr;
    }
    int ran = 0;
    while (task != nullptr) {
      Task* next = task->runner_link;
      task->run();  // may post itself again: it then goes to the new list
      task = next;
      ++ran;
    }
    return ran;
  }

 private:
  std::mutex mu_;
  Task* head_ = nullptr;  // guarded by mu_; linked through Task::runner_link
  Task* tail_ = nullptr;  // guarded by mu_
};

}  // namespace evh::bench
