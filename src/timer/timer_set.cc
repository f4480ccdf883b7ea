#include "timer/timer_set.h"

#include <algorithm>

#include "base/assert.h"

namespace evh::detail {

void TimerSet::cancel_all() noexcept {
  TimerList all;
  // Every deadline is ≤ INT64_MAX ("never" saturates to it), so this collects every timer.
  wheel_.collect_due(INT64_MAX, all);
  zero_delay_.splice_into(all);
  batch_.splice_into(all);
  while (!all.empty()) cancel(*all.head);
}

std::size_t TimerSet::begin_batch(std::int64_t now_ns) {
  EVH_ASSERT(batch_.empty(), "a batch is already running");
  TimerList due;
  wheel_.collect_due(now_ns, due);
  // Zero-delay timers are due by construction (deadline = their start time ≤ now).
  zero_delay_.splice_into(due);
  scratch_.clear();
  for (Timer* t = due.head; t != nullptr; t = t->next_)
    scratch_.push_back({t->deadline_, t->seq_, t});
  if (scratch_.empty()) return 0;
  std::sort(scratch_.begin(), scratch_.end(), [](const SortKey& a, const SortKey& b) {
    return a.deadline != b.deadline ? a.deadline < b.deadline : a.seq < b.seq;
  });
  for (auto it = scratch_.rbegin(); it != scratch_.rend(); ++it) {
    TimerList::unlink(*it->timer);
    batch_.push_front(*it->timer);
  }
  ++batches_;
  largest_batch_ = std::max<std::uint64_t>(largest_batch_, scratch_.size());
  return scratch_.size();
}

Timer* TimerSet::next_in_batch(std::int64_t fire_ns, std::uint64_t& skipped) noexcept {
  if (batch_.empty()) return nullptr;
  Timer& t = *batch_.head;
  TimerList::unlink(t);
  const std::int64_t late = fire_ns - t.deadline_;
  EVH_ASSERT(late >= 0, "a timer fired before its deadline");
  if (!lateness_) lateness_ = std::make_unique<IsolateLateness>();
  lateness_->record_single_writer(late);
  if (runtime_lateness != nullptr) runtime_lateness->record(late);
  ++fired_;
  skipped = 0;
  if (t.period_ > 0) {
    // Fixed schedule: the next deadline is a whole number of periods after this one, the first
    // one still ahead of now; the periods in between are skipped, not run in a burst.
    const std::int64_t behind = late / t.period_;
    skipped = static_cast<std::uint64_t>(behind);
    const std::int64_t slack = t.fire_by_ - t.deadline_;
    // behind * period ≤ late fits; one more period may not (a period near "never").
    t.deadline_ = saturating_add(t.deadline_ + behind * t.period_, t.period_);
    t.fire_by_ = saturating_add(t.deadline_, slack);
    t.seq_ = next_seq_++;
    wheel_.insert(t);  // stays live; not part of this batch, which is detached
  } else {
    --live_;
  }
  return &t;
}

std::optional<std::int64_t> TimerSet::next_wakeup() noexcept {
  if (!zero_delay_.empty()) {
    std::int64_t earliest = INT64_MAX;
    for (Timer* t = zero_delay_.head; t != nullptr; t = t->next_) {
      earliest = std::min(earliest, t->deadline_);
    }
    return earliest;
  }
  return wheel_.next_wakeup();
}

TimerStats TimerSet::stats_counters() const noexcept {
  TimerStats s;
  s.live = live_;
  s.started = started_;
  s.fired = fired_;
  s.cancelled = cancelled_;
  s.batches = batches_;
  s.largest_batch = largest_batch_;
  return s;
}

TimerStats TimerSet::stats() const noexcept {
  TimerStats s = stats_counters();
  if (lateness_) fill_lateness(s, *lateness_);
  return s;
}

}  // namespace evh::detail
