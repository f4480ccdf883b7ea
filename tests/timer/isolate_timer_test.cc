// Isolate timers on the real clock and the real event handler: lower bounds only, never a
// timing threshold.
#include <evh/clock.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using test::expect_receive;

constexpr std::uint64_t kSettle = 777;

std::int64_t mono_ns() {
  return MonotonicClock().now().count();
}

// Shared by a test and the isolate's callbacks; touched only on the isolate's turn until the
// test has received the isolate's final report.
struct Fixture {
  explicit Fixture(std::size_t n) : timers(n) {}
  std::vector<Timer> timers;
  std::vector<std::pair<std::int64_t, std::size_t>> fired;  // (deadline, index)
  std::vector<std::int64_t> late;
  SendPort report;
  std::size_t expected = 0;
  int microtasks_run = 0;
};

// The isolate reports its timer counters to the runtime after the message (or batch) that
// changed them; a round trip through its mailbox waits for that.
void settle(Runtime& rt, Receiver& rx, PortId isolate_port) {
  ASSERT_TRUE(rt.post(isolate_port, Message::u64(kSettle)).ok());
  EXPECT_EQ(expect_receive(rx).as_u64(), kSettle);
}

// Declared after the runtime: shuts it down (no callback runs after that) and then drops the
// fixture's SendPort, which must go before the runtime object does.
struct StopThenDrop {
  Runtime& rt;
  Fixture& f;
  ~StopThenDrop() {
    rt.shutdown();
    f.report = SendPort();
  }
};

void record(Isolate&, Timer& t, std::uint64_t) {
  auto& f = *static_cast<Fixture*>(t.user);
  const auto index = static_cast<std::size_t>(&t - f.timers.data());
  f.late.push_back(mono_ns() - t.deadline_ns());
  f.fired.emplace_back(t.deadline_ns(), index);
  if (f.fired.size() == f.expected) (void)f.report.post(Message::u64(1));
}

// Timers fire no earlier than their deadline, in (deadline, creation) order, zero-delay ones
// included, and each once.
TEST(IsolateTimers, FireInOrderNeverEarly) {
  Fixture f(200);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = f.timers.size();
  std::mt19937_64 rng(5);
  std::vector<std::int64_t> delays(f.timers.size());
  for (std::size_t i = 0; i < delays.size(); ++i) {
    delays[i] = i % 10 == 0 ? 0 : static_cast<std::int64_t>(rng() % 20'000'000);
  }
  std::int64_t started_at = 0;
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message& m) {
    if (m.as_u64() == kSettle) {
      (void)f.report.post(Message::u64(kSettle));
      return;
    }
    started_at = mono_ns();
    for (std::size_t i = 0; i < f.timers.size(); ++i) {
      f.timers[i].user = &f;
      ASSERT_TRUE(self.start_timer(f.timers[i], std::chrono::nanoseconds(delays[i]), &record,
                                   i % 2 ? Slack::exact() : Slack::coarse())
                      .ok());
    }
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);
  ASSERT_EQ(f.fired.size(), f.timers.size());
  EXPECT_TRUE(std::is_sorted(f.fired.begin(), f.fired.end()));
  for (std::int64_t l : f.late) EXPECT_GE(l, 0) << "a timer fired before its deadline";
  for (auto& [deadline, index] : f.fired) EXPECT_GE(deadline, started_at - 1'000'000'000);
  settle(rt, *rx, (*iso)->main_port());
  const TimerStats rs = rt.timer_stats();
  EXPECT_EQ(rs.fired, f.timers.size());
  EXPECT_EQ(rs.live, 0u);
}

// A callback cancels a later timer of the same batch, and the last timer ends the test; the
// cancelled one never runs, and a microtask scheduled by a callback runs before the next one.
TEST(IsolateTimers, CancelInBatchAndMicrotasksBetweenCallbacks) {
  Fixture f(3);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = 2;
  static int seen_by_second = -1;
  auto first = [](Isolate& self, Timer& t, std::uint64_t) {
    auto& fx = *static_cast<Fixture*>(t.user);
    self.cancel_timer(fx.timers[1]);
    self.schedule_microtask([](Isolate&, void* a) { ++static_cast<Fixture*>(a)->microtasks_run; },
                            &fx);
    record(self, t, 0);
  };
  auto third = [](Isolate& self, Timer& t, std::uint64_t) {
    seen_by_second = static_cast<Fixture*>(t.user)->microtasks_run;
    record(self, t, 0);
  };
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
    for (auto& t : f.timers) t.user = &f;
    // All three are due at the same wakeup (same deadline), in creation order.
    ASSERT_TRUE(self.start_timer(f.timers[0], 2ms, first, Slack::exact()).ok());
    ASSERT_TRUE(self.start_timer(f.timers[1], 2ms, &record, Slack::exact()).ok());
    ASSERT_TRUE(self.start_timer(f.timers[2], 2ms, third, Slack::exact()).ok());
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);
  ASSERT_EQ(f.fired.size(), 2u);
  EXPECT_EQ(f.fired[0].second, 0u);
  EXPECT_EQ(f.fired[1].second, 2u);
  EXPECT_EQ(seen_by_second, 1);
  EXPECT_FALSE(f.timers[1].armed());
}

// A periodic timer runs on its schedule and cancels itself after five runs.
TEST(IsolateTimers, PeriodicCancelsItself) {
  Fixture f(1);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = 5;
  auto tick = [](Isolate& self, Timer& t, std::uint64_t) {
    auto& fx = *static_cast<Fixture*>(t.user);
    if (fx.fired.size() + 1 == fx.expected) self.cancel_timer(t);
    record(self, t, 0);
  };
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
    f.timers[0].user = &f;
    ASSERT_TRUE(self.start_periodic(f.timers[0], 1ms, tick).ok());
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);
  ASSERT_EQ(f.fired.size(), 5u);
  for (std::size_t i = 1; i < f.fired.size(); ++i) {
    // Fixed schedule: deadlines are whole periods apart (a skipped period makes it more).
    EXPECT_EQ((f.fired[i].first - f.fired[0].first) % 1'000'000, 0);
    EXPECT_GT(f.fired[i].first, f.fired[i - 1].first);
  }
  EXPECT_FALSE(f.timers[0].armed());
}

// An exact periodic timer so dense that its next deadline is always due within microseconds
// keeps the isolate in its timer loop; a message posted meanwhile is still handled (at the end
// of a time slice at the latest), and the timer keeps its schedule around it.
TEST(IsolateTimers, DenseExactTimersDoNotStarveMessages) {
  constexpr std::uint64_t kTicking = 1;
  constexpr std::uint64_t kPing = 2;
  Fixture f(1);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  auto tick = [](Isolate&, Timer& t, std::uint64_t skipped) {
    auto& fx = *static_cast<Fixture*>(t.user);
    fx.late.push_back(static_cast<std::int64_t>(skipped));
    if (fx.late.size() == 1) (void)fx.report.post(Message::u64(kTicking));
  };
  std::size_t ticks_at_ping = 0;
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message& m) {
    if (m.as_u64() == kSettle) {
      (void)f.report.post(Message::u64(kSettle));
      return;
    }
    if (m.as_u64() == kPing) {
      ticks_at_ping = f.late.size();
      self.cancel_timer(f.timers[0]);
      (void)f.report.post(Message::u64(kPing));
      return;
    }
    f.timers[0].user = &f;
    ASSERT_TRUE(self.start_periodic(f.timers[0], 2us, tick, Slack::exact()).ok());
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), kTicking);
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(kPing)).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), kPing);
  EXPECT_GE(ticks_at_ping, 1u);
  EXPECT_FALSE(f.timers[0].armed());
  settle(rt, *rx, (*iso)->main_port());
  EXPECT_EQ(f.late.size(), ticks_at_ping) << "the timer ran after it was cancelled";
}

// 1,000 timers with one deadline fire in one batch; zero-delay timers need no kernel timer.
TEST(IsolateTimers, OneDeadlineOneWakeupAndZeroDelayNeedsNoKernelTimer) {
  Fixture f(1000);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = f.timers.size();
  auto eh = rt.event_handler();
  ASSERT_TRUE(eh.ok());
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message& m) {
    if (m.as_u64() == kSettle) {
      (void)f.report.post(Message::u64(kSettle));
      return;
    }
    const bool zero = m.as_u64() == 1;
    // One deadline for all: relative starts would each count from their own call.
    const TimePoint deadline = self.cached_now() + (zero ? 0ms : 3ms);
    for (auto& t : f.timers) {
      t.user = &f;
      ASSERT_TRUE(self.start_timer_at(t, deadline, &record, Slack::exact()).ok());
    }
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(1)).ok());
  expect_receive(*rx);
  EXPECT_EQ((*eh)->stats().timeouts + rt.stats().timer_deadlines, 0u)
      << "zero-delay timers used a kernel timer";
  f.fired.clear();
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(2)).ok());
  expect_receive(*rx);
  // At least one timeout fires them; earlier ones may come to move timers down the wheel or to
  // pace its pre-cascading (docs/TIMERS.md), but they fire nothing: one batch holds all 1,000.
  EXPECT_GE((*eh)->stats().timeouts + rt.stats().timer_deadlines, 1u);
  settle(rt, *rx, (*iso)->main_port());
  EXPECT_EQ(rt.timer_stats().batches, 2u);
  EXPECT_EQ(rt.timer_stats().largest_batch, 1000u);
}

// A throwing callback is caught and counted; the batch goes on.
TEST(IsolateTimers, ThrowingCallbackIsCaught) {
  Fixture f(2);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = 1;
  auto boom = [](Isolate&, Timer&, std::uint64_t) { throw std::runtime_error("timer boom"); };
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
    for (auto& t : f.timers) t.user = &f;
    ASSERT_TRUE(self.start_timer(f.timers[0], 1ms, boom, Slack::exact()).ok());
    ASSERT_TRUE(self.start_timer(f.timers[1], 1ms, &record, Slack::exact()).ok());
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);
  EXPECT_EQ((*iso)->stats().exceptions, 1u);
}

// Bad arguments get clear errors; destroying an isolate disarms its timers without running them.
TEST(IsolateTimers, BadArgumentsAndDestroyDisarms) {
  Fixture f(2);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
    for (auto& t : f.timers) t.user = &f;
    std::uint64_t errors = 0;
    errors += self.start_timer(f.timers[0], -1ms, &record).error() == Errc::invalid_argument;
    errors += self.start_timer(f.timers[0], 1ms, nullptr).error() == Errc::invalid_argument;
    errors += self.start_periodic(f.timers[0], 0ms, &record).error() == Errc::invalid_argument;
    ASSERT_TRUE(self.start_timer(f.timers[1], 1h, &record).ok());
    self.cancel_timer(f.timers[0]);  // never armed: a no-op
    (void)f.report.post(Message::u64(errors));
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 3u);
  EXPECT_TRUE(f.timers[1].armed());
  (*iso)->destroy();
  rt.shutdown();
  EXPECT_FALSE(f.timers[1].armed());
  EXPECT_TRUE(f.fired.empty());
  EXPECT_EQ(rt.timer_stats().live, 0u);
}

// Regression: a relative timer's deadline was counted from one clock reading per message (taken
// at the message's first start_timer), so a 3 ms timer started 5 ms into a handler fired ~0 ms
// after its own start call. The delay must count from the call itself (SEMANTICS 11).
TEST(IsolateTimers, RelativeDelayCountsFromItsOwnStartCall) {
  Fixture f(2);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = 1;
  std::int64_t before_second_start = 0;
  std::int64_t fired_at = 0;
  auto second = [](Isolate&, Timer& t, std::uint64_t) {
    *static_cast<std::int64_t*>(t.user) = mono_ns();
  };
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message& m) {
    if (m.as_u64() == kSettle) {
      (void)f.report.post(Message::u64(kSettle));
      return;
    }
    f.timers[0].user = &f;
    ASSERT_TRUE(self.start_timer(f.timers[0], 50ms, &record, Slack::exact()).ok());
    const std::int64_t until = mono_ns() + 5'000'000;  // the scenario: 5 ms of work
    while (mono_ns() < until) {
    }
    f.timers[1].user = &fired_at;
    before_second_start = mono_ns();
    ASSERT_TRUE(self.start_timer(f.timers[1], 3ms, second, Slack::exact()).ok());
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);  // the 50 ms timer, which fires after the 3 ms one
  ASSERT_NE(fired_at, 0) << "the 3 ms timer did not fire before the 50 ms one";
  EXPECT_GE(fired_at - before_second_start, 3'000'000)
      << "a 3 ms timer fired " << (fired_at - before_second_start) << " ns after its start call";
}

// start_timer_at takes the caller's absolute deadlines: never fired before them, in deadline
// order, and a deadline already past is due in the next batch, still ordered by its deadline.
TEST(IsolateTimers, AbsoluteDeadlinesFireInOrderNeverEarly) {
  Fixture f(4);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = f.timers.size();
  std::vector<std::int64_t> asked(f.timers.size());
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
    const TimePoint now = self.now();
    // Two ahead (given out of order) and two already past.
    const std::chrono::nanoseconds offsets[] = {4ms, -2ms, 2ms, -1ms};
    for (std::size_t i = 0; i < f.timers.size(); ++i) {
      f.timers[i].user = &f;
      asked[i] = (now + offsets[i]).count();
      ASSERT_TRUE(self.start_timer_at(f.timers[i], now + offsets[i], &record, Slack::exact()).ok());
    }
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);
  ASSERT_EQ(f.fired.size(), 4u);
  const std::size_t order[] = {1, 3, 2, 0};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(f.fired[i].second, order[i]);
    EXPECT_EQ(f.fired[i].first, asked[order[i]]) << "the deadline is the one asked for";
    EXPECT_GE(f.late[i], 0) << "fired before its absolute deadline";
  }
}

// cached_now() is read once per message and never ahead of now(); a periodic timer started at an
// absolute first deadline keeps whole periods from it.
TEST(IsolateTimers, CachedNowAndPeriodicAt) {
  Fixture f(1);  // first: the isolate's callbacks use it until the runtime is gone
  Runtime rt;
  auto rx = rt.open_receiver();
  StopThenDrop stop{rt, f};
  f.report = *rt.send_port(rx->id());
  f.expected = 3;
  bool cached_stable = false;
  bool cached_not_ahead = false;
  std::int64_t first = 0;
  // A periodic timer is re-armed before its callback: deadline_ns() there is the next one.
  auto tick = [](Isolate& self, Timer& t, std::uint64_t) {
    auto& fx = *static_cast<Fixture*>(t.user);
    if (fx.fired.size() + 1 == fx.expected) self.cancel_timer(t);
    fx.late.push_back(mono_ns());  // here: the fire time
    fx.fired.emplace_back(t.deadline_ns(), 0);
    if (fx.fired.size() == fx.expected) (void)fx.report.post(Message::u64(1));
  };
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
    const TimePoint a = self.cached_now();
    const std::int64_t spin_until = mono_ns() + 100'000;
    while (mono_ns() < spin_until) {
    }
    cached_stable = self.cached_now() == a;
    cached_not_ahead = a <= self.now();
    f.timers[0].user = &f;
    first = (a + 1ms).count();
    ASSERT_TRUE(self.start_periodic_at(f.timers[0], a + 1ms, 1ms, tick).ok());
    EXPECT_EQ(self.start_periodic_at(f.timers[0], a, 0ms, tick).error(), Errc::invalid_argument);
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  expect_receive(*rx);
  EXPECT_TRUE(cached_stable);
  EXPECT_TRUE(cached_not_ahead);
  ASSERT_EQ(f.fired.size(), 3u);
  for (std::size_t k = 0; k < f.fired.size(); ++k) {
    EXPECT_GT(f.fired[k].first, first);
    EXPECT_EQ((f.fired[k].first - first) % 1'000'000, 0) << "off the schedule of `first`";
    EXPECT_GE(f.late[k], first + static_cast<std::int64_t>(k) * 1'000'000) << "fired early";
  }
}

}  // namespace
}  // namespace evh
