#include "crosscheck.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace evh::bench {
namespace {

BenchRow row(std::string w, std::string impl, std::string metric, double median) {
  return {std::move(w), std::move(impl), std::move(metric), "x", median, median, median, 3};
}

const CrossRow* find(const std::vector<CrossRow>& rows, const std::string& workload,
                     const std::string& impl, const std::string& metric) {
  for (const CrossRow& r : rows) {
    if (r.workload == workload && r.impl == impl && r.metric == metric) return &r;
  }
  return nullptr;
}

// The harness's repetitions are reduced to their median; each figure lands on the evh-bench
// metric it measures, raw variants on "raw" for their own workload only.
TEST(Crosscheck, MapsHarnessFiguresOntoBenchMetrics) {
  const std::vector<Json> harness = parse_harness_lines(
      R"({"w":"W2","impl":"libevent","rep":1,"n":1e+06,"bulk_pair_ns":400,"pair_ns":25}
{"w":"W2","impl":"libevent","rep":2,"n":1e+06,"bulk_pair_ns":410,"pair_ns":26}
{"w":"W2","impl":"libevent","rep":3,"n":1e+06,"bulk_pair_ns":800,"pair_ns":27}
{"w":"W2","impl":"raw-heap","rep":1,"n":1e+06,"bulk_pair_ns":270}
{"w":"W2","impl":"raw-uring-pertimer","rep":1,"n":1e+06,"bulk_pair_ns":null,"pair_ns":700}
{"w":"W1","impl":"raw-heap","rep":1,"n":1e+06,"cpu_ms":1}
{"w":"W3","impl":"raw-eventfd","rep":1,"flood_mmsg_s":66.8,"rtt_p50_us":50}
not json, a log line
)");
  BenchRun bench;
  bench.rows = {row("timer_churn", "libevent", "bulk_pair_ns", 451),
                row("timer_churn", "libevent", "immediate_pair_ns", 35.4),
                row("timer_churn", "raw", "bulk_pair_ns", 270),
                row("timer_batch", "raw", "cpu_ms", 5),
                row("port_flood", "raw", "msgs_per_s", 45e6),
                row("thread_pingpong_block", "raw", "rtt_p50_us", 52)};
  const std::vector<CrossRow> rows = crosscheck(harness, bench);

  const CrossRow* bulk = find(rows, "timer_churn", "libevent", "bulk_pair_ns");
  ASSERT_NE(bulk, nullptr);
  EXPECT_EQ(bulk->harness_median, 410);  // the median of 400, 410, 800
  EXPECT_NEAR(bulk->ratio, 451.0 / 410, 1e-12);
  EXPECT_TRUE(bulk->within);  // +10%

  const CrossRow* pair = find(rows, "timer_churn", "libevent", "immediate_pair_ns");
  ASSERT_NE(pair, nullptr);
  EXPECT_EQ(pair->harness_median, 26);
  EXPECT_FALSE(pair->within);  // +36%

  EXPECT_NE(find(rows, "timer_churn", "raw", "bulk_pair_ns"), nullptr);
  // raw-heap is W2's raw, not W1's: no timer_batch row comes from it.
  EXPECT_EQ(find(rows, "timer_batch", "raw", "cpu_ms"), nullptr);

  const CrossRow* flood = find(rows, "port_flood", "raw", "msgs_per_s");
  ASSERT_NE(flood, nullptr);
  EXPECT_EQ(flood->harness_median, 66.8e6);  // M msgs/s to msgs/s
  EXPECT_FALSE(flood->within);
  EXPECT_TRUE(find(rows, "thread_pingpong_block", "raw", "rtt_p50_us")->within);
}

// Memory: the harness's resident growth in MiB becomes bytes per timer of its batch size.
TEST(Crosscheck, ResidentGrowthBecomesBytesPerTimer) {
  const std::vector<Json> harness =
      parse_harness_lines(R"({"w":"W1","impl":"asio","rep":1,"n":100000,"rss_delta_mb":24.4140625})"
                          "\n");
  BenchRun bench;
  bench.rows = {row("timer_batch_100k", "asio", "bytes_per_timer", 256)};
  const std::vector<CrossRow> rows = crosscheck(harness, bench);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_DOUBLE_EQ(rows[0].harness_median, 256);
  EXPECT_DOUBLE_EQ(rows[0].ratio, 1);
}

// Two zeros agree (early fires of an impl that never fires early); a zero against a count does
// not.
TEST(Crosscheck, ZerosAgreeAndZeroAgainstACountDoesNot) {
  const std::vector<Json> harness = parse_harness_lines(
      R"({"w":"W1","impl":"asio","rep":1,"n":1e+06,"early_n":0}
{"w":"W1","impl":"libuv","rep":1,"n":1e+06,"early_n":0})");
  BenchRun bench;
  bench.rows = {row("timer_batch", "asio", "early_fires", 0),
                row("timer_batch", "libuv", "early_fires", 71)};
  const std::vector<CrossRow> rows = crosscheck(harness, bench);
  EXPECT_TRUE(find(rows, "timer_batch", "asio", "early_fires")->within);
  EXPECT_FALSE(find(rows, "timer_batch", "libuv", "early_fires")->within);
  std::ostringstream out;
  write_crosscheck(out, rows, kCrosscheckTolerance);
  EXPECT_NE(out.str().find("2 figures compared, 1 within 15%, 1 beyond (0 of them"),
            std::string::npos)
      << out.str();
}

// A gap beyond 15% is told apart by whether the two sides' ranges meet: the harness's
// repetitions 0.36–1.44 M against evh-bench's 0.75–1.90 M overlap (the medians differ by 1.9×),
// 2.0–2.2 against 3.0 do not.
TEST(Crosscheck, RangesOverlapWhenTheRepetitionsShareValues) {
  const std::vector<Json> harness = parse_harness_lines(
      R"({"w":"W3","impl":"asio","rep":1,"flood_mmsg_s":1.44}
{"w":"W3","impl":"asio","rep":2,"flood_mmsg_s":0.36}
{"w":"W3","impl":"asio","rep":3,"flood_mmsg_s":0.82}
{"w":"W3","impl":"libuv","rep":1,"flood_mmsg_s":2.0}
{"w":"W3","impl":"libuv","rep":2,"flood_mmsg_s":2.2})");
  BenchRun bench;
  bench.rows = {{"port_flood", "asio", "msgs_per_s", "msgs/s", 1.54e6, 0.75e6, 1.90e6, 3},
                row("port_flood", "libuv", "msgs_per_s", 3.0e6)};
  const std::vector<CrossRow> rows = crosscheck(harness, bench);
  const CrossRow* asio = find(rows, "port_flood", "asio", "msgs_per_s");
  ASSERT_NE(asio, nullptr);
  EXPECT_FALSE(asio->within);
  EXPECT_TRUE(asio->ranges_overlap);
  EXPECT_DOUBLE_EQ(asio->harness_min, 0.36e6);
  EXPECT_DOUBLE_EQ(asio->harness_max, 1.44e6);
  const CrossRow* libuv = find(rows, "port_flood", "libuv", "msgs_per_s");
  ASSERT_NE(libuv, nullptr);
  EXPECT_FALSE(libuv->within);
  EXPECT_FALSE(libuv->ranges_overlap);
  std::ostringstream out;
  write_crosscheck(out, rows, kCrosscheckTolerance);
  EXPECT_NE(out.str().find("2 figures compared, 0 within 15%, 2 beyond (1 of them"),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("**beyond**, ranges overlap"), std::string::npos) << out.str();
}

// The cells of an interleaved cross-check are separate runs: their medians are merged by median.
TEST(Crosscheck, MergesRunsByTheMedianOfTheirMedians) {
  BenchRun a;
  a.rows = {row("timer_churn", "asio", "bulk_pair_ns", 600)};
  BenchRun b;
  b.rows = {row("timer_churn", "asio", "bulk_pair_ns", 900), row("port_flood", "raw", "x", 1)};
  BenchRun c;
  c.rows = {row("timer_churn", "asio", "bulk_pair_ns", 650)};
  const BenchRun m = merge_runs({a, b, c});
  ASSERT_EQ(m.rows.size(), 2u);
  EXPECT_EQ(m.rows[0].median, 650);
  EXPECT_EQ(m.rows[0].min, 600);
  EXPECT_EQ(m.rows[0].max, 900);
  EXPECT_EQ(m.rows[0].reps, 3);
  EXPECT_EQ(m.rows[1].metric, "x");
}

}  // namespace
}  // namespace evh::bench
