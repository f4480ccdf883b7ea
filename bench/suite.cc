#include "suite.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "measure.h"
#include "syscalls.h"

namespace evh::bench {
namespace {

using namespace std::chrono_literals;
using Seconds = std::chrono::duration<double>;

// The longest a full-size cell takes on a slow machine is tens of seconds; five minutes means
// a hang.
constexpr auto kCellTimeLimit = 5min;
// Exit status when the watchdog ends a hung run.
constexpr int kHungStatus = 3;

enum class CellKind { timed, syscalls };

struct Cell {
  const Workload* workload;
  std::string impl;
  int rep;  // 0-based; unused for syscall cells
  CellKind kind;
};

bool supports(const Workload& w, const std::string& impl) {
  return std::find(w.impls.begin(), w.impls.end(), impl) != w.impls.end();
}

std::vector<Cell> plan_cells(const SuitePlan& plan, bool count_syscalls) {
  std::vector<Cell> cells;
  for (const Workload* w : plan.workloads) {
    std::vector<std::string> impls;
    for (const std::string& impl : plan.impls) {
      if (supports(*w, impl)) impls.push_back(impl);
    }
    const std::size_t n = impls.size();
    for (int rep = 0; rep < plan.reps; ++rep) {
      for (std::size_t k = 0; k < n; ++k) {
        cells.push_back({w, impls[(k + static_cast<std::size_t>(rep)) % n], rep, CellKind::timed});
      }
    }
    if (w->syscalls && count_syscalls) {
      for (const std::string& impl : impls) cells.push_back({w, impl, 0, CellKind::syscalls});
    }
  }
  return cells;
}

std::string describe(const Cell& c, int reps) {
  std::string d = c.workload->name + " " + c.impl;
  if (c.kind == CellKind::syscalls) return d + " syscall count";
  return d + " rep " + std::to_string(c.rep + 1) + "/" + std::to_string(reps);
}

std::string format_duration(double seconds) {
  const long total = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", total / 60, total % 60);
  }
  return buf;
}

// Estimates a cell's duration from the cells already run: the same impl of the same workload if
// it ran, else the same workload, else any cell of the same kind.
class TimeEstimator {
 public:
  void record(const Cell& c, double seconds) {
    for (const std::string& key : keys(c)) {
      auto& [sum, count] = seen_[key];
      sum += seconds;
      ++count;
    }
  }
  double estimate(const Cell& c) const {
    for (const std::string& key : keys(c)) {
      auto it = seen_.find(key);
      if (it != seen_.end()) return it->second.first / it->second.second;
    }
    return 1.0;  // nothing run yet: a guess that keeps the first lines honest
  }

 private:
  static std::vector<std::string> keys(const Cell& c) {
    const std::string kind = c.kind == CellKind::timed ? "t" : "s";
    return {kind + "|" + c.workload->name + "|" + c.impl, kind + "|" + c.workload->name, kind};
  }
  std::map<std::string, std::pair<double, int>> seen_;
};

// Ends the process when one cell runs longer than kCellTimeLimit.
class Watchdog {
 public:
  Watchdog() : thread_([this] { watch(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void arm(std::string what) {
    {
      std::lock_guard lock(mu_);
      what_ = std::move(what);
      deadline_ = Clock::now() + kCellTimeLimit;
    }
    changed_.notify_one();
  }
  void disarm() {
    std::lock_guard lock(mu_);
    deadline_.reset();
  }

 private:
  void watch() {
    std::unique_lock lock(mu_);
    while (!quit_) {
      if (!deadline_) {
        changed_.wait(lock);
      } else if (changed_.wait_until(lock, *deadline_) == std::cv_status::timeout && deadline_ &&
                 Clock::now() >= *deadline_) {
        std::fprintf(stderr, "evh-bench: %s is still running after %lld s; giving up (hung?)\n",
                     what_.c_str(),
                     static_cast<long long>(
                         std::chrono::duration_cast<std::chrono::seconds>(kCellTimeLimit).count()));
        std::fflush(stderr);
        std::_Exit(kHungStatus);
      }
    }
  }

  std::mutex mu_;
  std::condition_variable changed_;
  std::optional<Clock::time_point> deadline_;  // guarded by mu_; empty: disarmed
  std::string what_;                           // guarded by mu_
  bool quit_ = false;                          // guarded by mu_
  std::thread thread_;
};

// Every value of every repetition, in the order of first appearance.
class Collector {
 public:
  void add(const Cell& c, const RunResult& r) {
    if (!r.backend.empty()) note(backends_, r.backend);
    for (const Metric& m : r.metrics) add_metric(c, m.name, m.unit, m.value);
    for (const Curve& curve : r.curves) {
      curves_[{c.workload->name, c.impl, curve.name}].push_back(curve.points);
      note(curve_order_[c.workload->name], curve.name);
    }
  }
  void add_metric(const Cell& c, const std::string& name, const std::string& unit, double v) {
    auto& slot = values_[{c.workload->name, c.impl, name}];
    slot.first = unit;
    slot.second.push_back(v);
    note(metric_order_[c.workload->name], name);
  }

  SuiteResult finish(const SuitePlan& plan) const {
    SuiteResult result;
    std::vector<bool> used(plan.impls.size(), false);
    for (const Workload* w : plan.workloads) {
      for (const std::string& metric : order(metric_order_, w->name)) {
        for (std::size_t i = 0; i < plan.impls.size(); ++i) {
          auto it = values_.find({w->name, plan.impls[i], metric});
          if (it == values_.end()) continue;
          used[i] = true;
          result.rows.push_back(
              {w->name, plan.impls[i], metric, it->second.first, summarize(it->second.second)});
        }
      }
      for (const std::string& curve : order(curve_order_, w->name)) {
        for (const std::string& impl : plan.impls) {
          auto it = curves_.find({w->name, impl, curve});
          if (it != curves_.end())
            result.curves.push_back({w->name, impl, curve, median_curve(it->second)});
        }
      }
    }
    for (std::size_t i = 0; i < plan.impls.size(); ++i) {
      if (used[i]) result.impls.push_back(plan.impls[i]);
    }
    result.backends = backends_;
    return result;
  }

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // workload, impl, name

  static void note(std::vector<std::string>& order, const std::string& name) {
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  }
  static const std::vector<std::string>& order(
      const std::map<std::string, std::vector<std::string>>& orders, const std::string& w) {
    static const std::vector<std::string> kNone;
    auto it = orders.find(w);
    return it == orders.end() ? kNone : it->second;
  }
  // Point-wise median over the repetitions; every repetition uses the same percentiles.
  static std::vector<CurvePoint> median_curve(const std::vector<std::vector<CurvePoint>>& reps) {
    std::vector<CurvePoint> out = reps.front();
    for (std::size_t p = 0; p < out.size(); ++p) {
      std::vector<double> at;
      for (const auto& rep : reps) {
        if (p < rep.size()) at.push_back(rep[p].micros);
      }
      out[p].micros = summarize(std::move(at)).median;
    }
    return out;
  }

  std::map<Key, std::pair<std::string, std::vector<double>>> values_;  // unit, values
  std::map<Key, std::vector<std::vector<CurvePoint>>> curves_;
  std::map<std::string, std::vector<std::string>> metric_order_;
  std::map<std::string, std::vector<std::string>> curve_order_;
  std::vector<std::string> backends_;
};

RunResult run_timed(const Cell& c, Size size) {
  std::optional<ScopedCpuPin> pin;
  if (c.workload->threading == Threading::single) pin.emplace();
  return c.workload->run(c.impl, size);
}

}  // namespace

SuiteResult run_suite(const SuitePlan& plan) {
  std::optional<SyscallCounter> syscalls;
  const bool any_probe =
      plan.count_syscalls && std::any_of(plan.workloads.begin(), plan.workloads.end(),
                                         [](const Workload* w) { return w->syscalls.has_value(); });
  if (any_probe) {
    syscalls.emplace();
    if (syscalls->available()) {
      std::fprintf(stderr, "evh-bench: %s, in separate untimed runs\n",
                   syscalls->description().c_str());
    } else {
      std::fprintf(stderr, "evh-bench: %s; the syscalls_per_* metrics are absent\n",
                   syscalls->description().c_str());
    }
  }
  const std::vector<Cell> cells = plan_cells(plan, syscalls && syscalls->available());
  for (const Workload* w : plan.workloads) {
    for (const std::string& impl : plan.impls) {
      if (!supports(*w, impl)) {
        std::fprintf(stderr, "evh-bench: %s: impl %s skipped (not built for this workload)\n",
                     w->name.c_str(), impl.c_str());
      }
    }
  }

  Collector collector;
  TimeEstimator estimator;
  Watchdog watchdog;
  int failed = 0;
  const int width = static_cast<int>(std::to_string(cells.size()).size());
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const Cell& c = cells[i];
    const std::string what = describe(c, plan.reps);
    std::string error;
    std::string note;  // printed after the cell's progress line
    watchdog.arm(what);
    const auto start = Clock::now();
    try {
      if (c.kind == CellKind::timed) {
        collector.add(c, run_timed(c, plan.size));
      } else {
        std::string why;
        const SyscallCounter::PerUnit per_unit =
            syscalls->per_unit(*c.workload, c.impl, plan.size, why);
        if (per_unit.all) {
          collector.add_metric(c, c.workload->syscalls->metric, "count", *per_unit.all);
        } else {
          note =
              "not measured: the larger run counted fewer calls, by more than the fixed costs' "
              "jitter (" +
              why + ")";
        }
        const std::string& loop_metric = c.workload->syscalls->loop_metric;
        if (!loop_metric.empty()) {
          if (per_unit.loop) {
            collector.add_metric(c, loop_metric, "count", *per_unit.loop);
          } else if (note.empty()) {
            note = loop_metric +
                   " not measured: the workload's own calls were not reported, or "
                   "the larger run's remainder was smaller";
          }
        }
      }
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    const double took = Seconds(Clock::now() - start).count();
    watchdog.disarm();
    estimator.record(c, took);

    double left = 0;
    for (std::size_t j = i + 1; j < cells.size(); ++j) left += estimator.estimate(cells[j]);
    if (error.empty()) {
      std::fprintf(stderr, "[%*zu/%zu] %-44s %7.2f s   ~%s left\n", width, i + 1, cells.size(),
                   what.c_str(), took, format_duration(left).c_str());
      if (!note.empty()) std::fprintf(stderr, "    %s: %s\n", what.c_str(), note.c_str());
    } else {
      ++failed;
      std::fprintf(stderr, "[%*zu/%zu] %-44s FAILED after %.2f s: %s\n", width, i + 1, cells.size(),
                   what.c_str(), took, error.c_str());
    }
  }

  SuiteResult result = collector.finish(plan);
  result.failed_cells = failed;
  return result;
}

}  // namespace evh::bench
