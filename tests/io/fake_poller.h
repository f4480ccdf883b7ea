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

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "io/poller.h"
#include "io/sys.h"

namespace evh::test {

// Injected failures: the next `times` calls of an operation fail with `error`.
template <class Op>
class FaultPlan {
 public:
  void fail(Op op, int error, int times) {
    for (int i = 0; i < times; ++i) pending_.push_back({op, error});
  }
  // Counts the call; the errno to fail it with, or 0.
  int next(Op op) {
    ++calls_[op];
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->first == op) {
        const int error = it->second;
        pending_.erase(it);
        return error;
      }
    }
    return 0;
  }
  int calls(Op op) const {
    auto it = calls_.find(op);
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  std::vector<std::pair<Op, int>> pending_;
  std::map<Op, int> calls_;
};

inline std::error_code errno_error(int e) {
  return {e, std::generic_category()};
}

// The event handler's own system calls: the kernel's, but for injected failures.
class FakeSys final : public detail::Sys {
 public:
  enum class Op { fcntl_getfd, fstat, accept4, close };

  void fail(Op op, int error, int times = 1) {
    std::lock_guard lock(mu_);
    plan_.fail(op, error, times);
  }
  int calls(Op op) {
    std::lock_guard lock(mu_);
    return plan_.calls(op);
  }

  int fcntl_getfd(int fd) noexcept override {
    if (int e = next(Op::fcntl_getfd)) return fail_with(e);
    return detail::linux_sys().fcntl_getfd(fd);
  }
  int fstat(int fd, struct stat* out) noexcept override {
    if (int e = next(Op::fstat)) return fail_with(e);
    return detail::linux_sys().fstat(fd, out);
  }
  int accept4(int fd, int flags) noexcept override {
    if (int e = next(Op::accept4)) return fail_with(e);
    return detail::linux_sys().accept4(fd, flags);
  }
  // Linux releases the fd whatever close() returns (also on EINTR), and so does this: an
  // injected failure closes the fd and then reports the error.
  int close(int fd) noexcept override {
    const int e = next(Op::close);
    const int r = detail::linux_sys().close(fd);
    return e != 0 ? fail_with(e) : r;
  }

 private:
  int next(Op op) {
    std::lock_guard lock(mu_);
    return plan_.next(op);
  }
  static int fail_with(int e) {
    errno = e;
    return -1;
  }

  std::mutex mu_;
  FaultPlan<Op> plan_;
};

class FakePoller final : public detail::Poller {
 public:
  enum class Op { add, modify, remove, set_deadline, clear_deadline, wait };

  const char* name() const noexcept override { return "fake"; }

  Status add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override {
    std::lock_guard lock(mu_);
    if (on_add_) on_add_();
    if (int e = plan_.next(Op::add)) return errno_error(e);
    if (watches_.count(fd) != 0) return std::error_code(EEXIST, std::generic_category());
    watches_[fd] = Watch{interest, mode, token, true, FdEvents::none};
    arm(fd);
    cv_.notify_all();
    return {};
  }
  Status modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override {
    std::lock_guard lock(mu_);
    if (int e = plan_.next(Op::modify)) return errno_error(e);
    auto it = watches_.find(fd);
    if (it == watches_.end()) return std::error_code(ENOENT, std::generic_category());
    it->second = Watch{interest, mode, token, true, FdEvents::none};
    ++modifies_;
    modify_log_[fd].emplace_back(interest, mode);
    arm(fd);
    cv_.notify_all();
    return {};
  }
  Status remove(int fd) noexcept override {
    std::lock_guard lock(mu_);
    if (int e = plan_.next(Op::remove)) return errno_error(e);
    if (watches_.erase(fd) == 0) return std::error_code(ENOENT, std::generic_category());
    return {};
  }
  Status set_deadline(detail::MonoTime deadline) noexcept override {
    std::lock_guard lock(mu_);
    if (int e = plan_.next(Op::set_deadline)) return errno_error(e);
    deadline_ = deadline;
    ++deadline_sets_;
    cv_.notify_all();
    return {};
  }
  Status clear_deadline() noexcept override {
    std::lock_guard lock(mu_);
    if (int e = plan_.next(Op::clear_deadline)) return errno_error(e);
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
                                  detail::MonoTime until) noexcept override {
    std::unique_lock lock(mu_);
    if (on_wait_) on_wait_();
    ++waits_;
    if (int e = plan_.next(Op::wait)) return errno_error(e);
    in_wait_ = true;
    cv_.notify_all();
    for (;;) {
      const auto now = detail::MonoClock::now();
      const bool due = deadline_ && now >= *deadline_;
      if (!held_ && (now >= until || woken_ || due || reportable())) break;
      std::optional<detail::MonoTime> limit;
      if (!held_) {
        if (until != kForever) limit = until;
        if (deadline_ && (!limit || *deadline_ < *limit)) limit = *deadline_;
      }
      if (limit) {
        cv_.wait_until(lock, *limit);
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

  void fail(Op op, int error, int times = 1) {
    std::lock_guard lock(mu_);
    plan_.fail(op, error, times);
  }
  int calls(Op op) {
    std::lock_guard lock(mu_);
    return plan_.calls(op);
  }
  // Code run on the handler's thread at the start of each add() and wait() (null: none), e.g. to
  // arm and disarm the allocation-failure seam there.
  void set_hooks(std::function<void()> on_add, std::function<void()> on_wait) {
    std::lock_guard lock(mu_);
    on_add_ = std::move(on_add);
    on_wait_ = std::move(on_wait);
  }
  // Every successful modify of `fd`, in order: (interest, mode).
  std::vector<std::pair<FdEvents, FdMode>> modifies_of(int fd) {
    std::lock_guard lock(mu_);
    return modify_log_[fd];
  }
  // What `fd` is watched for now (nothing when it is not watched); a parked fd is watched for
  // FdEvents::none in oneshot mode.
  std::optional<std::pair<FdEvents, FdMode>> watch_of(int fd) {
    std::lock_guard lock(mu_);
    auto it = watches_.find(fd);
    if (it == watches_.end()) return std::nullopt;
    return std::make_pair(it->second.interest, it->second.mode);
  }

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
  FaultPlan<Op> plan_;
  std::map<int, Watch> watches_;
  std::map<int, std::vector<std::pair<FdEvents, FdMode>>> modify_log_;
  std::map<int, FdEvents> ready_;
  std::vector<detail::PollEvent> injected_;
  std::optional<detail::MonoTime> deadline_;
  std::function<void()> on_add_;
  std::function<void()> on_wait_;
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
