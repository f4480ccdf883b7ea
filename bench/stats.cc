#include "stats.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace evh::bench {
namespace {

template <class T>
T nearest_rank(std::span<const T> sorted, double pct) {
  assert(!sorted.empty());
  const auto n = static_cast<double>(sorted.size());
  // The epsilon keeps 99.9% of 100,000 at rank 99,900: 0.999 * 1e5 is a hair above the integer
  // in binary floating point, and ceil() would otherwise skip to the next sample.
  double rank = std::ceil(pct / 100.0 * n - 1e-9);
  rank = std::clamp(rank, 1.0, n);
  return sorted[static_cast<std::size_t>(rank) - 1];
}

}  // namespace

Summary summarize(std::vector<double> values) {
  assert(!values.empty());
  std::sort(values.begin(), values.end());
  Summary s;
  s.count = values.size();
  s.min = values.front();
  s.max = values.back();
  const std::size_t mid = values.size() / 2;
  s.median = values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  return s;
}

std::int64_t percentile_of_sorted(std::span<const std::int64_t> sorted, double pct) {
  return nearest_rank(sorted, pct);
}

double percentile_of_sorted(std::span<const double> sorted, double pct) {
  return nearest_rank(sorted, pct);
}

std::optional<double> marginal_per_unit(std::uint64_t small_count, std::uint64_t small_units,
                                        std::uint64_t large_count, std::uint64_t large_units) {
  assert(small_units < large_units);
  if (large_count < small_count) {
    const double shortfall = static_cast<double>(small_count - large_count);
    if (shortfall <= kFixedCostJitter * static_cast<double>(small_count)) return 0.0;
    return std::nullopt;
  }
  return static_cast<double>(large_count - small_count) /
         static_cast<double>(large_units - small_units);
}

bool higher_is_better(std::string_view metric) {
  constexpr std::string_view kSuffix = "_per_s";
  return metric.size() >= kSuffix.size() &&
         metric.substr(metric.size() - kSuffix.size()) == kSuffix;
}

}  // namespace evh::bench
