// Timers on a ManualClock (RuntimeOptions::clock): the timer semantics (SEMANTICS 11-16) checked
// exactly and without real time — nothing fires until the test moves the clock, a move fires
// exactly what it reached, and when advance() returns every wakeup it caused is queued (so a
// message posted after it is handled after them). No test here sleeps or depends on how long
// anything takes; real-clock lower bounds are in isolate_timer_test.cc.
#include <evh/clock.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using test::expect_receive;

constexpr std::uint64_t kSettle = 777;

// Shared by a test and the isolate's callbacks; touched only on the isolate's turn until the
// test has received the isolate's reply to a settle message (which queues behind the wakeups).
struct Fixture {
  explicit Fixture(std::size_t n) : timers(n) {}
  std::vector<Timer> timers;
  std::vector<std::pair<std::int64_t, std::size_t>> fired;  // (deadline, index)
  std::vector<std::int64_t> late;                           // clock time at the call - deadline
  std::vector<std::uint64_t> skipped;
  std::vector<std::uint64_t> batch;  // the isolate's batch count seen by each callback
  SendPort report;
  int microtasks_run = 0;
};

void record(Isolate& self, Timer& t, std::uint64_t skipped) {
  auto& f = *static_cast<Fixture*>(t.user);
  f.fired.emplace_back(t.deadline_ns(), static_cast<std::size_t>(&t - f.timers.data()));
  f.late.push_back(self.now().count() - t.deadline_ns());
  f.skipped.push_back(skipped);
  f.batch.push_back(self.timer_stats().batches);
}

// A runtime on a manual clock with one isolate whose handler runs `start` on a message other
// than kSettle, and answers kSettle (after everything queued before it) on the receiver.
class ManualClockTimers : public ::testing::Test {
 protected:
  template <class Start>
  void spawn(Fixture& f, Start start) {
    f.report = *rt_.send_port(rx_.id());
    for (auto& t : f.timers) t.user = &f;
    iso_ = *rt_.spawn(make_handler([&f, start](Isolate& self, Message& m) {
      if (m.as_u64() == kSettle) {
        (void)f.report.post(Message::u64(kSettle));
        return;
      }
      start(self, m);
    }));
  }
  // Has the isolate handle message `v` (start its timers), then settle().
  void run(std::uint64_t v) {
    ASSERT_TRUE(rt_.post(iso_->main_port(), Message::u64(v)).ok());
    settle();
  }
  // Everything queued for the isolate before this has run: the wakeups of earlier moves (queued
  // before advance() returned), and — a second round trip — the zero-delay wakeup that a message
  // queued before the first one queues behind it.
  void settle() {
    for (int round = 0; round < 2; ++round) {
      ASSERT_TRUE(rt_.post(iso_->main_port(), Message::u64(kSettle)).ok());
      EXPECT_EQ(expect_receive(rx_).as_u64(), kSettle);
    }
  }
  // Declared after what the isolate's callbacks touch (a Fixture): stops the runtime before
  // that goes, also when an assertion ends the test early.
  struct StopAtExit {
    Runtime& rt;
    ~StopAtExit() { rt.shutdown(); }
  };

  ManualClock clock_;  // first: it outlives the runtime
  Runtime rt_{RuntimeOptions{.clock = &clock_}};
  Receiver rx_ = *rt_.open_receiver();
  IsolateRef iso_;
};

// Regression: advance() by a duration that passes the end of time wrapped the clock into the
// past (UBSan: signed overflow); it saturates at the end of time, and time never goes back.
TEST(ManualClock, AdvancePastTheEndOfTimeSaturates) {
  ManualClock clock;
  const TimePoint before = clock.now();
  clock.advance(std::chrono::nanoseconds::max());
  EXPECT_EQ(clock.now(), TimePoint::max());
  EXPECT_GE(clock.now(), before);
  clock.advance(1ns);
  EXPECT_EQ(clock.now(), TimePoint::max());
}

// Regression: a Timer recorded no owner, so an isolate cancelling (or re-arming) a timer armed
// in another isolate unlinked it from the other's wheel with its own counts — corrupting both
// (the timer never fired in its isolate). Now the timer names the isolate that armed it: the
// other isolate gets Errc::wrong_thread and the timer fires where it was armed.
TEST_F(ManualClockTimers, TimerArmedElsewhereIsRefused) {
  Fixture f(1);
  StopAtExit stop{rt_};
  spawn(f, [&f](Isolate& self, Message&) {
    ASSERT_TRUE(self.start_timer(f.timers[0], 1s, &record).ok());
  });
  run(1);
  ASSERT_TRUE(f.timers[0].armed());
  auto own = std::make_shared<Timer>();  // b's own timer: b has a wheel of its own
  SendPort report = *rt_.send_port(rx_.id());
  auto b = rt_.spawn(make_handler([&f, own, report](Isolate& self, Message&) {
    auto code = [](const Status& st) { return static_cast<std::uint64_t>(st.error().value()); };
    TimerFn noop = [](Isolate&, Timer&, std::uint64_t) {};
    (void)report.post(Message::u64(code(self.start_timer(*own, 1s, noop))));
    (void)report.post(Message::u64(code(self.cancel_timer(f.timers[0]))));
    (void)report.post(Message::u64(code(self.start_timer(f.timers[0], 5s, &record))));
  }));
  ASSERT_TRUE(rt_.post((*b)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(rx_).as_u64(), 0u);
  EXPECT_EQ(expect_receive(rx_).as_u64(), static_cast<std::uint64_t>(Errc::wrong_thread));
  EXPECT_EQ(expect_receive(rx_).as_u64(), static_cast<std::uint64_t>(Errc::wrong_thread));
  EXPECT_EQ(iso_->timer_stats().live, 1u);
  EXPECT_EQ((*b)->timer_stats().live, 1u);
  clock_.advance(1s);
  settle();
  ASSERT_EQ(f.fired.size(), 1u);  // fired in its own isolate, at its own deadline
  EXPECT_EQ(f.fired[0].second, 0u);
  EXPECT_EQ(iso_->timer_stats().live, 0u);
}

// Nothing fires while the clock stands still; a move fires exactly the timers it reached, in
// one batch, each at its deadline's time or later by exactly what the move overshot — whatever
// the slack class (a manual clock wakes at deadlines, not at the end of slack windows).
TEST_F(ManualClockTimers, NothingFiresUntilTheClockReachesItsDeadline) {
  Fixture f(3);
  StopAtExit stop{rt_};
  spawn(f, [&f](Isolate& self, Message&) {
    ASSERT_TRUE(self.start_timer(f.timers[0], 10ms, &record).ok());
    ASSERT_TRUE(self.start_timer(f.timers[1], 20ms, &record, Slack::exact()).ok());
    ASSERT_TRUE(self.start_timer(f.timers[2], 30ms, &record, Slack::custom(5ms)).ok());
  });
  run(0);
  EXPECT_TRUE(f.fired.empty());
  clock_.advance(10ms - 1ns);
  settle();
  EXPECT_TRUE(f.fired.empty()) << "fired before its deadline";
  clock_.advance(1ns);
  settle();
  ASSERT_EQ(f.fired.size(), 1u);
  EXPECT_EQ(f.fired[0].second, 0u);
  EXPECT_EQ(f.late[0], 0);
  clock_.advance(25ms);  // now 35 ms: both others are due, in one batch
  settle();
  ASSERT_EQ(f.fired.size(), 3u);
  EXPECT_EQ(f.fired[1].second, 1u);
  EXPECT_EQ(f.fired[2].second, 2u);
  EXPECT_EQ(f.late[1], 15'000'000);
  EXPECT_EQ(f.late[2], 5'000'000);
  EXPECT_EQ(f.batch[1], f.batch[2]) << "one move, one batch";
  EXPECT_EQ(rt_.timer_stats().fired, 3u);
}

// Random delays, equal deadlines and zero-delay timers: every timer fires once, never early, in
// (deadline, creation) order — zero-delay ones at once, the others at the one move.
TEST_F(ManualClockTimers, FireInDeadlineThenCreationOrder) {
  Fixture f(300);
  StopAtExit stop{rt_};
  std::mt19937_64 rng(5);
  std::vector<std::chrono::nanoseconds> delays(f.timers.size());
  for (auto& d : delays) {
    const std::uint64_t r = rng() % 100;
    d = r < 10 ? 0ns : r < 30 ? 7ms : std::chrono::nanoseconds(rng() % 20'000'000);
  }
  spawn(f, [&f, &delays](Isolate& self, Message&) {
    for (std::size_t i = 0; i < f.timers.size(); ++i) {
      ASSERT_TRUE(self.start_timer(f.timers[i], delays[i], &record,
                                   i % 2 ? Slack::exact() : Slack::coarse())
                      .ok());
    }
  });
  run(0);
  const auto zero = static_cast<std::size_t>(std::count(delays.begin(), delays.end(), 0ns));
  EXPECT_EQ(f.fired.size(), zero) << "only the zero-delay timers run before the clock moves";
  clock_.advance(20ms);
  settle();
  ASSERT_EQ(f.fired.size(), f.timers.size());
  EXPECT_TRUE(std::is_sorted(f.fired.begin(), f.fired.end()));
  for (std::int64_t l : f.late) EXPECT_GE(l, 0) << "a timer fired before its deadline";
  EXPECT_EQ(rt_.timer_stats().live, 0u);
}

// A callback cancels a later timer of its own batch (it never runs) and schedules a microtask,
// which runs before the next callback (SEMANTICS 13-14).
TEST_F(ManualClockTimers, CancelInBatchAndMicrotasksBetweenCallbacks) {
  Fixture f(3);
  StopAtExit stop{rt_};
  static int seen_by_third = -1;
  auto first = [](Isolate& self, Timer& t, std::uint64_t s) {
    auto& fx = *static_cast<Fixture*>(t.user);
    (void)self.cancel_timer(fx.timers[1]);
    (void)self.schedule_microtask(
        [](Isolate&, void* a) { ++static_cast<Fixture*>(a)->microtasks_run; }, &fx);
    record(self, t, s);
  };
  auto third = [](Isolate& self, Timer& t, std::uint64_t s) {
    seen_by_third = static_cast<Fixture*>(t.user)->microtasks_run;
    record(self, t, s);
  };
  spawn(f, [&f, first, third](Isolate& self, Message&) {
    const TimePoint at = self.now() + 2ms;  // one deadline: creation order decides
    ASSERT_TRUE(self.start_timer_at(f.timers[0], at, first).ok());
    ASSERT_TRUE(self.start_timer_at(f.timers[1], at, &record).ok());
    ASSERT_TRUE(self.start_timer_at(f.timers[2], at, third).ok());
  });
  run(0);
  clock_.advance(2ms);
  settle();
  ASSERT_EQ(f.fired.size(), 2u);
  EXPECT_EQ(f.fired[0].second, 0u);
  EXPECT_EQ(f.fired[1].second, 2u);
  EXPECT_EQ(seen_by_third, 1);
  EXPECT_FALSE(f.timers[1].armed());
}

// A timer a callback starts never runs in the batch that started it, even when it is already due
// (SEMANTICS 13): it runs in the next one.
TEST_F(ManualClockTimers, TimerStartedInABatchRunsInALaterBatch) {
  Fixture f(2);
  StopAtExit stop{rt_};
  auto first = [](Isolate& self, Timer& t, std::uint64_t s) {
    record(self, t, s);
    auto& fx = *static_cast<Fixture*>(t.user);
    ASSERT_TRUE(self.start_timer_at(fx.timers[1], TimePoint(t.deadline_ns()), &record).ok());
  };
  spawn(f, [&f, first](Isolate& self, Message&) {
    ASSERT_TRUE(self.start_timer(f.timers[0], 5ms, first, Slack::exact()).ok());
  });
  run(0);
  clock_.advance(5ms);
  settle();
  ASSERT_EQ(f.fired.size(), 2u);
  EXPECT_EQ(f.fired[1].second, 1u);
  EXPECT_GT(f.batch[1], f.batch[0]);
}

// A periodic timer keeps a fixed schedule; behind by whole periods it runs once and reports the
// periods it skipped (SEMANTICS 15); it can cancel itself.
TEST_F(ManualClockTimers, PeriodicKeepsItsScheduleAndSkipsMissedPeriods) {
  Fixture f(1);
  StopAtExit stop{rt_};
  std::int64_t start = 0;
  auto tick = [](Isolate& self, Timer& t, std::uint64_t s) {
    auto& fx = *static_cast<Fixture*>(t.user);
    // A periodic timer is re-armed before its callback: deadline_ns() is the next one.
    fx.fired.emplace_back(t.deadline_ns(), 0);
    fx.skipped.push_back(s);
    if (fx.fired.size() == 4) (void)self.cancel_timer(t);
  };
  spawn(f, [&f, &start, tick](Isolate& self, Message&) {
    start = self.now().count();
    ASSERT_TRUE(self.start_periodic(f.timers[0], 1ms, tick).ok());
  });
  run(0);
  for (int i = 1; i <= 3; ++i) {
    clock_.advance(1ms);
    settle();
    ASSERT_EQ(f.fired.size(), static_cast<std::size_t>(i));
    EXPECT_EQ(f.fired.back().first, start + (i + 1) * 1'000'000) << "off the schedule";
    EXPECT_EQ(f.skipped.back(), 0u);
  }
  clock_.advance(5ms + 500us);  // now start + 8.5 ms: the 4 ms tick is due, 5-8 ms are missed
  settle();
  ASSERT_EQ(f.fired.size(), 4u);
  EXPECT_EQ(f.skipped.back(), 4u);
  EXPECT_FALSE(f.timers[0].armed());
  clock_.advance(10ms);
  settle();
  EXPECT_EQ(f.fired.size(), 4u) << "ran after it cancelled itself";
}

// A relative delay counts from its own start call, not from the message's start: time that
// passes inside a handler (here: the handler moves the clock itself) is not taken off a timer
// started after it (SEMANTICS 11; the real-clock regression test is in isolate_timer_test.cc).
// cached_now() keeps the message's first reading; now() moves.
TEST_F(ManualClockTimers, RelativeDelayCountsFromItsOwnStartCall) {
  Fixture f(2);
  StopAtExit stop{rt_};
  std::int64_t t0 = 0;
  bool cached_kept = false;
  spawn(f, [&](Isolate& self, Message&) {
    t0 = self.cached_now().count();
    ASSERT_TRUE(self.start_timer(f.timers[0], 50ms, &record).ok());
    clock_.advance(5ms);  // the scenario: 5 ms of work
    cached_kept = self.cached_now().count() == t0 && self.now().count() == t0 + 5'000'000;
    ASSERT_TRUE(self.start_timer(f.timers[1], 3ms, &record).ok());
  });
  run(0);
  EXPECT_TRUE(cached_kept);
  EXPECT_EQ(f.timers[0].deadline_ns(), t0 + 50'000'000);
  EXPECT_EQ(f.timers[1].deadline_ns(), t0 + 8'000'000);
  clock_.advance(3ms - 1ns);
  settle();
  EXPECT_TRUE(f.fired.empty()) << "the 3 ms timer counted from the message's start";
  clock_.advance(1ns);
  settle();
  ASSERT_EQ(f.fired.size(), 1u);
  EXPECT_EQ(f.fired[0].second, 1u);
}

// start_timer_at takes the caller's deadlines: in deadline order, a deadline already past is due
// at once (without waiting for a move) and still ordered by its deadline; start_periodic_at keeps
// whole periods from its first deadline.
TEST_F(ManualClockTimers, AbsoluteDeadlinesAndPeriodicAt) {
  Fixture f(5);
  StopAtExit stop{rt_};
  std::vector<std::int64_t> asked(4);
  spawn(f, [&](Isolate& self, Message&) {
    const TimePoint now = self.now();
    const std::chrono::nanoseconds offsets[] = {4ms, -2ms, 2ms, -1ms};
    for (std::size_t i = 0; i < 4; ++i) {
      asked[i] = (now + offsets[i]).count();
      ASSERT_TRUE(self.start_timer_at(f.timers[i], now + offsets[i], &record).ok());
    }
    ASSERT_TRUE(self.start_periodic_at(f.timers[4], now + 1ms, 3ms, &record).ok());
    EXPECT_EQ(self.start_periodic_at(f.timers[4], now, 0ms, &record).error(),
              Errc::invalid_argument);
  });
  run(0);
  ASSERT_EQ(f.fired.size(), 2u) << "the two past deadlines, at once";
  clock_.advance(4ms);
  settle();
  const std::size_t order[] = {1, 3, 4, 2, 0};
  ASSERT_EQ(f.fired.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(f.fired[i].second, order[i]);
  for (std::size_t i : {0u, 1u, 2u, 3u}) {
    EXPECT_EQ(f.timers[i].deadline_ns(), asked[i]) << "the deadline is the one asked for";
  }
  // The periodic one was due at +1 ms and ran at +4 ms: a whole period late, so it skipped the
  // +4 ms run and is re-armed for +7 ms, on the schedule of its first deadline.
  EXPECT_EQ(f.skipped[2], 1u);
  EXPECT_EQ(f.timers[4].deadline_ns(), asked[0] + 3'000'000);
}

// Zero-delay timers take no kernel timer and no keeper; 1,000 timers on one deadline take one
// batch; a throwing callback is caught and counted and the batch goes on.
TEST_F(ManualClockTimers, OneDeadlineOneBatchAndZeroDelayNeedsNoKeeper) {
  Fixture f(1000);
  StopAtExit stop{rt_};
  auto boom = [](Isolate& self, Timer& t, std::uint64_t s) {
    record(self, t, s);
    throw std::runtime_error("timer boom");
  };
  spawn(f, [&f, boom](Isolate& self, Message& m) {
    const TimePoint at = self.now() + (m.as_u64() == 1 ? 0ms : 3ms);
    for (std::size_t i = 0; i < f.timers.size(); ++i) {
      ASSERT_TRUE(self.start_timer_at(f.timers[i], at, i == 7 ? boom : &record).ok());
    }
  });
  run(1);
  EXPECT_EQ(f.fired.size(), 1000u);
  EXPECT_EQ(rt_.stats().timer_deadlines, 0u) << "zero-delay timers used a keeper's deadline";
  run(2);
  clock_.advance(3ms);
  settle();
  EXPECT_EQ(f.fired.size(), 2000u);
  EXPECT_EQ(rt_.stats().timer_deadlines, 1u);
  EXPECT_EQ(rt_.timer_stats().batches, 2u);
  EXPECT_EQ(rt_.timer_stats().largest_batch, 1000u);
  EXPECT_EQ(iso_->stats().exceptions, 2u);
}

// Destroying an isolate disarms its timers without running them, whatever the clock does next.
TEST_F(ManualClockTimers, DestroyDisarms) {
  Fixture f(2);
  StopAtExit stop{rt_};
  spawn(f, [&f](Isolate& self, Message&) {
    ASSERT_TRUE(self.start_timer(f.timers[0], 1ms, &record).ok());
    ASSERT_TRUE(self.start_periodic(f.timers[1], 1ms, &record).ok());
  });
  run(0);
  iso_->destroy();
  clock_.advance(1h);
  rt_.shutdown();  // (StopAtExit's shutdown is then a no-op)
  EXPECT_FALSE(f.timers[0].armed());
  EXPECT_FALSE(f.timers[1].armed());
  EXPECT_TRUE(f.fired.empty());
  EXPECT_EQ(rt_.timer_stats().live, 0u);
}

// More isolates due at one move than the pool hands over in one go: every wakeup is still
// queued when advance() returns (each isolate's timer runs before a message posted after it).
TEST_F(ManualClockTimers, OneMoveWakesEveryDueIsolateBeforeItReturns) {
  constexpr int kIsolates = 40;
  struct Per {
    Timer timer;
    bool fired = false;
  };
  std::vector<Per> per(kIsolates);
  SendPort report = *rt_.send_port(rx_.id());
  StopAtExit stop{rt_};
  std::vector<IsolateRef> isolates;
  for (int i = 0; i < kIsolates; ++i) {
    per[i].timer.user = &per[i];
    isolates.push_back(*rt_.spawn(make_handler([&per, &report, i](Isolate& self, Message& m) {
      if (m.as_u64() == kSettle) {
        (void)report.post(Message::u64(per[i].fired ? 1 : 0));
        return;
      }
      if (m.as_u64() == 2) {
        (void)report.post(Message::u64(2));
        return;
      }
      ASSERT_TRUE(self.start_timer(per[i].timer, 1ms,
                                   [](Isolate&, Timer& t, std::uint64_t) {
                                     static_cast<Per*>(t.user)->fired = true;
                                   })
                      .ok());
    })));
    ASSERT_TRUE(rt_.post(isolates.back()->main_port(), Message::u64(0)).ok());
    // Answered once the first message is done, its wakeup handed to the pool included.
    ASSERT_TRUE(rt_.post(isolates.back()->main_port(), Message::u64(2)).ok());
    EXPECT_EQ(expect_receive(rx_).as_u64(), 2u);
  }
  clock_.advance(1ms);
  for (auto& iso : isolates) ASSERT_TRUE(rt_.post(iso->main_port(), Message::u64(kSettle)).ok());
  int fired_first = 0;
  for (int i = 0; i < kIsolates; ++i) fired_first += static_cast<int>(expect_receive(rx_).as_u64());
  EXPECT_EQ(fired_first, kIsolates);
}

}  // namespace
}  // namespace evh
