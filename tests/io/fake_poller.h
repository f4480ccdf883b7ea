// FakePoller: a Poller whose "kernel" is a table the test drives, for event-handler tests that
// must be exact (which calls the handler makes, what shares one wait) rather than timing-bound.
//
// Model: each fd has a set of conditions that hold (`set_ready`). A watched fd reports the
// conditions in its interest (plus error/hang-up) on every wait (level), once per arm (oneshot),
// or when a condition newly arises or on an add/modify while one holds (edge) — the epoll rules
// the event handler relies on. `inject` queues a raw event for a token, whether or not it is
// still watched (what a completion-based backend can hand back after a removal). `hold()` keeps
// wait() from returning, even when woken, until `release()`, so that a test can gather several
// things into one batch. The deadline is real: a blocking wait returns once steady_clock passes
// it.
//
// Threads: the Poller methods run on the handler's I/O thread, the test methods on any thread;
// one mutex guards everything.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "io/poller.h"

namespace evh::test {

class FakePoller final : public detail::Poller {
 public:
  const char* name() const noexcept override { return "fake"; }

  Status add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override {
    std::lock_guard lock(mu_);
    if (watches_.count(fd) != 0) return std::error_code(EEXIST, std::generic_category());
    watches_[fd] = Watch{interest, mode, token, true, FdEvents::none};
    arm(fd);
    cv_.notify_all();
    return {};
  }
  Status modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override {
    std::lock_guard lock(mu_);
    auto it = watches_.find(fd);
    if (it == watches_.end()) return std::error_code(ENOENT, std::generic_category());
    it->second = Watch{interest, mode, token, true, FdEvents::none};
    ++modifies_;
    arm(fd);
    cv_.notify_all();
    return {};
  }
  Status remove(int fd) noexcept override {
    std::lock_guard lock(mu_);
    if (watches_.erase(fd) == 0) return std::error_code(ENOENT, std::generic_category());
    return {};
  }
  Status set_deadline(detail::MonoTime deadline) noexcept override {
    std::lock_guard lock(mu_);
    deadline_ = deadline;
    ++deadline_sets_;
    cv_.notify_all();
    return {};
  }
  Status clear_deadline() noexcept override {
    std::lock_guard lock(mu_);
    deadline_.reset();
    ++deadline_clears_;
    return {};
  }
  void wake() noexcept override {
    std::lock_guard lock(mu_);
    woken_ = true;
    ++wakes_;
    cv_.notify_all();
  }

  Result<detail::PollResult> wait(std::span<detail::PollEvent> out,
                                  detail::PollBlock block) noexcept override {
    std::unique_lock lock(mu_);
    ++waits_;
    in_wait_ = true;
    cv_.notify_all();
    for (;;) {
      const bool due = deadline_ && detail::MonoClock::now() >= *deadline_;
      if (!held_ && (block == detail::PollBlock::no || woken_ || due || reportable())) break;
      if (deadline_ && !held_) {
        cv_.wait_until(lock, *deadline_);
      } else {
        cv_.wait(lock);
      }
    }
    in_wait_ = false;
    detail::PollResult r;
    if (deadline_ && detail::MonoClock::now() >= *deadline_) {
      deadline_.reset();
      r.deadline_reached = true;
    }
    r.woken = std::exchange(woken_, false);
    for (const auto& e : injected_) {
      if (r.count < out.size()) out[r.count++] = e;
    }
    injected_.clear();
    for (auto& [fd, w] : watches_) {
      if (r.count >= out.size()) break;
      const FdEvents ev = due_events(fd, w);
      if (!any(ev)) continue;
      out[r.count++] = detail::PollEvent{w.token, ev};
      if (w.mode == FdMode::oneshot) w.armed = false;
      if (w.mode == FdMode::edge) w.edge = FdEvents::none;
    }
    return r;
  }

  // ---- the test's side --------------------------------------------------------------------

  // Replaces the conditions that hold for `fd`; conditions that newly arise are edges.
  void set_ready(int fd, FdEvents conditions) {
    std::lock_guard lock(mu_);
    const FdEvents fresh = conditions & ~ready_[fd];
    ready_[fd] = conditions;
    if (auto it = watches_.find(fd); it != watches_.end()) it->second.edge |= fresh;
    cv_.notify_all();
  }
  void inject(std::uint64_t token, FdEvents events) {
    std::lock_guard lock(mu_);
    injected_.push_back(detail::PollEvent{token, events});
    cv_.notify_all();
  }
  std::optional<std::uint64_t> token_of(int fd) {
    std::lock_guard lock(mu_);
    auto it = watches_.find(fd);
    if (it == watches_.end()) return std::nullopt;
    return it->second.token;
  }
  bool watched(int fd) {
    std::lock_guard lock(mu_);
    return watches_.count(fd) != 0;
  }
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  // Blocks until the I/O thread is inside wait() (with hold(): parked there).
  void await_in_wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_wait_; });
  }
  bool in_wait() {
    std::lock_guard lock(mu_);
    return in_wait_;
  }
  int wakes() {
    std::lock_guard lock(mu_);
    return wakes_;
  }
  int deadline_sets() {
    std::lock_guard lock(mu_);
    return deadline_sets_;
  }
  int deadline_clears() {
    std::lock_guard lock(mu_);
    return deadline_clears_;
  }
  std::optional<detail::MonoTime> deadline() {
    std::lock_guard lock(mu_);
    return deadline_;
  }

 private:
  struct Watch {
    FdEvents interest;
    FdMode mode;
    std::uint64_t token;
    bool armed;
    FdEvents edge;  // edges not yet reported (edge mode)
  };

  // An add or a modify reports a condition that already holds, whatever the mode.
  void arm(int fd) {
    Watch& w = watches_[fd];
    if (w.mode == FdMode::edge) w.edge = ready_[fd];
  }
  FdEvents due_events(int fd, const Watch& w) {
    const FdEvents wanted = w.interest | FdEvents::error | FdEvents::hang_up;
    if (!w.armed) return FdEvents::none;
    if (w.mode == FdMode::edge) return w.edge & wanted;
    return ready_[fd] & wanted;
  }
  bool reportable() {
    if (!injected_.empty()) return true;
    for (auto& [fd, w] : watches_) {
      if (any(due_events(fd, w))) return true;
    }
    return false;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, Watch> watches_;
  std::map<int, FdEvents> ready_;
  std::vector<detail::PollEvent> injected_;
  std::optional<detail::MonoTime> deadline_;
  bool woken_ = false;
  bool held_ = false;
  bool in_wait_ = false;
  int wakes_ = 0;
  int waits_ = 0;
  int modifies_ = 0;
  int deadline_sets_ = 0;
  int deadline_clears_ = 0;
};

}  // namespace evh::test
