#include "timer/timer_wheel.h"

#include <algorithm>
#include <new>
#include <utility>

#include "base/assert.h"

namespace evh::detail {

TimerWheel::TimerWheel(std::int64_t now_ns) noexcept : now_tick_(tick_of(now_ns)) {
  staging(2).lists1 = kStagedBelow2;
  staging(3).lists1 = kStagedBelow3;
}

bool TimerWheel::widen() noexcept {
  if (wide_heads_ != nullptr) return true;
  constexpr int kLists = kChainedArrays * kSlots;
  wide_heads_.reset(new (std::nothrow) TimerList[kLists * TimerChains::kCount]());
  if (wide_heads_ == nullptr) return false;
  // Each slot's one list becomes its chain 0 (the move re-points its first node's back link).
  for (int i = 0; i < kLists; ++i) {
    narrow_heads_[i].move_to_empty(wide_heads_[i * TimerChains::kCount]);
  }
  heads_ = wide_heads_.get();
  chains_ = TimerChains::kCount;
  return true;
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
      if (slot_empty(l, s)) {  // emptied by removals since: clear lazily
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

void TimerWheel::stage_some() noexcept {
  for (int level = kFirstStagedLevel; level <= kLastStagedLevel; ++level) {
    Staging& st = staging(level);
    if (!st.active) {
      // The next slot of this level: after now's digit (slots behind it are empty, see place();
      // the one at it started at or before now, and collect_due() has cascaded it).
      const int now_digit = static_cast<int>((now_tick_ >> (level * kSlotBits)) & (kSlots - 1));
      std::uint64_t ahead =
          now_digit == kSlots - 1 ? 0 : occupied_[level] & (~std::uint64_t{0} << (now_digit + 1));
      int s = -1;
      while (ahead != 0) {
        const int c = __builtin_ctzll(ahead);
        if (!chained_empty(live_array(level), c)) {
          s = c;
          break;
        }
        occupied_[level] &= ~(std::uint64_t{1} << c);  // emptied by cancels: clear lazily
        ahead &= ahead - 1;
      }
      if (s < 0) continue;
      st.active = true;
      st.level = level;
      st.slot = s;
      st.start = slot_start_tick(level, s);
      st.paced_to = now_tick_;
      take_chained(live_array(level), s, st.pending);
      st.pending_count = std::exchange(placed_[level - kFirstStagedLevel][s], 0);
      occupied_[level] &= ~(std::uint64_t{1} << s);
    }
    if (st.pending.empty()) continue;
    // This collect's share of the work left, by the time it covers of the time left.
    const std::int64_t elapsed = now_tick_ - st.paced_to;
    const std::int64_t left = st.start - st.paced_to;
    std::int64_t quota = left > 0 ? st.pending_count * elapsed / left : st.pending_count;
    if (quota < kStageMinimum) quota = kStageMinimum;
    st.paced_to = now_tick_;
    stage(st, quota);
  }
}

void TimerWheel::stage(Staging& st, std::int64_t budget) noexcept {
  const std::int64_t taken = st.pending.drain(budget, [this, &st](Timer& t) {
    // Every timer of the staged slot lies in [start, start + 64^level): it goes to a lower level,
    // placed relative to the slot's start as if the wheel were already there.
    std::int64_t tick = tick_of(t.deadline_);
    if (tick < st.start) tick = st.start;
    // A timer parked here from beyond the wheel's reach stays at the slot's last tick; it is
    // re-placed (and parked again if still far) when that tick's slot is cascaded.
    const std::int64_t last = st.start | ((std::int64_t{1} << (st.level * kSlotBits)) - 1);
    if (tick > last) tick = last;
    const std::uint64_t diff = static_cast<std::uint64_t>(tick ^ st.start) | (kSlots - 1);
    const int l = (63 - __builtin_clzll(diff)) / kSlotBits;
    const int slot = static_cast<int>((tick >> (l * kSlotBits)) & (kSlots - 1));
    st.occupied[l] |= std::uint64_t{1} << slot;
    if (l == 0) {
      st.lists0[slot].push_front(t);
    } else if (l == 1) {
      push_chained(st.lists1, slot, t);
    } else {
      push_chained(kStaged2, slot, t);
      ++placed2_[slot];
    }
  });
  st.pending_count = taken < st.pending_count ? st.pending_count - taken : 0;
}

void TimerWheel::merge(Staging& st, int level) noexcept {
  // Finish what the budget left, then move the staged lists in. The live lower levels are
  // empty: they held only ticks before the staged slot's start, and collect_due() has fired or
  // cascaded all of those before it gets here.
  stage(st, INT64_MAX);
  for (int l = 0; l < level; ++l) {
    for (std::uint64_t bits = st.occupied[l]; bits != 0; bits &= bits - 1) {
      const int s = __builtin_ctzll(bits);
      EVH_ASSERT(slot_empty(l, s), "a live slot below a staged one was not empty at its start");
      if (l == 0) {
        if (st.lists0[s].empty()) continue;
        st.lists0[s].move_to_empty(narrow_slot(0, s));
      } else if (l == 1) {
        if (chained_empty(st.lists1, s)) continue;
        move_chained(st.lists1, kLive1, s);
      } else {
        if (chained_empty(kStaged2, s)) continue;
        move_chained(kStaged2, kLive2, s);
        placed_[0][s] = std::exchange(placed2_[s], 0);
      }
      occupied_[l] |= std::uint64_t{1} << s;
    }
    st.occupied[l] = 0;
  }
  st.active = false;
  // Timers started while the slot was staged went to its live slot, which starts now too:
  // cascade them here. Left to collect_due(), they would sit behind the lower levels' slots
  // just merged (earliest_slot() looks at lower levels first), past their own start, and the
  // wheel would later stage a slot it is already inside of.
  const int array = live_array(level);
  if (!chained_empty(array, st.slot)) {
    occupied_[level] &= ~(std::uint64_t{1} << st.slot);
    placed_[level - kFirstStagedLevel][st.slot] = 0;
    TimerChains started;
    take_chained(array, st.slot, started);
    started.drain(INT64_MAX, [this](Timer& t) { place(t); });
  }
}

void TimerWheel::collect_due(std::int64_t now_ns, TimerList& out) noexcept {
  const std::int64_t target = tick_of(now_ns);
  EVH_ASSERT(target >= now_tick_, "time went backwards");
  int level = 0;
  int slot = 0;
  // Timers parked at the end of the wheel's reach (see place()) whose deadline is still ahead:
  // held aside until the wheel stands at `target`, then placed again relative to it. Placed
  // back at once, they would land in the very slot being walked — the last tick of the
  // wheel's revolution, which is as far as it reaches from there — and be found again forever.
  TimerList parked;
  for (;;) {
    const bool live = earliest_slot(level, slot);
    const std::int64_t start = live ? slot_start_tick(level, slot) : INT64_MAX;
    // A staged slot whose start comes first (or ties) is merged before anything at its start.
    int staged = -1;
    for (int l = kFirstStagedLevel; l <= kLastStagedLevel; ++l) {
      const Staging& st = staging(l);
      if (st.active && st.start <= target && st.start <= start &&
          (staged < 0 || st.start < staging(staged).start)) {
        staged = l;
      }
    }
    if (staged >= 0) {
      now_tick_ = staging(staged).start;
      merge(staging(staged), staged);
      continue;
    }
    if (!live || start > target) break;
    occupied_[level] &= ~(std::uint64_t{1} << slot);
    now_tick_ = start;
    if (wide(level)) {
      // Cascade: every timer goes to a lower level (none is due: its slot starts after now).
      if (level >= kFirstStagedLevel) placed_[level - kFirstStagedLevel][slot] = 0;
      TimerChains chains;
      take_chained(live_array(level), slot, chains);
      chains.drain(INT64_MAX, [this](Timer& t) { place(t); });
      continue;
    }
    // Detach the slot's chain and walk it once: each node is read, then re-linked (the list
    // nodes are the callers' timers, scattered in memory; a second pass would miss again).
    Timer* t = narrow_slot(level, slot).head;
    if (t != nullptr) t->pprev_ = nullptr;
    narrow_slot(level, slot).head = nullptr;
    while (t != nullptr) {
      Timer* next = t->next_;
      if (next != nullptr) __builtin_prefetch(next->next_, 1);
      t->next_ = nullptr;
      t->pprev_ = nullptr;
      if (level == 0 && t->deadline_ <= now_ns) {
        out.push_front(*t);
      } else if (level == 0 && tick_of(t->deadline_) > start) {
        parked.push_front(*t);
      } else {
        // Level 0: the current tick with its deadline still ahead goes back into this slot;
        // higher levels cascade, relative to the slot's start, into lower levels.
        place(*t);
      }
      t = next;
    }
    if (level == 0 && start == target) break;
  }
  now_tick_ = target;
  while (!parked.empty()) {
    Timer& t = *parked.head;
    TimerList::unlink(t);
    place(t);
  }
  stage_some();
}

std::optional<std::int64_t> TimerWheel::next_wakeup() noexcept {
  last_exact_ = false;
  // Start (or pace) the pre-cascading as soon as timers are armed, not at the first collect.
  stage_some();
  // A staged slot must be merged at its start; pending staging work wants a look every
  // kStagePaceTicks.
  std::int64_t staged_start = INT64_MAX;
  for (const Staging& st : staging_) {
    if (!st.active) continue;
    std::int64_t t = st.start;
    if (!st.pending.empty() && now_tick_ + kStagePaceTicks < t) t = now_tick_ + kStagePaceTicks;
    if ((t << kTickShift) < staged_start) staged_start = t << kTickShift;
  }
  int level = 0;
  int slot = 0;
  if (!earliest_slot(level, slot)) {
    if (staged_start != INT64_MAX) return staged_start;
    return std::nullopt;
  }
  // Above level 1 a slot spans milliseconds and may hold very many timers: wake at its start,
  // where the timers move down a level (nothing fires early; it costs one cheap wakeup).
  if (level > 1) return std::min(slot_start_tick(level, slot) << kTickShift, staged_start);
  // Level 0 or 1: the earliest slot is short (at most 64 ticks), so scan it for the exact
  // earliest deadline, then merge windows: the wakeup may wait while every timer whose deadline
  // has come by then can still fire within its slack.
  std::int64_t earliest = INT64_MAX;
  std::int64_t earliest_fire_by = INT64_MAX;
  for_each_in(level, slot, [&](const Timer& t) {
    if (t.deadline_ < earliest) {
      earliest = t.deadline_;
      earliest_fire_by = fire_by(t);
    }
  });
  if (merging_ == WakeupMerging::none) {
    last_exact_ = earliest_fire_by == earliest;
    return std::min(earliest, staged_start);
  }
  std::int64_t wake = earliest + kMergeHorizonNs;
  if (staged_start < wake) wake = staged_start;
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
  auto merge = [&wake](const Timer& t) {
    if (t.deadline_ <= wake && fire_by(t) < wake) wake = fire_by(t);
  };
  if (level == 1) {
    for_each_in(1, slot, merge);
  } else {
    for (std::uint64_t rest = occupied_[0] & (~std::uint64_t{0} << slot); rest != 0;
         rest &= rest - 1) {
      const int s = __builtin_ctzll(rest);
      if ((slot_start_tick(0, s) << kTickShift) > wake) break;
      for_each_in(0, s, merge);
    }
  }
  if (wake <= earliest) {
    last_exact_ = earliest_fire_by == earliest;
    return earliest;
  }
  return wake;
}

}  // namespace evh::detail
