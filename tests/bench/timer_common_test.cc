#include "timer_common.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace evh::bench {
namespace {

double metric(const RunResult& r, const std::string& name) {
  for (const Metric& m : r.metrics) {
    if (m.name == name) return m.value;
  }
  ADD_FAILURE() << "no metric " << name;
  return -1;
}

// Every impl gets the same deadlines: T0 (one clock read at begin_arming) + lead + a fixed-seed
// offset, the same offsets in every book of the same size.
TEST(BatchBook, DeadlinesAreT0PlusLeadPlusFixedOffsets) {
  const BatchSize size{1000, 5'000'000, 100'000'000};
  BatchBook a(size);
  BatchBook b(size);
  a.begin_arming();
  b.begin_arming();
  for (std::size_t i = 0; i < size.count; ++i) {
    const std::int64_t da = a.deadline(i) - a.t0();
    EXPECT_EQ(da, b.deadline(i) - b.t0());
    EXPECT_GE(da, size.lead_ns);
    EXPECT_LT(da, size.lead_ns + size.spread_ns);
  }
  // Not all the same offset: the spread is used.
  EXPECT_NE(a.deadlines().front(), a.deadlines().back());
}

// Lateness and early fires are counted against the deadline the benchmark asked for: a fire
// before it is early whatever the impl thought its deadline was.
TEST(BatchBook, EarlyAndLateAgainstTheRequestedDeadline) {
  const BatchSize size{4, 1'000'000'000, 1'000};
  BatchBook book(size);
  book.begin_arming();
  for (std::size_t i = 0; i < size.count; ++i) book.deadline(i);
  book.end_arming();
  // Fired now: about a second before every deadline, so all four are early.
  for (std::size_t i = 0; i < size.count; ++i) book.fired(i);
  BatchOutcome o;
  o.end_ns = now_ns();
  const RunResult r = batch_metrics(book, o);
  EXPECT_EQ(metric(r, "early_fires"), 4);
  EXPECT_LT(metric(r, "late_p50_us"), -900'000);
  EXPECT_LT(metric(r, "overrun_ms"), -900);
}

TEST(BatchBook, AFireOnTimeIsNotEarly) {
  const BatchSize size{3, 0, 1};
  BatchBook book(size);
  book.begin_arming();
  for (std::size_t i = 0; i < size.count; ++i) book.deadline(i);
  book.end_arming();
  for (std::size_t i = 0; i < size.count; ++i) book.fired(i);  // after T0 + 0 ns
  const RunResult r = batch_metrics(book, BatchOutcome{});
  EXPECT_EQ(metric(r, "early_fires"), 0);
  EXPECT_GE(metric(r, "late_p50_us"), 0);
}

// A timer that never fired fails the cell rather than being left out of the percentiles.
TEST(BatchBook, AMissingFireFailsTheCell) {
  const BatchSize size{3, 0, 1};
  BatchBook book(size);
  book.begin_arming();
  for (std::size_t i = 0; i < size.count; ++i) book.deadline(i);
  book.end_arming();
  book.fired(0);
  book.fired(2);
  EXPECT_THROW(batch_metrics(book, BatchOutcome{}), BenchError);
}

// The churn's "now + 10 s" moves only once per tick of operations, as a loop's time does.
TEST(ChurnClock, RefreshesOncePerTick) {
  ChurnClock clock;
  const std::int64_t first = clock.deadline();
  for (std::uint64_t op = 0; op + 1 < ChurnClock::kTick; ++op) {
    clock.tick(op);
    EXPECT_EQ(clock.deadline(), first);
  }
  spin_for(std::chrono::microseconds(2));
  clock.tick(ChurnClock::kTick - 1);
  EXPECT_GT(clock.deadline(), first);
}

}  // namespace
}  // namespace evh::bench
