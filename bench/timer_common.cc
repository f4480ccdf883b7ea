#include "timer_common.h"

#include <algorithm>

namespace evh::bench {

RunResult batch_metrics(const BatchBook& book, const BatchOutcome& o) {
  const std::uint64_t n = book.count();
  std::vector<std::int64_t> late;
  late.reserve(n);
  std::uint64_t early = 0;
  std::uint64_t missing = 0;
  std::int64_t last_fire = 0;
  std::int64_t last_deadline = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::int64_t fire = book.fires()[i];
    const std::int64_t deadline = book.deadlines()[i];
    if (fire == 0) {
      ++missing;
      continue;
    }
    late.push_back(fire - deadline);
    if (fire < deadline) ++early;
    last_fire = std::max(last_fire, fire);
    last_deadline = std::max(last_deadline, deadline);
  }
  if (missing > 0) {
    throw BenchError(std::to_string(missing) + " of " + std::to_string(n) + " timers never fired");
  }
  RunResult out;
  const auto per = [n](double v) { return v / static_cast<double>(n); };
  out.metrics.push_back({"arm_ns_per_timer", "ns", per(book.arm_ns_total())});
  out.metrics.push_back({"cpu_ms", "ms", o.cpu_ms});
  out.metrics.push_back({"wall_ms", "ms", static_cast<double>(o.end_ns - book.t0()) / 1e6});
  out.metrics.push_back({"overrun_ms", "ms", static_cast<double>(last_fire - last_deadline) / 1e6});
  add_latency_metrics(out, "late", "", late,
                      {{50, "p50"}, {99, "p99"}, {99.9, "p999"}, {100, "max"}});
  out.metrics.push_back({"early_fires", "count", static_cast<double>(early)});
  out.metrics.push_back({"bytes_per_timer", "bytes", per(o.bytes)});
  if (o.wakeups_known) {
    out.metrics.push_back({"wakeups", "count", static_cast<double>(o.wakeups)});
  }
  out.backend = o.backend;
  return out;
}

RunResult churn_metrics(const ChurnTimes& t, std::uint64_t n) {
  RunResult out;
  const auto per = [n](double v) { return v / static_cast<double>(n); };
  out.metrics.push_back({"bulk_start_ns", "ns", per(t.start_ns)});
  out.metrics.push_back({"bulk_cancel_ns", "ns", per(t.cancel_ns)});
  out.metrics.push_back({"bulk_pair_ns", "ns", per(t.start_ns + t.cancel_ns)});
  out.metrics.push_back({"immediate_pair_ns", "ns", per(t.immediate_ns)});
  out.metrics.push_back({"cpu_ms", "ms", t.cpu_ms});
  out.backend = t.backend;
  return out;
}

}  // namespace evh::bench
