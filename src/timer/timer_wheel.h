// TimerWheel: a hierarchical timing wheel over caller-owned Timer nodes, keyed by deadline.
//
// 7 levels of 64 slots; a level-0 slot is one tick of 1,024 ns, a level-k slot 64^k ticks, so the
// wheel spans 2^42 ticks (52 days); a timer further out waits in the top level and is re-placed
// when its slot comes round. Insert and remove are O(1) and allocate nothing (the slot lists are
// intrusive, doubly linked through Timer::next_/pprev_). A slot of levels 1-3 is 8 such lists
// (TimerChains), so that a cascade walks 8 chains of scattered nodes at once. Sorting is deferred:
// `collect_due` hands back the due timers unsorted, and the caller sorts only the batch it is about
// to fire (the approach of the Linux timer wheel and Tokio: most timers are cancelled before they
// are due).
//
// Contract:
//   - single-threaded (the owning isolate's turn);
//   - `now_ns` passed to `advance_to`/`collect_due` never decreases (asserted in debug builds);
//   - a Timer linked into the wheel must stay alive and unmoved until removed or collected.
#pragma once

#include <evh/timer.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>

namespace evh::detail {

// An intrusive doubly linked list of Timers (through next_/pprev_), so that any member can be
// unlinked in O(1) whichever list holds it: a wheel slot, a detached batch, the zero-delay list.
// Hand-written, unlike evh's other intrusive lists (Boost.Intrusive, base/intrusive.h): the node
// is the public Timer, which may hold no library type and must stay one cache line; unlinking
// goes through `pprev_` without knowing which list holds the timer (Boost's list needs its
// container, or an auto-unlink hook in the public type); and the chains below walk eight lists
// at once with a prefetch one round ahead, fixing each back link once at the end of the walk —
// an access pattern no container interface offers.
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
  // Hands the whole chain to `to`, which must be empty. O(1).
  void move_to_empty(TimerList& to) noexcept {
    to.head = head;
    if (head != nullptr) head->pprev_ = &to.head;
    head = nullptr;
  }
  // Moves every element to `out` (order not kept). O(n): for a non-empty `out`.
  void splice_into(TimerList& out) noexcept {
    while (head != nullptr) {
      Timer& t = *head;
      unlink(t);
      out.push_front(t);
    }
  }
};

// Up to kCount lists walked together: a slot that holds many timers has them spread over kCount
// lists, so that walking it follows kCount independent pointer chains at once. The nodes are the
// callers', scattered in memory; one chain is walked at one cache miss per node, back to back,
// while kCount chains keep that many misses in flight. The wheel keeps its chained slots in
// planes (see TimerWheel::widen) and moves a slot into one of these to walk it.
struct TimerChains {
  static constexpr int kCount = 8;
  std::array<TimerList, kCount> chain{};

  bool empty() const noexcept {
    for (const TimerList& c : chain) {
      if (!c.empty()) return false;
    }
    return true;
  }
  // Unlinks up to `budget` timers, taking one from each chain in turn, and calls f(timer) on
  // each (unlinked: free to be linked anywhere). Returns how many it took.
  template <class F>
  std::int64_t drain(std::int64_t budget, F&& f) noexcept;
};

class TimerWheel {
 public:
  // The end of `t`'s window: deadline + slack, saturated ("never" stays never).
  static std::int64_t fire_by(const Timer& t) noexcept {
    std::int64_t end = 0;
    return __builtin_add_overflow(t.deadline_, static_cast<std::int64_t>(t.slack_), &end)
               ? INT64_MAX
               : end;
  }

  static constexpr int kTickShift = 10;  // 1 tick = 1,024 ns
  static constexpr int kLevels = 7;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;
  static constexpr std::int64_t kMaxTicks = (std::int64_t{1} << (kSlotBits * kLevels)) - 1;
  static std::int64_t tick_of(std::int64_t ns) noexcept { return ns >= 0 ? ns >> kTickShift : 0; }

  explicit TimerWheel(std::int64_t now_ns) noexcept;
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Links `t` (not linked anywhere) by its deadline_. A deadline in the past is due at the next
  // collect. Inline: it is the whole cost of starting a timer.
  void insert(Timer& t) noexcept { place(t); }
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
  // Whether next_wakeup() merges slack windows (the default) or names the earliest deadline
  // itself: on a manual clock the test, not the kernel, decides when time passes, so wakeups
  // cost nothing and a timer fires as soon as the clock reaches its deadline.
  enum class WakeupMerging : std::uint8_t { slack_windows, none };
  void set_wakeup_merging(WakeupMerging merging) noexcept { merging_ = merging; }
  // Whether the last next_wakeup() was an exact timer's own deadline (a zero-slack timer is
  // the earliest): a runner may spin up to it rather than trust a timed sleep to end on time.
  bool last_wakeup_exact() const noexcept { return last_exact_; }
  static constexpr std::int64_t kMergeHorizonNs = 64 << kTickShift;

  std::int64_t now_tick() const noexcept { return now_tick_; }

  // Spreads the slots of levels 1-3 (and the staging lists below them) over TimerChains::kCount
  // chains from now on, for walks that overlap their cache misses. Until then each has one chain
  // and the wheel is ~7 KB; widening adds one ~21 KB block, once (the owner calls it when it
  // holds many timers). Timers already linked stay where they are. False if out of memory: the
  // wheel then stays narrow, which is correct, only slower to walk.
  bool widen() noexcept;
  bool widened() const noexcept { return chains_ > 1; }

  // Pre-cascading is paced: each collect_due() stages the share of the pending nodes that the
  // time elapsed since the last one represents of the time left until the staged slot's start,
  // and at least kStageMinimum, so the work is spread evenly instead of arriving as one stall.
  static constexpr std::int64_t kStageMinimum = 4;
  // While pre-cascading work is pending, the owner is asked to look again at least this often
  // (in ticks, ~1 ms), so that the work is paced even when no timer is due for a long while.
  static constexpr std::int64_t kStagePaceTicks = 1024;

 private:
  // A level-2 or level-3 slot is cascaded ahead of time, a budget of nodes per collect, into a
  // staging area of lower levels laid out relative to the slot's start; when the wheel reaches
  // that start the staged lists are moved into the (by then empty) lower levels in O(slots).
  // Without this, the cascade of a slot holding a quarter of a million timers (timer_batch's
  // level-3 slots span 268 ms) stalls the isolate for tens of milliseconds.
  struct Staging {
    bool active = false;
    int level = 0;
    int slot = 0;
    std::int64_t start = 0;          // tick
    TimerChains pending;             // detached from the slot, not yet placed
    std::int64_t pending_count = 0;  // an upper bound: cancels of pending timers do not update it
    std::int64_t paced_to = 0;       // tick up to which the pending work has been paced
    std::array<std::uint64_t, 3> occupied{};
    std::array<TimerList, kSlots> lists0{};  // level 0 below the staged slot
    int lists1 = 0;                          // the chained array of level 1 below it
  };
  static constexpr int kFirstStagedLevel = 2;
  static constexpr int kLastStagedLevel = 3;
  // Levels 1 to 3 hold many timers per slot (microseconds to hundreds of milliseconds of them)
  // and are walked whole when cascaded: their slots are chained, as are the staging lists below
  // a staged slot. Level 0 slots are a tick wide and the top levels rarely used: one list each.
  static constexpr int kFirstWideLevel = 1;
  static constexpr int kLastWideLevel = 3;
  static constexpr bool wide(int level) noexcept {
    return level >= kFirstWideLevel && level <= kLastWideLevel;
  }
  // The chained slot arrays.
  enum ChainedArray : int {
    kLive1,  // the wheel's levels 1-3
    kLive2,
    kLive3,
    kStagedBelow2,  // level 1 below a staged level-2 slot
    kStagedBelow3,  // level 1 below a staged level-3 slot
    kStaged2,       // level 2 below a staged level-3 slot
    kChainedArrays
  };
  static constexpr int live_array(int level) noexcept { return kLive1 + level - kFirstWideLevel; }
  using SlotLists = std::array<TimerList, kSlots>;
  // A slot's chains are adjacent (one cache line once wide).
  TimerList& chain(int array, int slot, int c) noexcept {
    return heads_[(array * kSlots + slot) * chains_ + c];
  }
  const TimerList& chain(int array, int slot, int c) const noexcept {
    return heads_[(array * kSlots + slot) * chains_ + c];
  }
  // The creation number picks the chain (any spread would do); chain 0 while narrow.
  void push_chained(int array, int slot, Timer& t) noexcept {
    chain(array, slot, static_cast<int>(t.seq_ & static_cast<std::uint64_t>(chains_ - 1)))
        .push_front(t);
  }
  bool chained_empty(int array, int slot) const noexcept {
    for (int c = 0; c < chains_; ++c) {
      if (!chain(array, slot, c).empty()) return false;
    }
    return true;
  }
  // Moves a chained slot's lists into `out`, whose lists must be empty.
  void take_chained(int array, int slot, TimerChains& out) noexcept {
    for (int c = 0; c < chains_; ++c) chain(array, slot, c).move_to_empty(out.chain[c]);
  }
  // Moves a chained slot's lists to the same slot of another array, which must be empty.
  void move_chained(int from, int to, int slot) noexcept {
    for (int c = 0; c < chains_; ++c) chain(from, slot, c).move_to_empty(chain(to, slot, c));
  }
  TimerList& narrow_slot(int level, int slot) noexcept {
    return narrow_[level == 0 ? 0 : level - kLastWideLevel][slot];
  }
  const TimerList& narrow_slot(int level, int slot) const noexcept {
    return narrow_[level == 0 ? 0 : level - kLastWideLevel][slot];
  }
  bool slot_empty(int level, int slot) const noexcept {
    return wide(level) ? chained_empty(live_array(level), slot) : narrow_slot(level, slot).empty();
  }
  // Calls f(timer) on every timer of a slot, leaving it linked (f must not unlink).
  template <class F>
  void for_each_in(int level, int slot, F&& f) const noexcept {
    auto walk = [&f](const TimerList& list) {
      for (Timer* t = list.head; t != nullptr; t = t->next_) f(*t);
    };
    if (!wide(level)) {
      walk(narrow_slot(level, slot));
      return;
    }
    for (int c = 0; c < chains_; ++c) walk(chain(live_array(level), slot, c));
  }
  void place(Timer& t) noexcept {
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
    occupied_[level] |= std::uint64_t{1} << slot;
    if (!wide(level)) {
      narrow_slot(level, slot).push_front(t);
      return;
    }
    push_chained(live_array(level), slot, t);
    if (level >= kFirstStagedLevel) ++placed_[level - kFirstStagedLevel][slot];
  }
  void stage_some() noexcept;
  // Places up to `budget` pending timers of `st` into its staged lists.
  void stage(Staging& st, std::int64_t budget) noexcept;
  void merge(Staging& st, int level) noexcept;
  Staging& staging(int level) noexcept { return staging_[level - kFirstStagedLevel]; }
  // Lowest level with a non-empty slot, and that slot; clears bits of slots found empty.
  bool earliest_slot(int& level, int& slot) noexcept;
  std::int64_t slot_start_tick(int level, int slot) const noexcept;

  std::int64_t now_tick_;
  std::array<std::uint64_t, kLevels> occupied_{};  // bit s: slot s may be non-empty
  bool last_exact_ = false;                        // see last_wakeup_exact()
  WakeupMerging merging_ = WakeupMerging::slack_windows;
  std::array<SlotLists, kLevels - (kLastWideLevel - kFirstWideLevel + 1)> narrow_{};
  // The chained slots' lists: kChainedArrays × kSlots × chains_, in narrow_heads_ (one chain
  // each) until widen() moves them into wide_heads_.
  std::array<TimerList, kChainedArrays * kSlots> narrow_heads_{};
  std::unique_ptr<TimerList[]> wide_heads_;
  TimerList* heads_ = narrow_heads_.data();
  int chains_ = 1;  // 1, or TimerChains::kCount once widened
  std::array<Staging, kLastStagedLevel - kFirstStagedLevel + 1> staging_{};
  std::array<std::uint32_t, kSlots> placed2_{};  // nodes staged into each kStaged2 slot
  // Timers placed into each slot of the staged levels since it was last emptied: an upper bound
  // on its length (cancels do not decrement it), for pacing without walking the list.
  std::array<std::array<std::uint32_t, kSlots>, kLastStagedLevel - kFirstStagedLevel + 1> placed_{};
};

template <class F>
std::int64_t TimerChains::drain(std::int64_t budget, F&& f) noexcept {
  std::int64_t taken = 0;
  unsigned touched = 0;  // bit c: chain c's head changed
  bool any = true;
  while (any && taken < budget) {
    any = false;
    for (int c = 0; c < kCount && taken < budget; ++c) {
      Timer* t = chain[c].head;
      if (t == nullptr) continue;
      any = true;
      touched |= 1u << c;
      Timer* next = t->next_;
      chain[c].head = next;
      // The next node of this chain is wanted one round from now, and written: ask for it now,
      // and fix its back link only once, when the walk stops (below), not node by node.
      if (next != nullptr) __builtin_prefetch(next, 1);
      t->next_ = nullptr;
      t->pprev_ = nullptr;
      f(*t);
      ++taken;
    }
  }
  for (; touched != 0; touched &= touched - 1) {
    TimerList& c = chain[__builtin_ctz(touched)];
    if (c.head != nullptr) c.head->pprev_ = &c.head;
  }
  return taken;
}

}  // namespace evh::detail
