// bench/options.h — the evh-bench command line (BENCHMARKS.md, "Command line").
//
// Parsing checks the shape of the command line only; whether a workload or impl name exists is
// the registry's business (main.cc), so that both errors read the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "workloads.h"

namespace evh::bench {

// A malformed command line: the message is printed and the exit status is 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The hidden `--syscall-child WORKLOAD IMPL UNITS` mode (syscalls.h).
struct SyscallChildArgs {
  std::string workload;
  std::string impl;
  std::uint64_t units = 0;
};

struct Options {
  std::vector<std::string> workloads;  // empty: every workload
  std::vector<std::string> impls;      // empty: every impl
  Size size = Size::standard;
  int reps = 3;
  std::string json_path;       // empty: no JSON
  std::string markdown_path;   // empty: no markdown
  std::string plot_path;       // empty: no SVG
  bool count_syscalls = true;  // --no-syscalls: skip the syscall-count child runs
  bool pin_threads = false;    // --pin-threads: the peer harness's thread placement (measure.h)
  bool list = false;
  bool help = false;
  std::optional<SyscallChildArgs> syscall_child;
};

// Throws UsageError.
Options parse_options(int argc, char** argv);

void print_usage(std::ostream& out);

}  // namespace evh::bench
