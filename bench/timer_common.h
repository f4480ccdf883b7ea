// bench/timer_common.h — what every impl of the timer workloads shares: the fixed-seed delays,
// the outcome of a batch and of a churn run, and how those become metrics. Every impl reports
// through these, so that a metric means the same for evh, raw and each peer.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "measure.h"
#include "workloads.h"

namespace evh::bench {

constexpr std::uint64_t kTimerSeed = 20261121;

struct BatchSize {
  std::uint64_t count;
  std::int64_t lead_ns;    // every deadline is at least this far ahead
  std::int64_t spread_ns;  // plus U[0, spread)
};

// The same delays for every impl and repetition.
inline std::vector<std::int64_t> make_delays(const BatchSize& b) {
  std::mt19937_64 rng(kTimerSeed);
  std::vector<std::int64_t> d(b.count);
  for (auto& x : d) x = b.lead_ns + static_cast<std::int64_t>(rng() % b.spread_ns);
  return d;
}

// What every impl reports for a batch, from the lateness samples it took in its callbacks.
struct BatchOutcome {
  std::vector<std::int64_t> late_ns;
  std::int64_t last_fire_ns = 0;
  std::int64_t last_deadline_ns = 0;
  std::uint64_t early = 0;
  double arm_ns_total = 0;
  double cpu_ms = 0;
  double wall_ms = 0;
  double bytes = 0;
  std::uint64_t wakeups = 0;
  bool wakeups_known = true;  // false: the impl cannot observe its loop's wakeups
};

// The measured phase of a timer batch, the same for every impl: resident memory, CPU and the
// wall clock are taken at construction (after a heap trim, so earlier repetitions' freed memory
// does not hide this one's growth); `armed` records the arming time and the resident growth,
// `done` the wall and CPU time of the whole phase.
class BatchMeter {
 public:
  BatchMeter() {
    trim_heap();
    rss0_ = resident_bytes();
    cpu0_ = process_cpu_ms();
    wall0_ = now_ns();
  }
  void armed(BatchOutcome& o) const {
    o.arm_ns_total = static_cast<double>(now_ns() - wall0_);
    memory(o);
  }
  void memory(BatchOutcome& o) const { o.bytes = static_cast<double>(resident_bytes() - rss0_); }
  void done(BatchOutcome& o) const {
    o.wall_ms = static_cast<double>(now_ns() - wall0_) / 1e6;
    o.cpu_ms = process_cpu_ms() - cpu0_;
  }

 private:
  std::int64_t rss0_ = 0;
  double cpu0_ = 0;
  std::int64_t wall0_ = 0;
};

inline RunResult batch_metrics(BatchOutcome& o, std::uint64_t n) {
  if (o.late_ns.size() != n) {
    throw BenchError("fired " + std::to_string(o.late_ns.size()) + " of " + std::to_string(n));
  }
  RunResult out;
  const auto per = [n](double v) { return v / static_cast<double>(n); };
  out.metrics.push_back({"arm_ns_per_timer", "ns", per(o.arm_ns_total)});
  out.metrics.push_back({"cpu_ms", "ms", o.cpu_ms});
  out.metrics.push_back({"wall_ms", "ms", o.wall_ms});
  out.metrics.push_back(
      {"overrun_ms", "ms", static_cast<double>(o.last_fire_ns - o.last_deadline_ns) / 1e6});
  add_latency_metrics(out, "late", "", o.late_ns,
                      {{50, "p50"}, {99, "p99"}, {99.9, "p999"}, {100, "max"}});
  out.metrics.push_back({"early_fires", "count", static_cast<double>(o.early)});
  out.metrics.push_back({"bytes_per_timer", "bytes", per(o.bytes)});
  if (o.wakeups_known) {
    out.metrics.push_back({"wakeups", "count", static_cast<double>(o.wakeups)});
  }
  return out;
}

// Records one fire in `o`: lateness on CLOCK_MONOTONIC, taken in the callback.
inline void record_fire(BatchOutcome& o, std::int64_t deadline_ns) {
  const std::int64_t now = now_ns();
  const std::int64_t late = now - deadline_ns;
  if (late < 0) ++o.early;
  o.late_ns.push_back(late);
  if (deadline_ns > o.last_deadline_ns) o.last_deadline_ns = deadline_ns;
  o.last_fire_ns = now;
}

struct ChurnTimes {
  double start_ns = 0;
  double cancel_ns = 0;
  double immediate_ns = 0;
};

// Which phases of timer_churn a run does (the syscall probe runs only the immediate one).
struct ChurnPhases {
  bool bulk = true;
  bool immediate = true;
};

inline RunResult churn_metrics(const ChurnTimes& t, std::uint64_t n) {
  RunResult out;
  const auto per = [n](double v) { return v / static_cast<double>(n); };
  out.metrics.push_back({"bulk_start_ns", "ns", per(t.start_ns)});
  out.metrics.push_back({"bulk_cancel_ns", "ns", per(t.cancel_ns)});
  out.metrics.push_back({"bulk_pair_ns", "ns", per(t.start_ns + t.cancel_ns)});
  out.metrics.push_back({"immediate_pair_ns", "ns", per(t.immediate_ns)});
  return out;
}

}  // namespace evh::bench
