#include "timer/lateness_histogram.h"

#include <gtest/gtest.h>

namespace evh::detail {
namespace {

// Known inputs give known percentiles: 1..1000 ns, uniformly.
TEST(LatenessHistogram, KnownPercentiles) {
  RuntimeLateness h;
  for (int v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.max(), 1000u);
  // Buckets are 1/16 wide: the reported value is the floor of the true one's bucket.
  auto near = [](std::uint64_t got, std::uint64_t want) {
    return got <= want && got * 17 >= want * 16;
  };
  EXPECT_TRUE(near(h.percentile(50), 500)) << h.percentile(50);
  EXPECT_TRUE(near(h.percentile(99), 990)) << h.percentile(99);
  EXPECT_TRUE(near(h.percentile(99.9), 999)) << h.percentile(99.9);
  EXPECT_EQ(h.percentile(0.1), 1u);
}

// Small values are exact, negatives count as 0, huge values land in the last bucket.
TEST(LatenessHistogram, EdgesAndBucketMapping) {
  IsolateLateness h;
  h.record_single_writer(-5);
  h.record_single_writer(3);
  h.record_single_writer(std::int64_t{1} << 50);
  EXPECT_EQ(h.percentile(33), 0u);  // nearest rank: ceil(0.33 × 3) = 1
  EXPECT_EQ(h.percentile(50), 3u);
  EXPECT_EQ(h.max(), std::uint64_t{1} << 50);
  for (std::uint64_t v : {16ull, 17ull, 100ull, 12345ull, 1ull << 30}) {
    const int b = RuntimeLateness::bucket_of(v);
    EXPECT_LE(RuntimeLateness::bucket_floor(b), v);
    EXPECT_GT(RuntimeLateness::bucket_floor(b + 1), v);
  }
}

}  // namespace
}  // namespace evh::detail
