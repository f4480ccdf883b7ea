// bench/report.h — the outputs of a run: the table on stdout, GitHub markdown, and the JSON that
// other tools parse (BENCHMARKS.md, "JSON": schema 1 — extend it, never break it).
//
// Table and markdown show one line per (workload, metric) with a column per impl holding
// "median (min–max)", a '*' on the best impl of the line (lower is better unless the metric ends
// in "_per_s"), and "evh/best peer": evh's median divided by the best peer's median (evh's own
// variants evh-exact, evh-epoll and evh-uring are not peers).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "suite.h"

namespace evh::bench {

struct MachineInfo {
  unsigned nproc = 0;    // CPUs this process may run on, as nproc(1) counts them
  std::string kernel;    // uname: system, release, machine
  std::string cpu;       // the first "model name" of /proc/cpuinfo
  std::string compiler;  // the compiler that built evh-bench
  // The kernel backend(s) evh's event handlers reported in the run, comma-separated ("epoll"),
  // or "none" when no evh cell started one (e.g. a run of the peers only).
  std::string backend;
};

// `backends`: SuiteResult::backends of the run being reported.
MachineInfo machine_info(const std::vector<std::string>& backends);

void write_table(std::ostream& out, const SuiteResult& result);
void write_markdown(std::ostream& out, const SuiteResult& result);
void write_json(std::ostream& out, const SuiteResult& result, const MachineInfo& machine);

}  // namespace evh::bench
