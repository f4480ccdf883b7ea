// The event handler's timeouts (I/O thread): expiring port deadlines and accept back-offs, and
// keeping the native timer armed to the earliest of them.
#include <cstdio>

#include "io/event_handler.h"

namespace evh {
namespace detail {
namespace {

std::int64_t to_ns(MonoTime t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

void EventHandlerImpl::expire() noexcept {
  // Never early: only entries whose deadline is not after now (SEMANTICS 11).
  const MonoTime now = MonoClock::now();
  while (!timeouts_.empty() && timeouts_.top().deadline <= now) {
    const DeadlineHeap::Entry entry = timeouts_.pop();
    IoEvent ev;
    ev.notice = IoNotice::timeout;
    ev.deadline_ns = to_ns(entry.deadline);
    if (post(static_cast<PortId>(entry.key), ev)) {
      timeouts_fired_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  while (!backoffs_.empty() && backoffs_.top().deadline <= now) {
    const int fd = static_cast<int>(backoffs_.pop().key);
    auto it = fds_.find(fd);
    if (it == fds_.end()) continue;
    it->second.backing_off = false;
    sync_kernel(it->second);
  }
}

void EventHandlerImpl::update_timer() noexcept {
  std::optional<MonoTime> earliest;
  if (!timeouts_.empty()) earliest = timeouts_.top().deadline;
  if (!backoffs_.empty() && (!earliest || backoffs_.top().deadline < *earliest)) {
    earliest = backoffs_.top().deadline;
  }
  if (earliest == armed_) return;  // re-armed only when the earliest deadline changes
  const Status s = earliest ? poller_->set_deadline(*earliest) : poller_->clear_deadline();
  deadline_arms_.fetch_add(1, std::memory_order_relaxed);
  if (!s) {
    std::fprintf(stderr, "evh: arming the event handler's timer failed: %s\n",
                 s.error().message().c_str());
    return;
  }
  armed_ = earliest;
}

}  // namespace detail
}  // namespace evh
