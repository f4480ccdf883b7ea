#include "io/timeouts.h"

#include <cstdio>

namespace evh::detail {

void IoTimeouts::expire_timeouts(std::int64_t now_ns, Delivery& delivery) noexcept {
  while (!timeouts_.empty() && timeouts_.top().deadline <= now_ns) {
    const DeadlineHeap::Entry entry = timeouts_.pop();
    IoEvent ev;
    ev.notice = IoNotice::timeout;
    ev.deadline_ns = entry.deadline;
    if (delivery.post(static_cast<PortId>(entry.key), ev) == Delivery::Posted::delivered) {
      fired_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void IoTimeouts::arm(Poller& poller, TimeoutClock clock) noexcept {
  std::optional<std::int64_t> earliest;
  if (clock == TimeoutClock::monotonic && !timeouts_.empty()) earliest = timeouts_.top().deadline;
  if (!backoffs_.empty() && (!earliest || backoffs_.top().deadline < *earliest)) {
    earliest = backoffs_.top().deadline;
  }
  if (earliest == armed_) return;  // re-armed only when the earliest deadline changes
  const Status s = earliest ? poller.set_deadline(from_ns(*earliest)) : poller.clear_deadline();
  arms_.fetch_add(1, std::memory_order_relaxed);
  if (!s) {
    std::fprintf(stderr, "evh: arming the event handler's timer failed: %s\n",
                 s.error().message().c_str());
    return;
  }
  armed_ = earliest;
}

void IoTimeouts::clear() noexcept {
  while (!timeouts_.empty()) timeouts_.pop();
}

}  // namespace evh::detail
