// TimerWheel: a hierarchical timing wheel over caller-owned Timer nodes, keyed by deadline.
//
// 7 levels of 64 slots; a level-0 slot is one tick of 1,024 ns, a level-k slot 64^k ticks, so the
// wheel spans 2^42 ticks (52 days); a timer further out waits in the top level and is re-placed
// when its slot comes round. Insert and remove are O(1) and allocate nothing (the slot lists are
// intrusive, doubly linked through Timer::next_/pprev_). Sorting is deferred: `collect_due` hands
// back the due timers unsorted, and the caller sorts only the batch it is about to fire (the
// approach of the Linux timer wheel and Tokio: most timers are cancelled before they are due).
//
// Contract:
//   - single-threaded (the owning isolate's turn);
//   - `now_ns` passed to `advance_to`/`collect_due` never decreases (asserted in debug builds);
//   - a Timer linked into the wheel must stay alive and unmoved until removed or collected.
#pragma once

#include <evh/timer.h>

#include <array>
#include <cstdint>
#include <optional>

namespace evh::detail {

// An intrusive doubly linked list of Timers (through next_/pprev_), so that any member can be
// unlinked in O(1) whichever list holds it: a wheel slot, a detached batch, the zero-delay list.
struct TimerList {
  Timer* head = nullptr;

  bool empty() const noexcept { return head == nullptr; }
  void push_front(Timer& t) noexcept {
    t.next_ = head;
    if (head != nullptr) head->pprev_ = &t.next_;
    head = &t;
    t.pprev_ = &head;
  }
  static void unlink(Timer& t) noexcept {
    *t.pprev_ = t.next_;
    if (t.next_ != nullptr) t.next_->pprev_ = t.pprev_;
    t.next_ = nullptr;
    t.pprev_ = nullptr;
  }
  // Moves every element to `out` (order not kept).
  void splice_into(TimerList& out) noexcept {
    while (head != nullptr) {
      Timer& t = *head;
      unlink(t);
      out.push_front(t);
    }
  }
};

class TimerWheel {
 public:
  static constexpr int kTickShift = 10;  // 1 tick = 1,024 ns
  static constexpr int kLevels = 7;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;

  explicit TimerWheel(std::int64_t now_ns) noexcept;
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Links `t` (not linked anywhere) by its deadline_. A deadline in the past is due at the next
  // collect.
  void insert(Timer& t) noexcept;
  // Unlinks `t` from whichever wheel slot holds it. O(1).
  static void remove(Timer& t) noexcept { TimerList::unlink(t); }

  // Moves into `out` every timer whose deadline is ≤ now_ns (all of them, so that a batch can be
  // fired in deadline order). Postcondition: every timer left has deadline > now_ns.
  void collect_due(std::int64_t now_ns, TimerList& out) noexcept;

  // When the owner must look next, honouring every timer's slack: the latest time W such that no
  // timer's window [deadline, fire_by] ends before W. Windows are merged within kMergeHorizonNs
  // of the earliest deadline, which bounds the scan (a slack longer than that is used up to it
  // only). When the earliest timers are in a level above 1 (milliseconds away and more), W is the
  // start of their slot instead: a wakeup there moves them down without firing any, so W may then
  // precede every deadline. nullopt when empty.
  std::optional<std::int64_t> next_wakeup() noexcept;
  static constexpr std::int64_t kMergeHorizonNs = 64 << kTickShift;

  std::int64_t now_tick() const noexcept { return now_tick_; }

 private:
  void place(Timer& t) noexcept;
  // Lowest level with a non-empty slot, and that slot; clears bits of slots found empty.
  bool earliest_slot(int& level, int& slot) noexcept;
  std::int64_t slot_start_tick(int level, int slot) const noexcept;

  std::int64_t now_tick_;
  std::array<std::uint64_t, kLevels> occupied_{};  // bit s: slot s may be non-empty
  std::array<std::array<TimerList, kSlots>, kLevels> slots_{};
};

}  // namespace evh::detail
