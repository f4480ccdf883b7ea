#include "timer/timer_set.h"

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

#include "base/assert.h"

namespace evh::detail {
namespace {

// The owner ids of live timer sets: process-wide, like what signals need (docs/ARCHITECTURE.md,
// "Rules between the parts"), because a Timer armed in one runtime's isolate may be handed to an
// isolate of another. An id is 32 bits so that it fits the Timer's one cache line beside the
// slack; ids are reused, so they never run out, and unique among live sets, so an armed timer's
// owner is never mistaken (its set disarms it before the id is freed). A mutex: taken once per
// isolate that uses timers, at its first timer and at its end.
class OwnerIds {
 public:
  std::uint32_t acquire() {
    std::lock_guard lock(mu_);
    // Room for this id's return first, so that release() never allocates (it is noexcept).
    free_.reserve(static_cast<std::size_t>(next_));
    if (!free_.empty()) {
      const std::uint32_t id = free_.back();
      free_.pop_back();
      return id;
    }
    if (next_ == UINT32_MAX) throw std::bad_alloc();  // 4 billion live timer sets
    return next_++;
  }
  void release(std::uint32_t id) noexcept {
    std::lock_guard lock(mu_);
    free_.push_back(id);  // capacity reserved by acquire()
  }

 private:
  std::mutex mu_;
  std::uint32_t next_ = 1;
  std::vector<std::uint32_t> free_;
};

OwnerIds& owner_ids() {
  static OwnerIds* ids = new OwnerIds;  // never destroyed: sets may outlive static destruction
  return *ids;
}

}  // namespace

TimerSet::TimerSet(std::int64_t now_ns) : owner_id_(owner_ids().acquire()), wheel_(now_ns) {}

TimerSet::~TimerSet() {
  cancel_all();
  owner_ids().release(owner_id_);
}

void TimerSet::cancel_all() noexcept {
  TimerList all;
  // Every deadline is ≤ INT64_MAX ("never" saturates to it), so this collects every timer.
  wheel_.collect_due(INT64_MAX, all);
  zero_delay_.splice_into(all);
  batch_.splice_into(all);
  while (!all.empty()) (void)cancel(*all.head);  // all armed here
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
  // Saturated: a deadline at the start of time (TimePoint::min()) is as late as can be.
  const std::int64_t late = saturating_sub(fire_ns, t.deadline_);
  EVH_ASSERT(late >= 0, "a timer fired before its deadline");
  if (!lateness_) lateness_ = std::make_unique<IsolateLateness>();
  lateness_->record_single_writer(late);
  if (runtime_lateness != nullptr) runtime_lateness->record(late);
  ++fired_;
  skipped = 0;
  if (t.period_ > 0) {
    // Fixed schedule: the next deadline is a whole number of periods after this one, the first
    // one still ahead of now; the periods in between are skipped, not run in a burst.
    // Unsigned: the true lateness of a deadline near the start of time exceeds INT64_MAX (the
    // saturated `late` above would land the timer far in the past).
    const auto period = static_cast<std::uint64_t>(t.period_);
    const std::uint64_t behind =
        (static_cast<std::uint64_t>(fire_ns) - static_cast<std::uint64_t>(t.deadline_)) / period;
    skipped = behind;
    // deadline + behind * period ≤ fire_ns fits (the sum is formed modulo 2^64, then is exact);
    // one more period may not (a period near "never").
    const auto caught_up =
        static_cast<std::int64_t>(static_cast<std::uint64_t>(t.deadline_) + behind * period);
    t.deadline_ = saturating_add(caught_up, t.period_);
    t.seq_ = next_seq_++;
    wheel_.insert(t);  // stays live; not part of this batch, which is detached
  } else {
    set_owner(t, 0);  // disarmed before its callback: the callback may re-arm it
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
