#include "perf_compare.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace evh::bench {
namespace {

BenchRun sample_run() {
  BenchRun run;
  run.size = "quick";
  auto add = [&](std::string w, std::string impl, std::string metric, double median) {
    run.rows.push_back({w, impl, metric, "x", median, median * 0.9, median * 1.1, 3});
  };
  for (const char* impl : {"evh", "raw", "libuv", "asio"}) {
    const double k = std::string(impl) == "evh" ? 1.0 : 2.0;
    add("thread_pingpong", impl, "rtt_p50_us", 3 * k);
    add("port_flood", impl, "msgs_per_s", 1e7 / k);
    add("timer_churn", impl, "bulk_pair_ns", 40 * k);
  }
  return run;
}

// Every metric gets a 10% tolerance, the tightest the suite would ever use.
double ten_percent(std::string_view, std::string_view) {
  return 1.1;
}

void scale(BenchRun& run, std::string_view impl, std::string_view metric, double factor) {
  for (BenchRow& r : run.rows) {
    if ((impl.empty() || r.impl == impl) && (metric.empty() || r.metric == metric)) {
      r.median *= factor;
      r.min *= factor;
      r.max *= factor;
    }
  }
}

TEST(PerfCompare, IdenticalRunsPass) {
  const Comparison c = compare_runs(sample_run(), sample_run(), ten_percent);
  EXPECT_TRUE(c.passed());
  EXPECT_EQ(c.cells.size(), 3u);
}

// evh's per-pair cost 20% higher, every reference unchanged: beyond a 10% tolerance.
TEST(PerfCompare, TwentyPercentRegressionFails) {
  BenchRun now = sample_run();
  scale(now, "evh", "bulk_pair_ns", 1.2);
  const Comparison c = compare_runs(sample_run(), now, ten_percent);
  EXPECT_FALSE(c.passed());
  ASSERT_EQ(c.regressions(), 1);
  std::ostringstream report;
  write_comparison(report, c, /*verbose=*/false);
  EXPECT_NE(report.str().find("REGRESSED timer_churn bulk_pair_ns"), std::string::npos)
      << report.str();
  EXPECT_NE(report.str().find("1.2x worse"), std::string::npos) << report.str();
  EXPECT_NE(report.str().find("FAIL"), std::string::npos);
}

// A throughput 20% lower is a regression too (higher is better for *_per_s).
TEST(PerfCompare, TwentyPercentThroughputDropFails) {
  BenchRun now = sample_run();
  scale(now, "evh", "msgs_per_s", 0.8);
  EXPECT_EQ(compare_runs(sample_run(), now, ten_percent).regressions(), 1);
}

// A machine twice as slow doubles every impl's figures: every ratio stays, nothing fails.
TEST(PerfCompare, UniformTwoTimesSlowdownPasses) {
  BenchRun now = sample_run();
  scale(now, "", "", 2.0);
  const Comparison c = compare_runs(sample_run(), now, ten_percent);
  EXPECT_TRUE(c.passed());
  for (const CellVerdict& v : c.cells) EXPECT_LE(v.factor, 1.0 + 1e-12);
}

// One peer that happened to run fast cannot fail the build: the cell takes the reference
// against which evh moved least.
TEST(PerfCompare, OneLuckyPeerDoesNotFail) {
  BenchRun now = sample_run();
  scale(now, "libuv", "rtt_p50_us", 0.5);
  EXPECT_TRUE(compare_runs(sample_run(), now, ten_percent).passed());
}

// Every reference got 20x faster (an idle VM became a busy one) while evh stayed put: not a
// regression of evh.
TEST(PerfCompare, ReferencesGettingFasterAloneDoesNotFail) {
  BenchRun now = sample_run();
  for (const char* impl : {"raw", "libuv", "asio"}) scale(now, impl, "rtt_p50_us", 0.05);
  EXPECT_TRUE(compare_runs(sample_run(), now, ten_percent).passed());
}

// A regression that a re-run does not reproduce was noise; one that it does stays.
TEST(PerfCompare, RegressionMustReproduceInReruns) {
  BenchRun once = sample_run();
  scale(once, "evh", "bulk_pair_ns", 1.5);
  const Comparison first = compare_runs(sample_run(), once, ten_percent);
  ASSERT_EQ(first.regressions(), 1);
  EXPECT_EQ(confirm(first, {compare_runs(sample_run(), sample_run(), ten_percent)}).regressions(),
            0);
  EXPECT_EQ(confirm(first, {compare_runs(sample_run(), once, ten_percent)}).regressions(), 1);
}

TEST(PerfCompare, ZeroFiguresAreSkippedNotCompared) {
  BenchRun base = sample_run();
  scale(base, "raw", "bulk_pair_ns", 0.0);
  scale(base, "libuv", "bulk_pair_ns", 0.0);
  scale(base, "asio", "bulk_pair_ns", 0.0);
  const Comparison c = compare_runs(base, sample_run(), ten_percent);
  EXPECT_TRUE(c.passed());
  EXPECT_EQ(c.cells.size(), 2u);
  EXPECT_EQ(c.skipped.size(), 1u);
}

// A ratio to 0 says nothing, but a move from 0 does: evh's early fires going from 0 to 5,000 is a
// regression (it used to be a skipped cell), and so is a syscall appearing on a path that had
// none; a syscall count's fixed-cost residue (~1e-5 per unit) is not.
TEST(PerfCompare, MovingFromZeroIsARegression) {
  BenchRun base = sample_run();
  for (const char* impl : {"evh", "raw", "libuv", "asio"}) {
    base.rows.push_back({"timer_batch", impl, "early_fires", "count", 0, 0, 0, 3});
    base.rows.push_back({"timer_churn", impl, "syscalls_per_pair", "count", 0, 0, 0, 3});
  }
  BenchRun now = base;
  EXPECT_TRUE(compare_runs(base, now).passed());

  for (BenchRow& r : now.rows) {
    if (r.impl == "evh" && r.metric == "early_fires") r.median = 5000;
    if (r.impl == "evh" && r.metric == "syscalls_per_pair") r.median = 1e-5;
  }
  const Comparison c = compare_runs(base, now);
  EXPECT_EQ(c.regressions(), 1);
  std::ostringstream report;
  write_comparison(report, c, /*verbose=*/false);
  EXPECT_NE(report.str().find("REGRESSED timer_batch early_fires (evh): 0 -> 5e+03"),
            std::string::npos)
      << report.str();

  for (BenchRow& r : now.rows) {
    if (r.impl == "evh" && r.metric == "early_fires") r.median = 0;
    if (r.impl == "evh" && r.metric == "syscalls_per_pair") r.median = 1.0;
  }
  EXPECT_EQ(compare_runs(base, now).regressions(), 1);
}

// A peer's early fires going from 0 is the peer's business: only evh's cells are judged.
TEST(PerfCompare, OnlyEvhCellsAreJudgedFromZero) {
  BenchRun base = sample_run();
  base.rows.push_back({"timer_batch", "evh", "early_fires", "count", 0, 0, 0, 3});
  base.rows.push_back({"timer_batch", "libuv", "early_fires", "count", 0, 0, 0, 3});
  BenchRun now = base;
  now.rows.back().median = 60;
  EXPECT_TRUE(compare_runs(base, now).passed());
}

// Tolerances are wide for latency tails and tight for throughput and per-op costs.
TEST(PerfCompare, DefaultTolerances) {
  EXPECT_GE(default_tolerance("thread_pingpong", "rtt_p99_us"), 2.0);
  EXPECT_GE(default_tolerance("thread_pingpong", "rtt_p50_us"), 2.0);
  EXPECT_LE(default_tolerance("port_flood", "msgs_per_s"), 1.5);
  EXPECT_LE(default_tolerance("timer_churn", "bulk_pair_ns"), 1.5);
  EXPECT_EQ(default_tolerance("port_flood", "consumer_wakeups"), 0);
  // CPU beside a figure is gated, as a cost, not as a latency.
  EXPECT_EQ(default_tolerance("thread_pingpong", "cpu_us_per_rtt"), 2);
  EXPECT_EQ(default_tolerance("port_flood", "cpu_ns_per_msg"), 2);
  EXPECT_LE(default_tolerance("timer_batch", "cpu_ms"), 1.5);
  EXPECT_EQ(default_tolerance("isolate_pingpong", "rtt_p999_us"), 0);
  // The loop's share of a syscall count is gated as the count is.
  EXPECT_EQ(default_tolerance("fd_fanout", "loop_syscalls_per_event"),
            default_tolerance("fd_fanout", "syscalls_per_event"));
  EXPECT_EQ(default_from_zero("fd_fanout", "loop_syscalls_per_event"),
            default_from_zero("fd_fanout", "syscalls_per_event"));
}

// A metric the current run has and the baseline does not (one added since) is not judged.
TEST(PerfCompare, MetricMissingFromTheBaselineIsNotJudged) {
  BenchRun base;
  base.rows.push_back({"fd_fanout", "evh", "syscalls_per_event", "count", 2.0, 2.0, 2.0, 1});
  base.rows.push_back({"fd_fanout", "raw", "syscalls_per_event", "count", 2.0, 2.0, 2.0, 1});
  BenchRun now = base;
  now.rows.push_back({"fd_fanout", "evh", "loop_syscalls_per_event", "count", 50, 50, 50, 1});
  now.rows.push_back({"fd_fanout", "raw", "loop_syscalls_per_event", "count", 0.1, 0.1, 0.1, 1});
  const Comparison c = compare_runs(base, now);
  EXPECT_TRUE(c.passed());
  EXPECT_EQ(c.cells.size(), 1u);
}

// --update keeps the other size's baseline and replaces this one's.
TEST(PerfCompare, BaselineHoldsOneRunPerSize) {
  Json baseline = empty_baseline();
  set_baseline(baseline, "quick", parse_json(R"({"schema": 1, "size": "quick", "results": []})"));
  set_baseline(baseline, "standard",
               parse_json(R"({"schema": 1, "results": [{"workload": "w", "impl": "evh",
                  "metric": "m", "unit": "us", "median": 1, "min": 1, "max": 1, "reps": 1}]})"));
  set_baseline(baseline, "quick", parse_json(R"({"schema": 1, "size": "quick", "results": [
      {"workload": "w", "impl": "raw", "metric": "m", "unit": "us", "median": 2, "min": 2,
       "max": 2, "reps": 1}]})"));
  std::ostringstream out;
  write_json_document(out, baseline);
  const Json back = parse_json(out.str());
  ASSERT_TRUE(baseline_for(back, "quick"));
  EXPECT_EQ(baseline_for(back, "quick")->rows.at(0).impl, "raw");
  EXPECT_EQ(baseline_for(back, "standard")->rows.at(0).impl, "evh");
  EXPECT_FALSE(baseline_for(back, "full"));
}

}  // namespace
}  // namespace evh::bench
