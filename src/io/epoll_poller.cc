#include "io/epoll_poller.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/mono_time.h"

namespace evh::detail {
namespace {

std::error_code last_error() noexcept {
  return {errno, std::generic_category()};
}

std::uint32_t to_epoll(FdEvents interest, FdMode mode) noexcept {
  std::uint32_t e = 0;
  if (any(interest & FdEvents::readable)) e |= EPOLLIN;
  if (any(interest & FdEvents::writable)) e |= EPOLLOUT;
  if (any(interest & FdEvents::read_closed)) e |= EPOLLRDHUP;
  if (mode == FdMode::edge) e |= EPOLLET;
  if (mode == FdMode::oneshot) e |= EPOLLONESHOT;
  return e;
}

FdEvents from_epoll(std::uint32_t e) noexcept {
  FdEvents out = FdEvents::none;
  if ((e & EPOLLIN) != 0) out |= FdEvents::readable;
  if ((e & EPOLLOUT) != 0) out |= FdEvents::writable;
  if ((e & EPOLLRDHUP) != 0) out |= FdEvents::read_closed;
  if ((e & EPOLLERR) != 0) out |= FdEvents::error;
  if ((e & EPOLLHUP) != 0) out |= FdEvents::hang_up;
  return out;
}

// Reads a timerfd's or eventfd's 8-byte counter, which resets it. EAGAIN (nothing to read: a
// stale readiness) is fine.
void drain_counter(int fd) noexcept {
  std::uint64_t count;
  while (::read(fd, &count, sizeof count) < 0 && errno == EINTR) {
  }
}

}  // namespace

Result<std::unique_ptr<EpollPoller>> EpollPoller::create() noexcept {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return last_error();
  const int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (tfd < 0) {
    const auto ec = last_error();
    ::close(ep);
    return ec;
  }
  const int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) {
    const auto ec = last_error();
    ::close(tfd);
    ::close(ep);
    return ec;
  }
  std::unique_ptr<EpollPoller> p(new (std::nothrow) EpollPoller(ep, tfd, efd));
  if (!p) {
    ::close(efd);
    ::close(tfd);
    ::close(ep);
    return std::make_error_code(std::errc::not_enough_memory);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerToken;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0) return last_error();
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0) return last_error();
  return p;
}

EpollPoller::~EpollPoller() {
  ::close(wake_fd_);
  ::close(timer_fd_);
  ::close(epoll_fd_);
}

Status EpollPoller::control(int op, int fd, FdEvents interest, FdMode mode,
                            std::uint64_t token) noexcept {
  epoll_event ev{};
  ev.events = to_epoll(interest, mode);
  ev.data.u64 = token;
  if (::epoll_ctl(epoll_fd_, op, fd, &ev) != 0) return last_error();
  return {};
}

Status EpollPoller::add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept {
  if (token >= kReservedTokens) return Errc::invalid_argument;
  return control(EPOLL_CTL_ADD, fd, interest, mode, token);
}

Status EpollPoller::modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept {
  if (token >= kReservedTokens) return Errc::invalid_argument;
  // EPOLL_CTL_MOD polls the file again and queues it when a condition already holds, in every
  // mode: a re-arm never loses data that was buffered while the fd was disarmed.
  return control(EPOLL_CTL_MOD, fd, interest, mode, token);
}

Status EpollPoller::remove(int fd) noexcept {
  epoll_event ev{};  // Linux < 2.6.9 wanted a non-null event for EPOLL_CTL_DEL
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &ev) != 0) return last_error();
  return {};
}

Status EpollPoller::set_deadline(MonoTime deadline) noexcept {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  itimerspec spec{};
  // An all-zero it_value disarms the timer; a deadline at or before the epoch is simply due.
  const std::int64_t at = std::max<std::int64_t>(ns, 1);
  spec.it_value.tv_sec = at / 1'000'000'000;
  spec.it_value.tv_nsec = at % 1'000'000'000;
  if (::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) return last_error();
  return {};
}

Status EpollPoller::clear_deadline() noexcept {
  itimerspec spec{};
  if (::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) return last_error();
  return {};
}

void EpollPoller::wake() noexcept {
  const std::uint64_t one = 1;
  // The counter cannot overflow (it would take 2^64 - 2 wakes without a wait), so the write
  // neither fails with EAGAIN nor blocks.
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

int EpollPoller::epoll_wait_until(int max, MonoTime until) noexcept {
  if (until == kForever) return ::epoll_wait(epoll_fd_, events_.data(), max, -1);
  const std::int64_t until_ns = to_ns(until);
  for (;;) {
    const std::int64_t now = mono_now_ns();
    const std::int64_t left = until_ns > now ? until_ns - now : 0;
    if (left == 0 || !have_pwait2_) {
      // Whole milliseconds, rounded up: never before `until`.
      const std::int64_t ms = (left + 999'999) / 1'000'000;
      const int n = ::epoll_wait(epoll_fd_, events_.data(), max,
                                 static_cast<int>(std::min<std::int64_t>(ms, INT32_MAX)));
      if (n != 0 || left == 0) return n;
    } else {
      // The kernel lets a wait of d end up to d/1000 late (select_estimate_accuracy: 0.1 %, at
      // least the thread's timer slack), so ask for that much less; a wait that then ends early
      // waits again for the rest, whose own slack is a thousandth of that.
      const std::int64_t ask = left - left / 1000;
      timespec ts{static_cast<time_t>(ask / 1'000'000'000), static_cast<long>(ask % 1'000'000'000)};
      const int n = ::epoll_pwait2(epoll_fd_, events_.data(), max, &ts, nullptr);
      if (n < 0 && errno == ENOSYS) {
        // Linux before 5.11: millisecond timeouts only.
        have_pwait2_ = false;
        continue;
      }
      if (n != 0) return n;
    }
    if (mono_now_ns() >= until_ns) return 0;
  }
}

Result<PollResult> EpollPoller::wait(std::span<PollEvent> out, MonoTime until) noexcept {
  // Never ask the kernel for more than the caller can take: a ready fd that is not returned
  // stays on epoll's ready list for the next wait, but one returned and dropped here would be a
  // lost edge.
  const int max = static_cast<int>(std::min(out.size(), kMaxEvents));
  if (max == 0) return Errc::invalid_argument;
  int n;
  do {
    n = epoll_wait_until(max, until);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return last_error();

  PollResult r;
  for (int i = 0; i < n; ++i) {
    const std::uint64_t token = events_[i].data.u64;
    if (token == kTimerToken) {
      // Always read the expiry count: an unread timerfd stays readable forever (level).
      drain_counter(timer_fd_);
      r.deadline_reached = true;
    } else if (token == kWakeToken) {
      drain_counter(wake_fd_);
      r.woken = true;
    } else {
      out[r.count++] = PollEvent{token, from_epoll(events_[i].events)};
    }
  }
  return r;
}

}  // namespace evh::detail
