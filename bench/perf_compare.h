// bench/perf_compare.h — the perf-CI comparison (tools/perf-ci): a run's results against a
// committed baseline, judged only through ratios measured within one run.
//
// For every (workload, metric) and every evh impl ("evh", "evh-exact", …) the comparison takes
// evh's median divided by each reference impl's median (raw and the peers) in the baseline and
// in the current run. A uniformly faster or slower machine moves numerator and denominator
// alike, so the ratios stay put. The worsening factor of a reference is current ratio /
// baseline ratio (inverted for metrics where higher is better). A cell's factor is the median
// of those over the references present in both runs — one peer with a lucky run moves it
// little — or evh's own absolute change when that is smaller: references that all got faster
// because the machine got busier (blocking loops wake faster on a busy VM) cannot fail the build
// on their own, and a uniformly slower machine changes no ratio. A cell regresses
// when its factor exceeds the metric's tolerance. A ratio to zero says nothing, so a cell whose
// evh figure was 0 in the baseline is judged on its own instead: it regresses when it moved from
// 0 past the metric's from-zero limit (an early fire where there was none is a regression, not
// a skipped cell). Cells with a missing figure, or a zero reference, are skipped and listed.
//
// Baseline file: {"schema": 1, "kind": "evh-perf-baseline", "baselines": {"quick": RUN,
// "standard": RUN}}, each RUN an evh-bench JSON document (report.h); a run is compared with the
// baseline of its own size.
#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "bench_json.h"

namespace evh::bench {

struct BenchRow {
  std::string workload;
  std::string impl;
  std::string metric;
  std::string unit;
  double median = 0;
  double min = 0;
  double max = 0;
  int reps = 0;
};

struct BenchRun {
  std::string size;  // "quick", "standard" or "full"
  std::vector<BenchRow> rows;
};

// Reads an evh-bench JSON document (schema 1). Throws JsonError on another shape.
BenchRun bench_run_from_json(const Json& doc);

// The largest worsening factor a metric may show before it fails; 0 = not compared. Generous
// for latencies (a noisy, shared machine moves a tail by 2–3x between runs), tighter for
// throughput, CPU, per-operation costs and memory.
using TolerancePolicy = std::function<double(std::string_view workload, std::string_view metric)>;
double default_tolerance(std::string_view workload, std::string_view metric);

// For a cost whose evh figure was 0 in the baseline: the largest current figure that still
// passes, or nullopt when such a cell is not judged (counts that follow the scheduler's mood).
using FromZeroPolicy =
    std::function<std::optional<double>(std::string_view workload, std::string_view metric)>;
std::optional<double> default_from_zero(std::string_view workload, std::string_view metric);

struct CellVerdict {
  std::string workload;
  std::string impl;  // the evh impl
  std::string metric;
  // The median reference, "evh (absolute)": evh's own figure, or "from 0": a figure that was 0 in
  // the baseline (then current_ratio is the current figure and tolerance its from-zero limit).
  std::string reference;
  double baseline_ratio = 0;
  double current_ratio = 0;
  double factor = 0;  // > 1: evh got worse against every reference by at least this much
  double tolerance = 0;
  bool regressed = false;
};

struct Comparison {
  std::vector<CellVerdict> cells;    // compared cells, in baseline order
  std::vector<std::string> skipped;  // "workload/impl/metric: why"
  bool passed() const;
  int regressions() const;
};

Comparison compare_runs(const BenchRun& baseline, const BenchRun& current,
                        const TolerancePolicy& tolerance = default_tolerance,
                        const FromZeroPolicy& from_zero = default_from_zero);

// A regression must reproduce: a cell of `first` stays regressed only if it regressed in every
// re-run that measured it (tools/perf-ci re-runs the workloads that regressed once).
Comparison confirm(const Comparison& first, const std::vector<Comparison>& reruns);

// A report for people: every regression with how far it moved, then a summary line.
void write_comparison(std::ostream& out, const Comparison& c, bool verbose);

// The baseline document: an empty one, the run of one size in it, and the document with the
// run of `size` replaced by `run_doc`.
Json empty_baseline();
std::optional<BenchRun> baseline_for(const Json& baseline, std::string_view size);
void set_baseline(Json& baseline, const std::string& size, Json run_doc);

}  // namespace evh::bench
