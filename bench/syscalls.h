// bench/syscalls.h — syscall counts per work unit, measured outside every timed run.
//
// Counting never happens in a timed cell. Instead the binary re-executes itself
// (/proc/self/exe) in a hidden mode (`--syscall-child WORKLOAD IMPL UNITS`) that runs one
// workload/impl once with an explicit number of work units, under a counting tool:
//   - `perf stat -e raw_syscalls:sys_enter` when the kernel lets us use that tracepoint: it
//     counts in the kernel without stopping the threads, so spin-then-park code behaves as it
//     does untraced;
//   - else `strace -f -c`, which stops every thread at every syscall: still a fair comparison
//     between impls of one run, but it slows each syscall down enough to change how often a
//     spinning waiter gives up and parks.
// Two child runs, with U/10 and U units, are subtracted so that everything that does not scale
// with the work — process start, thread creation, warm-up, shutdown — drops out:
// syscalls per unit = (calls(U) - calls(U/10)) / (U - U/10). A tenfold difference in work
// keeps a real count clear of the runs' noise (with U and 2U, raw port_flood's timing-driven
// sleeps once read less in the larger run and the count was clamped to 0). A larger run that
// counts fewer calls by no more than the fixed costs' jitter is a real 0 (stats.h); by more, the
// metric is not reported for that impl — never reported as 0.
// A workload that counts its own calls (SyscallProbe::run_counting_own) prints them too
// ("own_calls N"); the same subtraction over the calls minus its own gives the loop's figure.
//
// Threads: a SyscallCounter is used by one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workloads.h"

namespace evh::bench {

class SyscallCounter {
 public:
  // Finds perf or strace and checks once that it can count this binary's syscalls (a
  // container may forbid perf tracepoints, or ptrace).
  SyscallCounter();

  bool available() const noexcept { return tool_ != Tool::none; }

  // Per work unit: every call of the process, and (for a probe that counts its own) every call
  // but the workload's own. nullopt where the two runs did not measure it.
  struct PerUnit {
    std::optional<double> all;
    std::optional<double> loop;
  };
  // Which tool counts, or why none can, as a phrase for stderr.
  const std::string& description() const noexcept { return description_; }

  // Syscalls per work unit of `impl` in `workload`; `why` says why a figure is missing.
  // Precondition: available() and workload.syscalls. Throws BenchError when a child run fails.
  PerUnit per_unit(const Workload& workload, std::string_view impl, Size size, std::string& why);

 private:
  // The "total" calls of one traced child run, and the workload's own when it printed them.
  struct Traced {
    std::uint64_t calls = 0;
    std::optional<std::uint64_t> own;
  };
  Traced traced_calls(std::string_view workload, std::string_view impl, std::uint64_t units);

  enum class Tool { none, perf, strace };

  // Runs this binary with `child_args` under `tool` (found at `path`). False when the child
  // failed, did not print `expect` (if not empty) or the tool produced no count; `why` then
  // holds the last line of their output.
  // `output`, when given, receives the child's output.
  bool count_run(Tool tool, const std::string& path, const std::vector<std::string>& child_args,
                 std::string_view expect, std::uint64_t& calls, std::string& why,
                 std::string* output = nullptr);

  Tool tool_ = Tool::none;
  std::string tool_path_;
  std::string self_;
  std::string description_;
};

// The body of the hidden `--syscall-child` mode: runs the probe once and prints "units N" (and
// before it "own_calls N" when the probe counts its own). Returns the process exit status.
int run_syscall_child(std::string_view workload, std::string_view impl, std::uint64_t units);

}  // namespace evh::bench
