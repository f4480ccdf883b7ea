#include "measure.h"

#include <dirent.h>
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

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

int current_tid() noexcept {
  return static_cast<int>(::gettid());
}

std::int64_t thread_cpu_ns(int tid) noexcept {
  // The kernel's per-thread CPU clock id (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED), the value
  // glibc's pthread_getcpuclockid returns): ~tid << 3, per-thread bit 4, the scheduler's clock 2.
  // Any thread of the same process may read it.
  const auto clock = static_cast<clockid_t>((~static_cast<unsigned>(tid) << 3) | 4u | 2u);
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return -1;
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

ThreadCpuMeter::ThreadCpuMeter(std::vector<int> excluded_tids)
    : excluded_(std::move(excluded_tids)) {
  std::sort(excluded_.begin(), excluded_.end());
  restart();
}

namespace {

bool thread_cpu_asked() noexcept {
  static const bool asked = std::getenv("EVH_BENCH_THREAD_CPU") != nullptr;
  return asked;
}

// A thread's context switches so far, from /proc/self/task/<tid>/status (the diagnostic's only).
void read_switches(int tid, std::int64_t& vol, std::int64_t& invol) {
  std::ifstream status("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
      vol = std::atoll(line.c_str() + sizeof("voluntary_ctxt_switches:") - 1);
    } else if (line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
      invol = std::atoll(line.c_str() + sizeof("nonvoluntary_ctxt_switches:") - 1);
    }
  }
}

}  // namespace

std::vector<ThreadCpuMeter::Sample> ThreadCpuMeter::sample() const {
  std::vector<Sample> out;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) throw BenchError("cannot list /proc/self/task");
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int tid = std::atoi(e->d_name);
    if (std::binary_search(excluded_.begin(), excluded_.end(), tid)) continue;
    const std::int64_t ns = thread_cpu_ns(tid);
    if (ns < 0) continue;  // exited since the listing
    Sample sample{tid, ns};
    if (thread_cpu_asked()) read_switches(tid, sample.vol_switches, sample.invol_switches);
    out.push_back(sample);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) { return a.tid < b.tid; });
  return out;
}

void ThreadCpuMeter::restart() {
  start_ = sample();
}

double ThreadCpuMeter::cpu_ms() {
  const std::vector<Sample> end = sample();
  std::int64_t total = 0;
  last_.clear();
  exited_ = 0;
  counted_ = static_cast<unsigned>(end.size());
  auto s = start_.begin();
  for (const Sample& e : end) {
    while (s != start_.end() && s->tid < e.tid) {
      ++exited_;
      ++s;
    }
    // A tid seen at both ends is the same thread: a tid is not reused while the process runs
    // through fewer than pid_max threads in one phase.
    Sample used = e;  // started during the phase: from zero
    if (s != start_.end() && s->tid == e.tid) {
      used.cpu_ns -= s->cpu_ns;
      used.vol_switches -= s->vol_switches;
      used.invol_switches -= s->invol_switches;
      ++s;
    }
    total += used.cpu_ns;
    last_.push_back(used);
  }
  exited_ += static_cast<unsigned>(start_.end() - s);
  return static_cast<double>(total) / 1e6;
}

void ThreadCpuMeter::print_if_asked(std::string_view what) const {
  if (std::getenv("EVH_BENCH_THREAD_CPU") == nullptr) return;
  std::fprintf(stderr, "%.*s", static_cast<int>(what.size()), what.data());
  for (const Sample& t : last_) {
    std::string name;
    std::ifstream comm("/proc/self/task/" + std::to_string(t.tid) + "/comm");
    std::getline(comm, name);
    std::fprintf(stderr, " %s/%d=%.1fms", name.c_str(), t.tid, static_cast<double>(t.cpu_ns) / 1e6);
    if (t.vol_switches >= 0) {
      std::fprintf(stderr, "(cs %lld+%lld)", static_cast<long long>(t.vol_switches),
                   static_cast<long long>(t.invol_switches));
    }
  }
  if (exited_ != 0) std::fprintf(stderr, " exited=%u", exited_);
  std::fprintf(stderr, "\n");
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
