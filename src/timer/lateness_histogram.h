// LatenessHistogram: counts of (fire time − deadline) in log-linear buckets, with percentiles.
//
// Bucket b < 2^SubBits holds the value b ns exactly; above that, each power of two is split into
// 2^SubBits equal sub-buckets (relative error ≤ 2^-SubBits); values of 2^MaxExp ns and more land
// in the last bucket. The runtime keeps a fine one (1/16, 64-bit counts: 4.7 KB); each isolate
// that fires timers a coarse one (1/8, 32-bit counts: 1.1 KB). Percentiles are read by a scan of
// the fixed bucket array — O(1) in the number of timers. Counts are relaxed atomics so that other
// threads may read while one thread records.
#pragma once

#include <evh/timer.h>

#include <array>
#include <atomic>
#include <cstdint>

namespace evh::detail {

template <int SubBits, int MaxExp, class Count>
class LatenessHistogram {
 public:
  static constexpr int kSubBits = SubBits;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kMaxExp = MaxExp;
  static constexpr int kBuckets = kSub + kSub * (kMaxExp - kSubBits);

  static int bucket_of(std::uint64_t v) noexcept {
    if (v < kSub) return static_cast<int>(v);
    const int msb = 63 - __builtin_clzll(v);
    if (msb >= kMaxExp) return kBuckets - 1;
    const int sub = static_cast<int>((v >> (msb - kSubBits)) & (kSub - 1));
    return kSub + (msb - kSubBits) * kSub + sub;
  }
  // The smallest value that falls in bucket b.
  static std::uint64_t bucket_floor(int b) noexcept {
    if (b < kSub) return static_cast<std::uint64_t>(b);
    const int msb = (b - kSub) / kSub + kSubBits;
    const std::uint64_t sub = static_cast<std::uint64_t>((b - kSub) % kSub);
    return (std::uint64_t{1} << msb) | (sub << (msb - kSubBits));
  }

  void record(std::int64_t lateness_ns) noexcept {
    const std::uint64_t v = lateness_ns > 0 ? static_cast<std::uint64_t>(lateness_ns) : 0;
    counts_[bucket_of(v)].fetch_add(1, std::memory_order_relaxed);
    std::uint64_t m = max_.load(std::memory_order_relaxed);
    while (v > m && !max_.compare_exchange_weak(m, v, std::memory_order_relaxed)) {
    }
  }
  // Single-writer variant (no read-modify-write): for a histogram one thread records into.
  void record_single_writer(std::int64_t lateness_ns) noexcept {
    const std::uint64_t v = lateness_ns > 0 ? static_cast<std::uint64_t>(lateness_ns) : 0;
    std::atomic<Count>& c = counts_[bucket_of(v)];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
  }

  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
    return n;
  }
  std::uint64_t max() const noexcept { return max_.load(std::memory_order_relaxed); }
  // The value at percentile p (0 < p ≤ 100), as the floor of its bucket (nearest rank); 0 when
  // empty.
  std::uint64_t percentile(double p) const noexcept {
    const std::uint64_t n = count();
    if (n == 0) return 0;
    auto rank = static_cast<std::uint64_t>(p / 100.0 * static_cast<double>(n) + 0.999999);
    if (rank == 0) rank = 1;
    if (rank > n) rank = n;
    std::uint64_t seen = 0;
    for (int b = 0; b < kBuckets; ++b) {
      seen += counts_[b].load(std::memory_order_relaxed);
      if (seen >= rank) return bucket_floor(b);
    }
    return max();
  }

 private:
  std::array<std::atomic<Count>, kBuckets> counts_{};
  std::atomic<std::uint64_t> max_{0};
};

// Copies a histogram's percentiles into the lateness fields of `stats`.
template <class Histogram>
void fill_lateness(TimerStats& stats, const Histogram& h) noexcept {
  stats.late_p50_ns = h.percentile(50);
  stats.late_p99_ns = h.percentile(99);
  stats.late_p999_ns = h.percentile(99.9);
  stats.late_max_ns = h.max();
}

using RuntimeLateness = LatenessHistogram<4, 40, std::uint64_t>;
using IsolateLateness = LatenessHistogram<3, 36, std::uint32_t>;

}  // namespace evh::detail
