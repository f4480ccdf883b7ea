#include "stats.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace evh::bench {
namespace {

// 1..100: the nearest-rank p-th percentile of 100 samples is the p-th sample.
TEST(Stats, NearestRankPercentilesOfOneToHundred) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(percentile_of_sorted(v, 50), 50);
  EXPECT_EQ(percentile_of_sorted(v, 99), 99);
  EXPECT_EQ(percentile_of_sorted(v, 99.9), 100);
  EXPECT_EQ(percentile_of_sorted(v, 100), 100);
  EXPECT_EQ(percentile_of_sorted(v, 0.5), 1);
}

// 99.9% of 100,000 samples is rank 99,900 exactly, not the next one (floating-point edge).
TEST(Stats, P999OfHundredThousandIsRank99900) {
  std::vector<double> v;
  for (int i = 1; i <= 100'000; ++i) v.push_back(i);
  EXPECT_EQ(percentile_of_sorted(v, 99.9), 99'900);
  EXPECT_EQ(percentile_of_sorted(v, 99), 99'000);
}

// Percentiles never interpolate: every answer is an observed sample.
TEST(Stats, PercentileIsAnObservedSample) {
  const std::vector<std::int64_t> v = {10, 20, 30, 1000};
  EXPECT_EQ(percentile_of_sorted(v, 50), 20);
  EXPECT_EQ(percentile_of_sorted(v, 75), 30);
  EXPECT_EQ(percentile_of_sorted(v, 76), 1000);
}

TEST(Stats, SummaryOfOddAndEvenCounts) {
  const Summary odd = summarize({3, 1, 2});
  EXPECT_EQ(odd.median, 2);
  EXPECT_EQ(odd.min, 1);
  EXPECT_EQ(odd.max, 3);
  EXPECT_EQ(odd.count, 3u);
  EXPECT_EQ(summarize({4, 1, 2, 3}).median, 2.5);
}

// Syscalls per unit: the fixed costs of a run drop out of the difference of two runs.
TEST(Stats, MarginalPerUnitSubtractsFixedCosts) {
  // 500 fixed calls plus 3 per unit.
  EXPECT_EQ(marginal_per_unit(500 + 3 * 10, 10, 500 + 3 * 100, 100), 3.0);
  EXPECT_EQ(marginal_per_unit(40, 10, 40, 100), 0.0);  // nothing scales with the work: a real 0
}

// raw port_flood once counted fewer calls in its larger run (its sleeps depend on timing) and
// reported 0 beside a quarter of a million blocking reads: a larger run that counts fewer is
// "not measured", never 0.
TEST(Stats, MarginalPerUnitNeverClampsToZero) {
  EXPECT_FALSE(marginal_per_unit(228, 2'000, 134, 20'000));
}

// A path with no syscall at all: the fixed costs jitter by a call or three between the runs.
TEST(Stats, MarginalPerUnitOfAFixedCostJitterIsZero) {
  EXPECT_EQ(marginal_per_unit(164, 20'000, 161, 200'000), 0.0);
}

TEST(Stats, HigherIsBetterOnlyForRates) {
  EXPECT_TRUE(higher_is_better("msgs_per_s"));
  EXPECT_FALSE(higher_is_better("rtt_p50_us"));
  EXPECT_FALSE(higher_is_better("syscalls_per_msg"));
}

}  // namespace
}  // namespace evh::bench
