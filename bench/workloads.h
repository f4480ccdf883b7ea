// bench/workloads.h — the registry of evh-bench workloads and the values a run produces.
//
// A workload is one row group of the benchmark table (BENCHMARKS.md names them). It knows which
// impls it supports and runs one repetition of one impl at a time; the suite (suite.h) decides
// the order, the repetitions and the pinning. A run either returns its metrics or throws
// `BenchError` (or any std::exception) — a failed cell, never a wrong number.
//
// Threads: `run` is called from the suite's thread, one cell at a time; a workload may start any
// threads it needs but must join them (or shut its Runtime down) before returning.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace evh::bench {

// How much work a cell does. `standard` (no flag) and `full` are the sizes of BENCHMARKS.md;
// they are separate so that a workload can one day make its default smaller than the contract's.
enum class Size { quick, standard, full };

// Pinned workloads run on one CPU so that the scheduler cannot move them mid-measurement; the
// others need their threads on different CPUs to mean anything.
enum class Threading { single, multi };

struct Metric {
  std::string name;  // lower is better unless it ends in "_per_s"
  std::string unit;  // "us", "ns", "msgs/s", "bytes", "count" or "ms"
  double value = 0;
};

// One latency distribution, kept for the plot: microseconds at fixed percentiles.
struct CurvePoint {
  double percentile = 0;
  double micros = 0;
};
struct Curve {
  std::string name;  // e.g. "rtt", "probe_rtt_x4"
  std::vector<CurvePoint> points;
};

struct RunResult {
  std::vector<Metric> metrics;
  std::vector<Curve> curves;
  // The kernel backend of the evh event handler the run started ("epoll"), empty when it started
  // none or the impl is not evh: what the JSON's machine.backend reports.
  std::string backend;
};

// A cell that could not produce honest numbers (a timeout, a lost message, an API error).
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Syscalls are never counted in a timed run: the suite re-executes the binary under strace and
// calls `run` there with an explicit number of work units (round trips, messages).
//
// `metric` counts every system call of the process. A workload whose own code makes system
// calls per unit (fd_fanout's writer writes, its handler reads) can also say how many it made:
// `run_counting_own` runs instead of `run` and returns that count, and `loop_metric` (e.g.
// "loop_syscalls_per_event") reports the rest — the event loop's and the runtime's own calls.
struct SyscallProbe {
  std::string metric;                 // e.g. "syscalls_per_rtt"
  std::uint64_t (*units)(Size size);  // work units for one child run at this size
  void (*run)(std::string_view impl, std::uint64_t units);
  std::string loop_metric = {};  // empty: the workload does not count its own calls
  std::uint64_t (*run_counting_own)(std::string_view impl, std::uint64_t units) = nullptr;
};

struct Workload {
  std::string name;
  std::vector<std::string> impls;
  Threading threading = Threading::multi;
  RunResult (*run)(std::string_view impl, Size size) = nullptr;
  std::optional<SyscallProbe> syscalls;
};

// Every workload of this build, in table order.
const std::vector<Workload>& all_workloads();
// Null when there is no workload of that name.
const Workload* find_workload(std::string_view name);

// Each *_bench.cc file contributes its workloads through one of these.
std::vector<Workload> messaging_workloads();   // messaging_bench.cc
std::vector<Workload> scheduling_workloads();  // scheduling_bench.cc
std::vector<Workload> isolate_workloads();     // isolate_bench.cc
std::vector<Workload> fd_workloads();          // fd_bench.cc
std::vector<Workload> timer_workloads();       // timer_bench.cc
std::vector<Workload> process_workloads();     // process_bench.cc
std::vector<Workload> lua_workloads();         // lua_bench.cc

}  // namespace evh::bench
