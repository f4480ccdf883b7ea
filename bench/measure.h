// bench/measure.h — the measuring tools every workload shares: the clock, latency samples turned
// into metrics, resident memory, busy-waiting and CPU pinning.
//
// Threads: everything here is a pure function or acts on the calling thread only, except
// ThreadCpuMeter, which reads every thread's own CPU clock (from one thread).
#pragma once

#include <sched.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "workloads.h"

namespace evh::bench {

// CLOCK_MONOTONIC (through the vDSO: reading it makes no syscall).
using Clock = std::chrono::steady_clock;

inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Which percentile to report and under which name: {99.9, "p999"} gives "rtt_p999_us".
struct PercentileName {
  double pct;
  std::string_view label;
};

// Sorts `samples_ns` and appends one metric per requested percentile, named
// `<prefix>_<label>_us<suffix>` (so "probe_rtt", "_x4" gives "probe_rtt_p50_us_x4"), and one
// curve named `<prefix><suffix>` for the plot. Throws BenchError when there are no samples.
void add_latency_metrics(RunResult& out, std::string_view prefix, std::string_view suffix,
                         std::vector<std::int64_t>& samples_ns,
                         std::initializer_list<PercentileName> which);

// User + system CPU time of this process so far (every thread), in ms, from getrusage.
double process_cpu_ms() noexcept;

// The process CPU (user + system, every thread) and wall time of a measured phase: started at
// construction, read with cpu_ms() / wall_ns() at its end. Every latency and throughput figure
// reports its phase's CPU beside it (cpu_us_per_rtt, cpu_ns_per_msg, cpu_ms), so that an impl
// that spins shows what the spin costs.
class PhaseMeter {
 public:
  PhaseMeter() noexcept : cpu0_(process_cpu_ms()), wall0_(now_ns()) {}
  // Restarts the phase now.
  void restart() noexcept {
    cpu0_ = process_cpu_ms();
    wall0_ = now_ns();
  }
  double cpu_ms() const noexcept { return process_cpu_ms() - cpu0_; }
  std::int64_t wall_ns() const noexcept { return now_ns() - wall0_; }

 private:
  double cpu0_;
  std::int64_t wall0_;
};

// The CPU of this process's threads over a phase, each thread read from its own CPU clock (the
// kernel's per-thread clock named by its thread id, as pthread_getcpuclockid makes it; exact to
// the nanosecond, a running thread's current slice included), leaving out the threads in
// `excluded`. fd_event_latency and fd_event_latency_loaded measure every impl with it, the
// loaded variant leaving out its background load: the figure is a sum over the threads that did
// the work, not the process's CPU minus the load's (a difference of two large numbers, the load
// running on every CPU for the whole phase), and its per-thread parts say which thread used what
// (print_if_asked). A thread started during the phase counts from zero; one that exits during the
// phase takes its CPU with it (`exited()` says how many did).
class ThreadCpuMeter {
 public:
  explicit ThreadCpuMeter(std::vector<int> excluded_tids = {});
  // Starts the phase now.
  void restart();
  // CPU of the counted threads since restart(), in ms.
  double cpu_ms();
  // After cpu_ms(): threads counted at restart() that were gone at the end, and the threads
  // counted in all.
  unsigned exited() const noexcept { return exited_; }
  unsigned counted() const noexcept { return counted_; }
  // With EVH_BENCH_THREAD_CPU set in the environment: writes each counted thread's name and CPU
  // of the last cpu_ms() to stderr, headed by `what` (a diagnostic; no figure depends on it).
  void print_if_asked(std::string_view what) const;

  struct Sample {
    int tid;
    std::int64_t cpu_ns;
    // Voluntary and involuntary context switches, read only when the diagnostic is asked for
    // (EVH_BENCH_THREAD_CPU); -1 otherwise.
    std::int64_t vol_switches = -1;
    std::int64_t invol_switches = -1;
  };
  // After cpu_ms(): each counted thread's CPU over the phase, by thread id.
  const std::vector<Sample>& per_thread() const noexcept { return last_; }

 private:
  std::vector<Sample> sample() const;

  std::vector<int> excluded_;
  std::vector<Sample> start_;
  std::vector<Sample> last_;  // per-thread CPU of the last cpu_ms()
  unsigned exited_ = 0;
  unsigned counted_ = 0;
};

// The calling thread's id (gettid), for ThreadCpuMeter's exclusions.
int current_tid() noexcept;
// The CPU thread `tid` of this process has used so far, in ns (its kernel CPU clock); -1 when it
// has exited.
std::int64_t thread_cpu_ns(int tid) noexcept;

// Resident set size of this process in bytes, from /proc/self/statm.
std::int64_t resident_bytes();

// Returns freed heap memory to the kernel so that an RSS delta measures the phase, not what an
// earlier repetition left in malloc's free lists.
void trim_heap() noexcept;

// Busy-waits on the monotonic clock; never sleeps, never yields.
void spin_for(std::chrono::nanoseconds duration) noexcept;

// Makes the compiler believe `p` escapes, so that a new/delete pair under test is not elided
// (C++14 lets a compiler drop an allocation whose result is never used).
inline void escape(void* p) noexcept {
  asm volatile("" : : "g"(p) : "memory");
}

// Pins the calling thread to one CPU of its current affinity mask for the object's lifetime and
// restores the mask afterwards. Threads the caller creates meanwhile inherit the single CPU.
class ScopedCpuPin {
 public:
  ScopedCpuPin() noexcept;
  ~ScopedCpuPin();
  ScopedCpuPin(const ScopedCpuPin&) = delete;
  ScopedCpuPin& operator=(const ScopedCpuPin&) = delete;

  // The CPU pinned to, or -1 when the mask could not be changed (e.g. a seccomp policy).
  int cpu() const noexcept { return cpu_; }

 private:
  cpu_set_t saved_{};
  int cpu_ = -1;
};

// Thread placement of the cross-thread workloads (thread_pingpong, thread_pingpong_block,
// port_flood, port_flood_batch, fd_fanout) under `--pin-threads`: the peer harness's placement
// (../shared/peer-harness, `pin_to_cpu`), the sending / measuring thread on CPU 0 and the
// consuming loop on CPU 1, for every impl alike. Off by default: the scheduler places threads.
enum class ThreadRole {
  sender,  // CPU 0: the thread that posts and measures
  loop,    // CPU 1: the consumer, echo or event loop (threads created while here inherit it)
};

// Process-wide, set once by main() before any cell runs; read by ScopedPlacement.
void set_thread_pinning(bool on) noexcept;
bool thread_pinning() noexcept;

// With thread pinning on, pins the calling thread to its role's CPU for the object's lifetime
// and restores the previous mask afterwards (they nest); threads the caller creates meanwhile
// inherit the CPU, which is how the consumers of every impl are placed (evh's pool workers
// included: those started while the creating thread sits on the loop's CPU). Does nothing with
// pinning off, or when the kernel refuses the CPU (a machine without a CPU 1).
class ScopedPlacement {
 public:
  explicit ScopedPlacement(ThreadRole role) noexcept;
  ~ScopedPlacement();
  ScopedPlacement(const ScopedPlacement&) = delete;
  ScopedPlacement& operator=(const ScopedPlacement&) = delete;

 private:
  cpu_set_t saved_{};
  bool pinned_ = false;
};

}  // namespace evh::bench
