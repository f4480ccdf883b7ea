#include "timer/timer_wheel.h"

#include "core/assert.h"

namespace evh::detail {
namespace {

constexpr std::int64_t kMaxTicks =
    (std::int64_t{1} << (TimerWheel::kSlotBits * TimerWheel::kLevels)) - 1;

inline std::int64_t tick_of(std::int64_t ns) noexcept {
  return ns >= 0 ? ns >> TimerWheel::kTickShift : 0;
}

}  // namespace

TimerWheel::TimerWheel(std::int64_t now_ns) noexcept : now_tick_(tick_of(now_ns)) {}

void TimerWheel::insert(Timer& t) noexcept {
  place(t);
}

void TimerWheel::place(Timer& t) noexcept {
  std::int64_t tick = tick_of(t.deadline_);
  if (tick < now_tick_) tick = now_tick_;
  // Further than the wheel reaches: park it at the last tick of the top level's current
  // revolution; it is re-placed when that slot comes round.
  const std::int64_t horizon = now_tick_ | kMaxTicks;
  if (tick > horizon) tick = horizon;
  // The level is the highest 6-bit digit in which tick and now differ: level-k slots of the
  // current level-(k+1) slot lie strictly ahead of now, so lower levels always expire first.
  const std::uint64_t diff = static_cast<std::uint64_t>(tick ^ now_tick_) | (kSlots - 1);
  const int level = (63 - __builtin_clzll(diff)) / kSlotBits;
  const int slot = static_cast<int>((tick >> (level * kSlotBits)) & (kSlots - 1));
  slots_[level][slot].push_front(t);
  occupied_[level] |= std::uint64_t{1} << slot;
}

std::int64_t TimerWheel::slot_start_tick(int level, int slot) const noexcept {
  const int shift = level * kSlotBits;
  // Keep the digits above this level, put `slot` in this level's digit, zero those below.
  const std::int64_t above = now_tick_ >> (shift + kSlotBits) << (shift + kSlotBits);
  return above | (static_cast<std::int64_t>(slot) << shift);
}

bool TimerWheel::earliest_slot(int& level, int& slot) noexcept {
  for (int l = 0; l < kLevels; ++l) {
    while (occupied_[l] != 0) {
      // Occupied slots of a level lie at or after now's digit in it (see place()).
      const int now_digit = static_cast<int>((now_tick_ >> (l * kSlotBits)) & (kSlots - 1));
      const std::uint64_t ahead = occupied_[l] & (~std::uint64_t{0} << now_digit);
      EVH_ASSERT(ahead == occupied_[l], "a timer slot behind now was left occupied");
      const int s = __builtin_ctzll(ahead != 0 ? ahead : occupied_[l]);
      if (slots_[l][s].empty()) {  // emptied by removals since: clear lazily
        occupied_[l] &= ~(std::uint64_t{1} << s);
        continue;
      }
      level = l;
      slot = s;
      return true;
    }
  }
  return false;
}

void TimerWheel::collect_due(std::int64_t now_ns, TimerList& out) noexcept {
  const std::int64_t target = tick_of(now_ns);
  EVH_ASSERT(target >= now_tick_, "time went backwards");
  int level = 0;
  int slot = 0;
  while (earliest_slot(level, slot)) {
    const std::int64_t start = slot_start_tick(level, slot);
    if (start > target) break;
    TimerList list;
    slots_[level][slot].splice_into(list);
    occupied_[level] &= ~(std::uint64_t{1} << slot);
    now_tick_ = start;
    if (level == 0) {
      // One tick: due unless it is the current tick and the deadline is still ahead.
      while (!list.empty()) {
        Timer& t = *list.head;
        TimerList::unlink(t);
        if (t.deadline_ <= now_ns) {
          out.push_front(t);
        } else {
          place(t);  // same tick as now: back into this slot, for a later collect
        }
      }
      if (start == target) break;
    } else {
      // Cascade: re-place each relative to the slot's start; they land in lower levels.
      while (!list.empty()) {
        Timer& t = *list.head;
        TimerList::unlink(t);
        place(t);
      }
    }
  }
  now_tick_ = target;
}

std::optional<std::int64_t> TimerWheel::next_wakeup() noexcept {
  int level = 0;
  int slot = 0;
  if (!earliest_slot(level, slot)) return std::nullopt;
  // Above level 1 a slot spans milliseconds and may hold very many timers: wake at its start,
  // where the timers move down a level (nothing fires early; it costs one cheap wakeup).
  if (level > 1) return slot_start_tick(level, slot) << kTickShift;
  // Level 0 or 1: the earliest slot is short (at most 64 ticks), so scan it for the exact
  // earliest deadline, then merge windows: the wakeup may wait while every timer whose deadline
  // has come by then can still fire within its slack.
  std::int64_t earliest = INT64_MAX;
  for (Timer* t = slots_[level][slot].head; t != nullptr; t = t->next_) {
    earliest = t->deadline_ < earliest ? t->deadline_ : earliest;
  }
  std::int64_t wake = earliest + kMergeHorizonNs;
  // Timers in any other occupied slot of level >= 1 are not scanned: stop at its start.
  for (int l = 1; l < kLevels; ++l) {
    std::uint64_t others = occupied_[l];
    if (l == level) others &= ~(std::uint64_t{1} << slot);
    if (others != 0) {
      const std::int64_t start = slot_start_tick(l, __builtin_ctzll(others)) << kTickShift;
      if (start < wake) wake = start;
      break;
    }
  }
  auto merge = [&wake](const TimerList& list) {
    for (Timer* t = list.head; t != nullptr; t = t->next_) {
      if (t->deadline_ <= wake && t->fire_by_ < wake) wake = t->fire_by_;
    }
  };
  if (level == 1) {
    merge(slots_[1][slot]);
  } else {
    for (std::uint64_t rest = occupied_[0] & (~std::uint64_t{0} << slot); rest != 0;
         rest &= rest - 1) {
      const int s = __builtin_ctzll(rest);
      if ((slot_start_tick(0, s) << kTickShift) > wake) break;
      merge(slots_[0][s]);
    }
  }
  return wake < earliest ? earliest : wake;
}

}  // namespace evh::detail
