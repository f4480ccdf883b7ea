// ProcessManagerImpl: starts children for one runtime — the checks, the plan, the pipes, the
// spawner thread for parent-death ties — and keeps the ones not yet reaped.
#pragma once

#include <evh/process.h>
#include <evh/runtime.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "proc/spawn.h"

namespace evh::detail {

class ProcessState;

class ProcessManagerImpl : public std::enable_shared_from_this<ProcessManagerImpl> {
 public:
  explicit ProcessManagerImpl(Runtime& rt) : rt_(rt) {}

  Result<Process> spawn(const SpawnOptions& options);
  void shutdown() noexcept;

  void reaped(ProcessState* state) noexcept {
    reaped_count_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    live_.erase(state);
  }

  ProcessManagerStats stats() const noexcept {
    ProcessManagerStats s;
    s.spawned = spawned_.load(std::memory_order_relaxed);
    s.spawn_failed = failed_.load(std::memory_order_relaxed);
    s.reaped = reaped_count_.load(std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    s.live = live_.size();
    return s;
  }

  Runtime& rt_;
  // True until shutdown(): data messages of its children hold it (StreamCredit), and re-arm
  // their streams only while it is.
  const std::shared_ptr<std::atomic<bool>> open_ = std::make_shared<std::atomic<bool>>(true);

 private:
  Result<SpawnedChild> spawn_on_spawner(const ExecPlan& plan, SpawnFailure* failure);
  void spawner_loop() noexcept;

  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> reaped_count_{0};

  mutable std::mutex mu_;
  bool closed_ = false;                                                    // guarded by mu_
  std::unordered_map<ProcessState*, std::shared_ptr<ProcessState>> live_;  // guarded by mu_

  // The spawner thread: forks the children whose parent-death signal must outlive any pool
  // worker. Started on first use, joined at shutdown.
  struct Job {
    const ExecPlan* plan;
    SpawnFailure* failure;
    std::optional<Result<SpawnedChild>> result;
  };
  std::mutex spawner_mu_;
  std::condition_variable spawner_cv_;
  std::deque<Job*> jobs_;  // guarded by spawner_mu_
  bool spawner_stop_ = false;
  std::thread spawner_;
};

}  // namespace evh::detail
