#include "timer/timer_set.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace evh::detail {
namespace {

constexpr std::int64_t kUs = 1000;
constexpr std::int64_t kMs = 1000 * kUs;
constexpr std::int64_t kStart = 5 * 1000 * kMs;

void noop(Isolate&, Timer&, std::uint64_t) {}

std::intptr_t id_of(const Timer* t) {
  return reinterpret_cast<std::intptr_t>(t->user);
}

// Fires everything due at `now` and returns the ids in firing order; `on_fire` may act on the
// set between callbacks (as a callback would).
template <class F>
std::vector<std::intptr_t> fire(TimerSet& set, std::int64_t now, F&& on_fire) {
  std::vector<std::intptr_t> order;
  set.begin_batch(now);
  std::uint64_t skipped = 0;
  while (Timer* t = set.next_in_batch(now, skipped)) {
    order.push_back(id_of(t));
    on_fire(*t, skipped);
  }
  return order;
}
std::vector<std::intptr_t> fire(TimerSet& set, std::int64_t now) {
  return fire(set, now, [](Timer&, std::uint64_t) {});
}

struct Timers {
  explicit Timers(std::size_t n) : v(n) {
    for (std::size_t i = 0; i < n; ++i) v[i].user = reinterpret_cast<void*>(i);
  }
  std::vector<Timer> v;
};

// Random deadlines, time advanced in random steps: every timer fires exactly once, never before
// its deadline, and the whole sequence is in (deadline, creation) order.
TEST(TimerSet, FiresInDeadlineOrderNeverEarly) {
  Timers ts(20'000);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  std::mt19937_64 rng(7);
  for (auto& t : ts.v) {
    const auto delay = static_cast<std::int64_t>(rng() % (2000 * kMs));
    set.start(t, kStart, delay, 0, &noop, Slack::coarse());
  }
  std::vector<std::pair<std::int64_t, std::intptr_t>> fired;
  std::int64_t now = kStart;
  while (set.live() > 0) {
    now += static_cast<std::int64_t>(rng() % (3 * kMs));
    set.begin_batch(now);
    std::uint64_t skipped = 0;
    while (Timer* t = set.next_in_batch(now, skipped)) {
      ASSERT_LE(t->deadline_ns(), now) << "fired early";
      fired.emplace_back(t->deadline_ns(), id_of(t));
    }
  }
  ASSERT_EQ(fired.size(), ts.v.size());
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
  EXPECT_EQ(set.stats().fired, ts.v.size());
}

// Equal deadlines fire in creation order, zero-delay timers included (SEMANTICS 12).
TEST(TimerSet, EqualDeadlinesFireInCreationOrder) {
  Timers ts(6);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start(ts.v[3], kStart, 10 * kUs, 0, &noop, Slack::exact());
  set.start(ts.v[1], kStart, 10 * kUs, 0, &noop, Slack::exact());
  set.start(ts.v[0], kStart + 10 * kUs, 0, 0, &noop, Slack::exact());  // zero-delay, same time
  set.start(ts.v[5], kStart, 5 * kUs, 0, &noop, Slack::exact());
  set.start(ts.v[2], kStart + 10 * kUs, 0, 0, &noop, Slack::exact());
  EXPECT_EQ(fire(set, kStart + 10 * kUs), (std::vector<std::intptr_t>{5, 3, 1, 0, 2}));
}

// A callback cancels a later member of its own batch: that one does not fire; cancelling it
// again, or cancelling one that already fired, is a no-op (SEMANTICS 14).
TEST(TimerSet, CancelFromInsideCallback) {
  Timers ts(3);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  for (int i = 0; i < 3; ++i) set.start(ts.v[i], kStart, (i + 1) * kUs, 0, &noop, Slack::exact());
  auto order = fire(set, kStart + kMs, [&](Timer& t, std::uint64_t) {
    if (id_of(&t) == 0) {
      set.cancel(ts.v[1]);
      set.cancel(ts.v[1]);
      set.cancel(ts.v[0]);  // itself, already fired
    }
  });
  EXPECT_EQ(order, (std::vector<std::intptr_t>{0, 2}));
  EXPECT_EQ(set.live(), 0u);
  EXPECT_EQ(set.stats().cancelled, 1u);
}

// A timer started during a batch, even an already-due zero-delay one, waits for the next batch.
TEST(TimerSet, TimerCreatedInBatchWaits) {
  Timers ts(2);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start(ts.v[0], kStart, kUs, 0, &noop, Slack::exact());
  auto first = fire(set, kStart + kMs, [&](Timer&, std::uint64_t) {
    set.start(ts.v[1], kStart + kMs, 0, 0, &noop, Slack::exact());
  });
  EXPECT_EQ(first, (std::vector<std::intptr_t>{0}));
  EXPECT_TRUE(set.has_zero_delay());
  EXPECT_EQ(fire(set, kStart + kMs), (std::vector<std::intptr_t>{1}));
}

// A periodic timer keeps its schedule; when it falls behind by whole periods it runs once and
// reports how many it skipped (SEMANTICS 15).
TEST(TimerSet, PeriodicCatchUpSkips) {
  Timers ts(1);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start(ts.v[0], kStart, 10 * kMs, 10 * kMs, &noop, Slack::exact());
  std::uint64_t skipped = 99;
  fire(set, kStart + 10 * kMs + 3 * kUs, [&](Timer&, std::uint64_t s) { skipped = s; });
  EXPECT_EQ(skipped, 0u);
  EXPECT_EQ(ts.v[0].deadline_ns(), kStart + 20 * kMs);  // no drift from the 3 µs lateness
  fire(set, kStart + 55 * kMs, [&](Timer&, std::uint64_t s) { skipped = s; });
  EXPECT_EQ(skipped, 3u);  // 20 ran late by 35 ms: 30, 40 and 50 are skipped
  EXPECT_EQ(ts.v[0].deadline_ns(), kStart + 60 * kMs);
  EXPECT_TRUE(ts.v[0].armed());
}

// A periodic timer that cancels itself from its callback does not run again.
TEST(TimerSet, PeriodicCancelsItself) {
  Timers ts(1);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start(ts.v[0], kStart, kMs, kMs, &noop, Slack::exact());
  auto order = fire(set, kStart + kMs, [&](Timer& t, std::uint64_t) { set.cancel(t); });
  EXPECT_EQ(order.size(), 1u);
  EXPECT_FALSE(ts.v[0].armed());
  EXPECT_TRUE(fire(set, kStart + 10 * kMs).empty());
  EXPECT_FALSE(set.next_wakeup().has_value());
}

// A million timers started and cancelled in shuffled order leave the structure empty.
TEST(TimerSet, MillionStartedAndCancelledLeaveItEmpty) {
  Timers ts(1'000'000);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  std::mt19937_64 rng(11);
  for (auto& t : ts.v) {
    set.start(t, kStart, static_cast<std::int64_t>(rng() % (20'000 * kMs)) + 1, 0, &noop,
              Slack::coarse());
  }
  std::vector<Timer*> order;
  for (auto& t : ts.v) order.push_back(&t);
  std::shuffle(order.begin(), order.end(), rng);
  for (Timer* t : order) set.cancel(*t);
  EXPECT_EQ(set.live(), 0u);
  EXPECT_FALSE(set.next_wakeup().has_value());
  EXPECT_TRUE(fire(set, kStart + 30'000 * kMs).empty());
}

// The wakeup honours every window: a coarse timer's slack lets the wakeup wait, but not past an
// exact timer's deadline inside that window; it is never before the earliest deadline.
TEST(TimerSet, WakeupMergesWindowsWithinSlack) {
  Timers ts(2);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start(ts.v[0], kStart, 800 * kUs, 0, &noop, Slack::coarse());  // window 800..850 µs
  auto w = set.next_wakeup();
  ASSERT_TRUE(w.has_value());
  EXPECT_GE(*w, kStart + 800 * kUs);
  EXPECT_LE(*w, kStart + 850 * kUs);
  set.start(ts.v[1], kStart, 820 * kUs, 0, &noop, Slack::exact());
  w = set.next_wakeup();
  ASSERT_TRUE(w.has_value());
  EXPECT_GE(*w, kStart + 800 * kUs);
  EXPECT_LE(*w, kStart + 820 * kUs);
  // One wakeup fires both, in deadline order.
  EXPECT_EQ(fire(set, *w), (std::vector<std::intptr_t>{0, 1}));
}

// Far timers (beyond the wheel's top level) are kept and fire on time.
TEST(TimerSet, FarFutureTimers) {
  Timers ts(2);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  const std::int64_t days_60 = 60LL * 24 * 3600 * 1000 * kMs;
  set.start(ts.v[0], kStart, days_60, 0, &noop, Slack::exact());
  set.start(ts.v[1], kStart, 3600LL * 1000 * kMs, 0, &noop, Slack::exact());
  std::int64_t now = kStart;
  std::vector<std::intptr_t> all;
  for (int i = 0; i < 1000 && set.live() > 0; ++i) {
    auto w = set.next_wakeup();
    ASSERT_TRUE(w.has_value());
    ASSERT_GE(*w, now);
    now = *w;
    for (auto id : fire(set, now)) all.push_back(id);
  }
  EXPECT_EQ(all, (std::vector<std::intptr_t>{1, 0}));
  EXPECT_EQ(now, kStart + days_60);
}

// Driving the set only by its own wakeups fires every timer exactly at or after its deadline and
// no later than its fire-by time (the exact class: at its deadline).
TEST(TimerSet, WakeupsAloneFireEverythingWithinSlack) {
  Timers ts(5'000);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  std::mt19937_64 rng(3);
  for (std::size_t i = 0; i < ts.v.size(); ++i) {
    const auto delay = static_cast<std::int64_t>(rng() % (500 * kMs)) + 1;
    set.start(ts.v[i], kStart, delay, 0, &noop, i % 2 ? Slack::exact() : Slack::coarse());
  }
  std::size_t n = 0;
  while (auto w = set.next_wakeup()) {
    set.begin_batch(*w);
    std::uint64_t skipped = 0;
    while (Timer* t = set.next_in_batch(*w, skipped)) {
      ++n;
      ASSERT_LE(t->deadline_ns(), *w);
      const bool exact = id_of(t) % 2 == 1;
      ASSERT_LE(*w - t->deadline_ns(), exact ? 0 : Slack::kCoarseMaxNs) << "late beyond slack";
    }
  }
  EXPECT_EQ(n, ts.v.size());
  EXPECT_LT(set.stats().batches, ts.v.size()) << "no window was merged";
}

}  // namespace
}  // namespace evh::detail

namespace evh::detail {
namespace {

// Regression for the cascade stall: timers spread over seconds are cascaded ahead of time in
// budgets (staging). Cancelling half of them midway, some while staged, leaves exactly the
// other half to fire, in order, never early.
TEST(TimerSet, StagedCascadeWithCancelsKeepsOrder) {
  Timers ts(60'000);
  TimerSet set(kStart);
  std::mt19937_64 rng(9);
  for (auto& t : ts.v) {
    set.start(t, kStart, 300 * kMs + static_cast<std::int64_t>(rng() % (1500 * kMs)), 0, &noop,
              Slack::exact());
  }
  std::vector<std::int64_t> fired;
  std::size_t cancelled = 0;
  std::int64_t now = kStart;
  while (set.live() > 0) {
    now += 200 * kUs;
    set.begin_batch(now);
    std::uint64_t skipped = 0;
    while (Timer* t = set.next_in_batch(now, skipped)) {
      ASSERT_LE(t->deadline_ns(), now);
      ASSERT_EQ(id_of(t) % 2 == 1 && now > kStart + 700 * kMs, false) << "a cancelled timer fired";
      fired.push_back(t->deadline_ns());
    }
    if (now == kStart + 700 * kMs) {
      for (std::size_t i = 1; i < ts.v.size(); i += 2) {
        if (ts.v[i].armed()) {
          set.cancel(ts.v[i]);
          ++cancelled;
        }
      }
    }
  }
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
  EXPECT_EQ(fired.size() + cancelled, ts.v.size());
  EXPECT_GT(cancelled, 10'000u);
}

// The wheel widens (its busy slots become 8 chains) when the set first holds kWidenWheelAt
// timers, not before. Timers linked before it, in every level and in a staging area, and timers
// linked after it, still fire in (deadline, creation) order, each once; cancels work on both.
TEST(TimerSet, WideningMidStreamKeepsOrderAndCancels) {
  const std::size_t narrow = TimerSet::kWidenWheelAt - 1;
  Timers ts(3 * TimerSet::kWidenWheelAt);
  TimerSet set(kStart);
  std::mt19937_64 rng(11);
  auto start = [&](std::size_t i, std::int64_t now) {
    const auto delay = static_cast<std::int64_t>(rng() % (600 * kMs));
    set.start(ts.v[i], now, delay, 0, &noop, Slack::exact());
  };
  for (std::size_t i = 0; i < narrow; ++i) start(i, kStart);
  // Let the early ones cascade and a staging area fill while still narrow.
  std::vector<std::pair<std::int64_t, std::intptr_t>> fired;
  std::int64_t now = kStart;
  auto step = [&](std::int64_t by) {
    now += by;
    set.begin_batch(now);
    std::uint64_t skipped = 0;
    while (Timer* t = set.next_in_batch(now, skipped)) {
      ASSERT_LE(t->deadline_ns(), now);
      fired.emplace_back(t->deadline_ns(), id_of(t));
    }
    (void)set.next_wakeup();
  };
  for (int i = 0; i < 50; ++i) step(kMs);
  EXPECT_FALSE(set.wheel_widened()) << "widened below the threshold";
  const std::size_t before = fired.size();
  for (std::size_t i = narrow; i < ts.v.size(); ++i) start(i, now);
  EXPECT_TRUE(set.wheel_widened());
  // Cancel every third timer, linked before and after the widening alike.
  std::size_t cancelled = 0;
  for (std::size_t i = 0; i < ts.v.size(); i += 3) {
    if (ts.v[i].armed()) {
      set.cancel(ts.v[i]);
      ++cancelled;
    }
  }
  // Bounded: a timer lost by the wheel would otherwise keep live() above 0 for ever.
  for (int guard = 0; set.live() > 0 && guard < 100'000; ++guard) {
    step(static_cast<std::int64_t>(rng() % (2 * kMs)));
  }
  ASSERT_EQ(set.live(), 0u) << "timers were stranded in the wheel";
  EXPECT_EQ(fired.size() + cancelled, ts.v.size());
  for (std::size_t k = before; k < fired.size(); ++k) {
    EXPECT_NE(fired[k].second % 3, 0) << "a cancelled timer fired";
  }
  // Deadline order throughout; ties by creation (ids are creation order).
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
}

// Random starts and restarts (one-shot and periodic, zero-delay to an hour, three slack classes),
// cancels and clock steps of every size, checked against a model after every step: a batch holds
// exactly the armed timers whose deadline has come, in (deadline, creation) order, periodic ones
// re-armed on their schedule with the right skip count; no due timer is left behind; the wakeup
// never comes after a timer's window ends; armed flags and the live count agree.
TEST(TimerSet, RandomOperationsMatchAModel) {
  constexpr std::size_t kTimers = 2 * TimerSet::kWidenWheelAt;  // crosses the widening
  Timers ts(kTimers);
  TimerSet set(kStart);
  std::mt19937_64 rng(13);
  struct Model {
    bool armed = false;
    std::int64_t deadline = 0;
    std::int64_t fire_by = 0;
    std::int64_t period = 0;
    std::uint64_t order = 0;  // creation order: each start and each periodic re-arm
  };
  std::vector<Model> model(kTimers);
  std::uint64_t order = 0;
  std::int64_t now = kStart;
  auto pick_delay = [&]() -> std::int64_t {
    switch (rng() % 6) {
      case 0:
        return 0;
      case 1:
        return static_cast<std::int64_t>(rng() % (100 * kUs));
      case 2:
        return static_cast<std::int64_t>(rng() % (10 * kMs));
      case 3:
        return static_cast<std::int64_t>(rng() % (500 * kMs));
      case 4:
        return static_cast<std::int64_t>(rng() % (20'000 * kMs));  // past level 3
      default:
        return 3'600'000 * kMs + static_cast<std::int64_t>(rng() % (1000 * kMs));
    }
  };
  auto pick_step = [&]() -> std::int64_t {
    const std::uint64_t r = rng() % 100;
    if (r < 70) return static_cast<std::int64_t>(rng() % (200 * kUs));
    if (r < 90) return static_cast<std::int64_t>(rng() % (5 * kMs));
    if (r < 98) return static_cast<std::int64_t>(rng() % (2000 * kMs));
    return static_cast<std::int64_t>(rng() % (7'200'000 * kMs));
  };
  const Slack slacks[] = {Slack::exact(), Slack::coarse(),
                          Slack::custom(std::chrono::microseconds(300))};
  // The first third uses fewer timers than widen the wheel; then every timer is armed at once.
  std::size_t in_use = TimerSet::kWidenWheelAt / 2;
  auto arm = [&](std::size_t i) {
    const std::int64_t delay = pick_delay();
    const std::int64_t period = rng() % 4 == 0 ? std::max<std::int64_t>(delay, kUs) : 0;
    const Slack slack = slacks[rng() % 3];
    set.start(ts.v[i], now, delay, period, &noop, slack);
    model[i] = {true, now + delay, now + delay + slack.for_delay_ns(period > 0 ? period : delay),
                period, order++};
  };
  for (int step = 0; step < 30'000; ++step) {
    if (step == 10'000) {
      ASSERT_FALSE(set.wheel_widened());
      in_use = kTimers;
      for (std::size_t i = 0; i < kTimers; ++i) {
        if (!model[i].armed) arm(i);
      }
      ASSERT_TRUE(set.wheel_widened());
    }
    for (int op = static_cast<int>(rng() % 4); op > 0; --op) {
      const std::size_t i = rng() % in_use;
      Model& m = model[i];
      if (rng() % 3 == 0) {
        set.cancel(ts.v[i]);
        m.armed = false;
        continue;
      }
      arm(i);
    }
    if (rng() % 8 == 0) {
      const std::optional<std::int64_t> w = set.next_wakeup();
      std::int64_t earliest_fire_by = INT64_MAX;
      bool any = false;
      for (const Model& m : model) {
        if (!m.armed) continue;
        any = true;
        earliest_fire_by = std::min(earliest_fire_by, m.fire_by);
      }
      ASSERT_EQ(w.has_value(), any);
      if (w) {
        ASSERT_LE(*w, earliest_fire_by) << "the wakeup comes after a window ends";
      }
    }
    now += pick_step();
    set.begin_batch(now);
    std::uint64_t skipped = 0;
    std::pair<std::int64_t, std::uint64_t> last{INT64_MIN, 0};
    while (Timer* t = set.next_in_batch(now, skipped)) {
      Model& m = model[static_cast<std::size_t>(id_of(t))];
      ASSERT_TRUE(m.armed) << "a cancelled timer fired";
      ASSERT_LE(m.deadline, now) << "fired early";
      const std::pair<std::int64_t, std::uint64_t> key{m.deadline, m.order};
      ASSERT_LT(last, key) << "out of (deadline, creation) order";
      last = key;
      if (m.period == 0) {
        m.armed = false;
        ASSERT_EQ(skipped, 0u);
        continue;
      }
      const std::int64_t behind = (now - m.deadline) / m.period;
      ASSERT_EQ(skipped, static_cast<std::uint64_t>(behind));
      const std::int64_t slack = m.fire_by - m.deadline;
      m.deadline += (behind + 1) * m.period;
      m.fire_by = m.deadline + slack;
      m.order = order++;
      ASSERT_EQ(t->deadline_ns(), m.deadline);
    }
    std::uint64_t armed = 0;
    for (std::size_t i = 0; i < kTimers; ++i) {
      ASSERT_EQ(ts.v[i].armed(), model[i].armed);
      if (!model[i].armed) continue;
      ++armed;
      ASSERT_GT(model[i].deadline, now) << "a due timer was left out of the batch";
    }
    ASSERT_EQ(set.live(), armed);
  }
}

// Regression (found by tests/fuzz/timer_set_fuzz): a timer beyond the wheel's 52-day reach is
// parked at the last tick of the wheel's revolution; a collect that crossed that tick while the
// timer was still not due placed it back into the slot being walked and looped forever.
TEST(TimerSet, FarTimerAcrossTheWheelsRevolutionDoesNotHang) {
  constexpr std::int64_t kDay = 86'400'000 * kMs;
  Timers ts(2);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start(ts.v[0], kStart, 60 * kDay, 0, &noop, Slack::exact());
  set.start(ts.v[1], kStart, 53 * kDay, 0, &noop, Slack::exact());
  // The revolution ends at 2^52 ns (~52.1 days): this batch crosses it.
  EXPECT_EQ(fire(set, kStart + 53 * kDay), std::vector<std::intptr_t>{1});
  EXPECT_TRUE(ts.v[0].armed());
  EXPECT_TRUE(fire(set, kStart + 60 * kDay - 1).empty());
  EXPECT_EQ(fire(set, kStart + 60 * kDay), std::vector<std::intptr_t>{0});
  EXPECT_EQ(set.live(), 0u);
}

// Regression (found by tests/fuzz/timer_set_fuzz): "never" (a delay that saturates to
// INT64_MAX) is never due, and destroying the set with such a timer armed disarms it instead of
// looping (cancel_all collected up to INT64_MAX - 1, which such a timer is beyond).
TEST(TimerSet, NeverDeadlineNeverFiresAndIsDisarmedOnDestruction) {
  Timers ts(2);  // declared first: timers must outlive the set they are armed in
  {
    TimerSet set(kStart);
    set.start(ts.v[0], kStart, INT64_MAX, 0, &noop, Slack::coarse());
    set.start(ts.v[1], kStart, INT64_MAX - kStart / 2, INT64_MAX / 2, &noop, Slack::exact());
    EXPECT_EQ(ts.v[0].deadline_ns(), INT64_MAX);
    EXPECT_TRUE(fire(set, kStart + 7'200'000 * kMs).empty());
    EXPECT_TRUE(ts.v[0].armed());
  }
  EXPECT_FALSE(ts.v[0].armed());
  EXPECT_FALSE(ts.v[1].armed());
}

// A periodic timer whose next period would pass INT64_MAX saturates to "never" instead of
// overflowing to a deadline in the past.
TEST(TimerSet, PeriodNearNeverSaturates) {
  Timers ts(1);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start_at(ts.v[0], kStart, kStart + kMs, INT64_MAX - kMs, &noop, Slack::exact());
  EXPECT_EQ(fire(set, kStart + 2 * kMs), std::vector<std::intptr_t>{0});
  EXPECT_EQ(ts.v[0].deadline_ns(), INT64_MAX);
  EXPECT_TRUE(fire(set, kStart + 7'200'000 * kMs).empty());
}

// A deadline at the very start of time (`TimePoint::min()`), one-shot or periodic, is due in the
// next batch; its lateness saturates instead of overflowing (fire - INT64_MIN), and a periodic
// one lands on its first period still ahead of now.
TEST(TimerSet, DeadlineAtTheStartOfTimeFiresWithoutOverflow) {
  Timers ts(2);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kStart);
  set.start_at(ts.v[0], kStart, INT64_MIN, 0, &noop, Slack::coarse());
  set.start_at(ts.v[1], kStart, INT64_MIN, kMs, &noop, Slack::exact());
  EXPECT_EQ(fire(set, kStart), (std::vector<std::intptr_t>{0, 1}));
  EXPECT_FALSE(ts.v[0].armed());
  ASSERT_TRUE(ts.v[1].armed());
  EXPECT_GT(ts.v[1].deadline_ns(), kStart);
  EXPECT_LE(ts.v[1].deadline_ns(), kStart + kMs);
  EXPECT_GT(set.stats().late_max_ns, 0u);
}

// A clock far below zero (a ManualClock may start anywhere) with a timer at "never": the time
// left (INT64_MAX - now) saturates instead of overflowing.
TEST(TimerSet, NeverTimerOnANegativeClock) {
  constexpr std::int64_t kNegative = INT64_MIN / 2;
  Timers ts(1);  // declared first: timers must outlive the set they are armed in
  TimerSet set(kNegative);
  set.start_at(ts.v[0], kNegative, INT64_MAX, 0, &noop, Slack::coarse());
  EXPECT_EQ(ts.v[0].deadline_ns(), INT64_MAX);
  EXPECT_TRUE(fire(set, kNegative + kMs).empty());
  EXPECT_TRUE(ts.v[0].armed());
}

}  // namespace
}  // namespace evh::detail
