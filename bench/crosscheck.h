// bench/crosscheck.h — evh-bench's peer rows against the independent peer harness
// (../shared/peer-harness, tools/bench-crosscheck): for every metric both measure, the harness's
// median, evh-bench's median and their ratio.
//
// The harness writes one JSON object per line and repetition (raw.jsonl: "w", "impl", "n", and
// one member per figure); evh-bench writes its results document (report.h). The mapping between
// the two — which harness workload, implementation and figure is which evh-bench workload, impl
// and metric — lives in crosscheck.cc, one line per metric.
//
// Threads: pure functions.
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "bench_json.h"
#include "perf_compare.h"

namespace evh::bench {

// The band within which a peer row of evh-bench agrees with the harness (issue 12: 15%).
constexpr double kCrosscheckTolerance = 0.15;

struct CrossRow {
  std::string workload;  // evh-bench's names
  std::string impl;
  std::string metric;
  std::string harness;  // the harness's "W1 n=1000000 libuv create_ns_per_timer"
  double harness_median = 0;
  double harness_min = 0;  // over the harness's repetitions
  double harness_max = 0;
  double bench_median = 0;
  double bench_min = 0;  // evh-bench's row: over its repetitions (or merged runs' medians)
  double bench_max = 0;
  double ratio = 0;  // evh-bench / harness; 1 when both are 0
  bool within = false;
  // The two sides' ranges share a value: a gap between medians that each side's own
  // run-to-run spread covers, which more rounds may close. Beyond 15% either way; the table
  // says which.
  bool ranges_overlap = false;
};

// Parses the harness's raw.jsonl (blank and non-object lines are skipped). Throws JsonError.
std::vector<Json> parse_harness_lines(std::string_view text);

// One run from several (the cells of an interleaved cross-check, each its own evh-bench
// process): per (workload, impl, metric), the median of the runs' medians, in first-seen order.
BenchRun merge_runs(const std::vector<BenchRun>& runs);

// Every metric both runs have, in the mapping's order. Metrics one side lacks are left out.
std::vector<CrossRow> crosscheck(const std::vector<Json>& harness, const BenchRun& bench,
                                 double tolerance = kCrosscheckTolerance);

// A GitHub markdown table of the rows and a summary line.
void write_crosscheck(std::ostream& out, const std::vector<CrossRow>& rows, double tolerance);

}  // namespace evh::bench
