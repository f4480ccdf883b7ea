// bench/suite.h — runs the cells of a benchmark run and gathers their repetitions.
//
// A cell is one repetition of one impl of one workload, or one syscall count (syscalls.h).
// Repetitions are interleaved — rep 1 of every impl of a workload, then rep 2, … — with the impl
// order rotated from one rep to the next, so that machine drift and "who ran first" hit every
// impl alike. Single-threaded workloads run pinned to one CPU. Progress goes to stderr, one line
// per cell with an estimate of the time left. A cell that throws is reported and counted as
// failed; the run goes on. A cell that hangs past a generous limit ends the process (status 3)
// with a message naming it, rather than hanging a CI job without a word.
//
// Threads: run_suite() is called from one thread; it starts a watchdog thread of its own.
#pragma once

#include <string>
#include <vector>

#include "stats.h"
#include "workloads.h"

namespace evh::bench {

struct SuitePlan {
  std::vector<const Workload*> workloads;  // in table order
  std::vector<std::string> impls;          // the impls to run, in column order
  Size size = Size::standard;
  int reps = 3;
  bool count_syscalls = true;  // false: no syscall-count child runs (--no-syscalls)
};

// One row of the results: every repetition of one metric of one impl of one workload.
struct ResultRow {
  std::string workload;
  std::string impl;
  std::string metric;
  std::string unit;
  Summary summary;
};

// A latency curve, point-wise median over the repetitions.
struct CurveRow {
  std::string workload;
  std::string impl;
  std::string curve;
  std::vector<CurvePoint> points;
};

// An impl asked for (or part of a default run) that this run leaves out, and why: not built, or
// a forced backend the kernel or the operator's EVH_BACKEND rules out.
struct SkippedImpl {
  std::string impl;
  std::string reason;
};

struct SuiteResult {
  std::vector<std::string> impls;  // the columns: impls that produced at least one row
  std::vector<ResultRow> rows;     // grouped by workload, then metric, then impl
  std::vector<CurveRow> curves;
  std::vector<SkippedImpl> skipped_impls;  // asked for but left out (set by the caller)
  // The kernel backends evh's event handlers reported in this run's cells (RunResult::backend),
  // in order of first appearance; empty when no evh cell started one.
  std::vector<std::string> backends;
  int failed_cells = 0;
  std::string size = "standard";  // "quick", "standard" or "full": the sizes the cells ran at
};

SuiteResult run_suite(const SuitePlan& plan);

}  // namespace evh::bench
