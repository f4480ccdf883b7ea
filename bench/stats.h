// bench/stats.h — summaries of repetitions and percentiles of latency samples.
//
// Percentiles use the nearest-rank definition on the full sample vector: the p-th percentile is
// the smallest sample such that at least p% of the samples are less than or equal to it. It
// never interpolates, so every reported latency is one that was actually observed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace evh::bench {

// Median, min and max of the repetitions of one metric.
struct Summary {
  double median = 0;
  double min = 0;
  double max = 0;
  std::size_t count = 0;
};

// Precondition: `values` is not empty. The median of an even count is the mean of the middle two.
Summary summarize(std::vector<double> values);

// Nearest-rank percentile, `pct` in (0, 100]. Precondition: `sorted` is sorted ascending and not
// empty.
std::int64_t percentile_of_sorted(std::span<const std::int64_t> sorted, double pct);
double percentile_of_sorted(std::span<const double> sorted, double pct);

// The marginal count per unit of work from two runs of `small_units` and `large_units` units
// (small < large) that counted `small_count` and `large_count` events: what the fixed costs of a
// run (start-up, warm-up, shutdown) add drops out of the difference. The fixed costs jitter by a
// few events between runs, so a larger run that counts fewer, by at most kFixedCostJitter of the
// smaller run's total, is a real 0 (nothing scales with the work); one that counts fewer by more
// is no measurement at all (nullopt) — never reported as 0.
inline constexpr double kFixedCostJitter = 0.05;
std::optional<double> marginal_per_unit(std::uint64_t small_count, std::uint64_t small_units,
                                        std::uint64_t large_count, std::uint64_t large_units);

// Whether a larger value of this metric is the better one (BENCHMARKS.md: names ending in
// "_per_s"); every other metric is a cost.
bool higher_is_better(std::string_view metric);

}  // namespace evh::bench
