#include "crosscheck.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include "stats.h"

namespace evh::bench {
namespace {

// One figure both programs measure. `n` selects the harness's W1 batch size (0: any).
struct MetricLink {
  std::string_view harness_w;
  double n;
  std::string_view harness_metric;
  std::string_view workload;
  std::string_view metric;
  double scale;  // evh-bench value = harness value * scale (per_n: divided by n too)
  bool per_n = false;
};

constexpr double kMiB = 1024.0 * 1024.0;

// The harness's W1 at N = 1e6 and 1e5 is evh-bench's timer_batch and timer_batch_100k (the same
// deadlines: T0 + lead + U[0, 1 s]); W2 is timer_churn; W3's ping-pong is thread_pingpong_block
// (a blocking wait on both sides) and its flood is port_flood.
constexpr MetricLink kLinks[] = {
    {"W1", 1e6, "create_ns_per_timer", "timer_batch", "arm_ns_per_timer", 1},
    {"W1", 1e6, "cpu_ms", "timer_batch", "cpu_ms", 1},
    {"W1", 1e6, "wall_ms", "timer_batch", "wall_ms", 1},
    {"W1", 1e6, "overrun_ms", "timer_batch", "overrun_ms", 1},
    {"W1", 1e6, "late_p50_us", "timer_batch", "late_p50_us", 1},
    {"W1", 1e6, "late_p99_us", "timer_batch", "late_p99_us", 1},
    {"W1", 1e6, "late_p999_us", "timer_batch", "late_p999_us", 1},
    {"W1", 1e6, "late_max_us", "timer_batch", "late_max_us", 1},
    {"W1", 1e6, "early_n", "timer_batch", "early_fires", 1},
    {"W1", 1e6, "rss_delta_mb", "timer_batch", "bytes_per_timer", kMiB, true},
    {"W1", 1e5, "create_ns_per_timer", "timer_batch_100k", "arm_ns_per_timer", 1},
    {"W1", 1e5, "cpu_ms", "timer_batch_100k", "cpu_ms", 1},
    {"W1", 1e5, "wall_ms", "timer_batch_100k", "wall_ms", 1},
    {"W1", 1e5, "overrun_ms", "timer_batch_100k", "overrun_ms", 1},
    {"W1", 1e5, "late_p50_us", "timer_batch_100k", "late_p50_us", 1},
    {"W1", 1e5, "late_p99_us", "timer_batch_100k", "late_p99_us", 1},
    {"W1", 1e5, "late_p999_us", "timer_batch_100k", "late_p999_us", 1},
    {"W1", 1e5, "late_max_us", "timer_batch_100k", "late_max_us", 1},
    {"W1", 1e5, "early_n", "timer_batch_100k", "early_fires", 1},
    {"W1", 1e5, "rss_delta_mb", "timer_batch_100k", "bytes_per_timer", kMiB, true},
    {"W2", 0, "bulk_start_ns", "timer_churn", "bulk_start_ns", 1},
    {"W2", 0, "bulk_cancel_ns", "timer_churn", "bulk_cancel_ns", 1},
    {"W2", 0, "bulk_pair_ns", "timer_churn", "bulk_pair_ns", 1},
    {"W2", 0, "pair_ns", "timer_churn", "immediate_pair_ns", 1},
    {"W2", 0, "cpu_ms", "timer_churn", "cpu_ms", 1},
    {"W3", 0, "rtt_p50_us", "thread_pingpong_block", "rtt_p50_us", 1},
    {"W3", 0, "rtt_p99_us", "thread_pingpong_block", "rtt_p99_us", 1},
    {"W3", 0, "rtt_p999_us", "thread_pingpong_block", "rtt_p999_us", 1},
    {"W3", 0, "flood_mmsg_s", "port_flood", "msgs_per_s", 1e6},
    {"W3", 0, "flood_wakeups", "port_flood", "consumer_wakeups", 1},
};

// The harness's variant that is evh-bench's impl, per harness workload.
std::optional<std::string_view> bench_impl(std::string_view w, std::string_view harness_impl) {
  if (harness_impl == "libuv" || harness_impl == "asio" || harness_impl == "libevent") {
    return harness_impl;
  }
  if ((w == "W1" && harness_impl == "raw-timerfd") || (w == "W2" && harness_impl == "raw-heap") ||
      (w == "W3" && harness_impl == "raw-eventfd")) {
    return std::string_view("raw");
  }
  return std::nullopt;
}

std::string format(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
  } else if (a >= 100 || v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

}  // namespace

std::vector<Json> parse_harness_lines(std::string_view text) {
  std::vector<Json> lines;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    const std::size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] != '{') continue;
    lines.push_back(parse_json(line));
  }
  return lines;
}

BenchRun merge_runs(const std::vector<BenchRun>& runs) {
  using Key = std::tuple<std::string, std::string, std::string>;
  std::map<Key, std::vector<double>> medians;
  std::vector<BenchRow> first_seen;
  for (const BenchRun& run : runs) {
    for (const BenchRow& r : run.rows) {
      auto [slot, inserted] = medians.try_emplace(Key{r.workload, r.impl, r.metric});
      if (inserted) first_seen.push_back(r);
      slot->second.push_back(r.median);
    }
  }
  BenchRun out;
  if (!runs.empty()) out.size = runs.front().size;
  for (BenchRow r : first_seen) {
    const std::vector<double>& v = medians[Key{r.workload, r.impl, r.metric}];
    const Summary s = summarize(v);
    r.median = s.median;
    r.min = s.min;
    r.max = s.max;
    r.reps = static_cast<int>(v.size());
    out.rows.push_back(std::move(r));
  }
  return out;
}

std::vector<CrossRow> crosscheck(const std::vector<Json>& harness, const BenchRun& bench,
                                 double tolerance) {
  // The harness's repetitions of each (link, evh-bench impl), in its line order.
  using Key = std::pair<std::size_t, std::string>;  // link index, evh-bench impl
  std::map<Key, std::vector<double>> values;
  std::vector<Key> order;
  for (const Json& line : harness) {
    if (!line.is_object() || !line.contains("w") || !line.contains("impl")) continue;
    const std::string w = as<std::string>(line["w"], "w");
    const std::string harness_impl = as<std::string>(line["impl"], "impl");
    // A view into `harness_impl` or a literal: used within this iteration only.
    const std::optional<std::string_view> impl = bench_impl(w, harness_impl);
    if (!impl) continue;
    const double n = line.contains("n") && line["n"].is_number() ? line["n"].get<double>() : 0;
    for (std::size_t k = 0; k < std::size(kLinks); ++k) {
      const MetricLink& link = kLinks[k];
      if (link.harness_w != w || (link.n != 0 && link.n != n)) continue;
      const auto it = line.find(link.harness_metric);
      if (it == line.end() || !it->is_number()) continue;  // null: not measured
      double v = it->get<double>() * link.scale;
      if (link.per_n) v /= n;
      const Key key{k, std::string(*impl)};
      auto [slot, inserted] = values.try_emplace(key);
      if (inserted) order.push_back(key);
      slot->second.push_back(v);
    }
  }
  std::vector<CrossRow> rows;
  std::stable_sort(order.begin(), order.end(),
                   [](const Key& a, const Key& b) { return a.first < b.first; });
  for (const Key& key : order) {
    const MetricLink& link = kLinks[key.first];
    const auto mine = std::find_if(bench.rows.begin(), bench.rows.end(), [&](const BenchRow& r) {
      return r.workload == link.workload && r.metric == link.metric && r.impl == key.second;
    });
    if (mine == bench.rows.end() || !std::isfinite(mine->median)) continue;
    CrossRow row;
    row.workload = link.workload;
    row.impl = key.second;
    row.metric = link.metric;
    std::ostringstream name;
    name << link.harness_w;
    if (link.n != 0) name << " n=" << static_cast<long long>(link.n);
    name << " " << link.harness_metric;
    row.harness = name.str();
    const Summary theirs = summarize(values[key]);
    row.harness_median = theirs.median;
    row.harness_min = theirs.min;
    row.harness_max = theirs.max;
    row.bench_median = mine->median;
    row.bench_min = std::isfinite(mine->min) ? mine->min : mine->median;
    row.bench_max = std::isfinite(mine->max) ? mine->max : mine->median;
    row.ranges_overlap = row.bench_min <= row.harness_max && row.harness_min <= row.bench_max;
    if (row.harness_median == 0 && row.bench_median == 0) {
      row.ratio = 1;
    } else if (row.harness_median == 0) {
      row.ratio = std::copysign(INFINITY, row.bench_median);
    } else {
      row.ratio = row.bench_median / row.harness_median;
    }
    row.within = std::isfinite(row.ratio) && std::fabs(row.ratio - 1) <= tolerance + 1e-12;
    rows.push_back(std::move(row));
  }
  return rows;
}

void write_crosscheck(std::ostream& out, const std::vector<CrossRow>& rows, double tolerance) {
  out << "| workload | metric | impl | harness (figure) | harness | harness range | evh-bench | "
         "evh-bench range | evh-bench / harness | |\n";
  out << "|---|---|---|---|---:|---:|---:|---:|---:|---|\n";
  int beyond = 0;
  int beyond_overlapping = 0;
  for (const CrossRow& r : rows) {
    char ratio[32];
    if (std::isfinite(r.ratio)) {
      std::snprintf(ratio, sizeof ratio, "%.2f", r.ratio);
    } else {
      std::snprintf(ratio, sizeof ratio, "%s", r.ratio > 0 ? "inf" : "-inf");
    }
    if (!r.within) {
      ++beyond;
      if (r.ranges_overlap) ++beyond_overlapping;
    }
    const char* verdict = r.within           ? "ok"
                          : r.ranges_overlap ? "**beyond**, ranges overlap"
                                             : "**beyond**";
    out << "| " << r.workload << " | " << r.metric << " | " << r.impl << " | " << r.harness << " | "
        << format(r.harness_median) << " | " << format(r.harness_min) << "–"
        << format(r.harness_max) << " | " << format(r.bench_median) << " | " << format(r.bench_min)
        << "–" << format(r.bench_max) << " | " << ratio << " | " << verdict << " |\n";
  }
  out << "\n"
      << rows.size() << " figures compared, " << rows.size() - beyond << " within "
      << std::lround(tolerance * 100) << "%, " << beyond << " beyond (" << beyond_overlapping
      << " of them with overlapping ranges: the two sides' repetitions share values)\n";
}

}  // namespace evh::bench
