// EpollPoller: the Poller over epoll, one timerfd (CLOCK_MONOTONIC, absolute deadlines) and one
// eventfd for wake-ups. All three fds are O_CLOEXEC and owned by the poller. A wait's own limit
// (`until`) is epoll_pwait2's nanosecond timeout (epoll_wait's milliseconds, rounded up, before
// Linux 5.11), so that a pool waiting for its next timer in the poller needs no timerfd re-arm.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <memory>

#include "io/poller.h"

namespace evh::detail {

class EpollPoller final : public Poller {
 public:
  // Opens the epoll instance, the timerfd and the eventfd; the kernel's errno on failure.
  static Result<std::unique_ptr<EpollPoller>> create() noexcept;
  ~EpollPoller() override;

  const char* name() const noexcept override { return "epoll"; }
  Status add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override;
  Status modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override;
  Status remove(int fd) noexcept override;
  bool close_drops_watches() const noexcept override { return true; }
  Status set_deadline(MonoTime deadline) noexcept override;
  Status clear_deadline() noexcept override;
  void wake() noexcept override;
  Result<PollResult> wait(std::span<PollEvent> out, MonoTime until) noexcept override;

 private:
  EpollPoller(int epoll_fd, int timer_fd, int wake_fd) noexcept
      : epoll_fd_(epoll_fd), timer_fd_(timer_fd), wake_fd_(wake_fd) {}
  Status control(int op, int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept;
  // epoll_wait into events_ until `until`: the count, or -1 with errno (EINTR included).
  int epoll_wait_until(int max, MonoTime until) noexcept;

  static constexpr std::uint64_t kTimerToken = kReservedTokens;
  static constexpr std::uint64_t kWakeToken = kReservedTokens + 1;

  int epoll_fd_;
  int timer_fd_;
  int wake_fd_;
  bool have_pwait2_ = true;  // epoll_pwait2 (Linux 5.11): nanosecond timeouts
  std::array<epoll_event, kMaxEvents> events_{};
};

}  // namespace evh::detail
