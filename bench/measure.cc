#include "measure.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "stats.h"

namespace evh::bench {

double process_cpu_ms() noexcept {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}
namespace {

// The x axis of the plot: dense near the median, then the tail.
constexpr double kCurvePercentiles[] = {50, 60, 70, 80, 90, 95, 97, 98, 99, 99.5, 99.8, 99.9};

}  // namespace

void add_latency_metrics(RunResult& out, std::string_view prefix, std::string_view suffix,
                         std::vector<std::int64_t>& samples_ns,
                         std::initializer_list<PercentileName> which) {
  if (samples_ns.empty()) {
    throw BenchError("no latency samples for " + std::string(prefix) + std::string(suffix));
  }
  std::sort(samples_ns.begin(), samples_ns.end());
  auto micros = [&](double pct) {
    return static_cast<double>(percentile_of_sorted(samples_ns, pct)) / 1000.0;
  };
  for (const PercentileName& p : which) {
    std::string name(prefix);
    name.append("_").append(p.label).append("_us").append(suffix);
    out.metrics.push_back({std::move(name), "us", micros(p.pct)});
  }
  Curve curve{std::string(prefix) + std::string(suffix), {}};
  for (double pct : kCurvePercentiles) curve.points.push_back({pct, micros(pct)});
  out.curves.push_back(std::move(curve));
}

std::int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t size_pages = 0;
  std::int64_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) {
    throw BenchError("cannot read /proc/self/statm");
  }
  return resident_pages * static_cast<std::int64_t>(sysconf(_SC_PAGESIZE));
}

void trim_heap() noexcept {
  malloc_trim(0);
}

void spin_for(std::chrono::nanoseconds duration) noexcept {
  const auto until = Clock::now() + duration;
  while (Clock::now() < until) {
  }
}

ScopedCpuPin::ScopedCpuPin() noexcept {
  if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) return;
  // Stay where the scheduler put us if that CPU is allowed: its caches are already warm.
  int cpu = sched_getcpu();
  if (cpu < 0 || !CPU_ISSET(cpu, &saved_)) {
    cpu = -1;
    for (int i = 0; i < CPU_SETSIZE; ++i) {
      if (CPU_ISSET(i, &saved_)) {
        cpu = i;
        break;
      }
    }
  }
  if (cpu < 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (sched_setaffinity(0, sizeof one, &one) == 0) cpu_ = cpu;
}

ScopedCpuPin::~ScopedCpuPin() {
  if (cpu_ >= 0) sched_setaffinity(0, sizeof saved_, &saved_);
}

namespace {
// Written once by main() before the suite starts any thread; read-only afterwards.
bool g_thread_pinning = false;
}  // namespace

void set_thread_pinning(bool on) noexcept {
  g_thread_pinning = on;
}

bool thread_pinning() noexcept {
  return g_thread_pinning;
}

ScopedPlacement::ScopedPlacement(ThreadRole role) noexcept {
  if (!g_thread_pinning) return;
  if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) return;
  // The harness's kCpuPeer and kCpuLoop.
  const int cpu = role == ThreadRole::sender ? 0 : 1;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  pinned_ = sched_setaffinity(0, sizeof one, &one) == 0;
}

ScopedPlacement::~ScopedPlacement() {
  if (pinned_) sched_setaffinity(0, sizeof saved_, &saved_);
}

}  // namespace evh::bench
