// evh-bench: runs the latency benchmark suite of BENCHMARKS.md for evh and its peers in one
// process and prints one table. This file resolves the command line against the workload
// registry and sends the results to their outputs; suite.cc runs the cells.

#include <evh/runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "options.h"
#include "plot.h"
#include "report.h"
#include "suite.h"
#include "syscalls.h"
#include "workloads.h"

namespace evh::bench {
namespace {

constexpr int kUsageStatus = 2;

// Every impl name BENCHMARKS.md defines, in the table's column order. One this build lacks is
// skipped, not an error, so that a CI script asking for a peer keeps working on a build without
// it.
constexpr std::string_view kContractImpls[] = {"evh",      "evh-exact", "evh-epoll", "evh-uring",
                                               "raw",      "raw-spin",  "libuv",     "asio",
                                               "libevent", "evh-lua",   "luv"};

// The peers BENCHMARKS.md names; each is built only when its library was found.
constexpr std::string_view kPeerImpls[] = {"libuv", "asio", "libevent"};

// Where `impl` goes in the table: the contract's order, then any other name.
std::size_t column_of(const std::string& impl) {
  const auto it = std::find(std::begin(kContractImpls), std::end(kContractImpls), impl);
  return static_cast<std::size_t>(it - std::begin(kContractImpls));
}

// Every impl of this build, in the column order of the table.
std::vector<std::string> known_impls() {
  std::vector<std::string> impls;
  for (const Workload& w : all_workloads()) {
    for (const std::string& impl : w.impls) {
      if (std::find(impls.begin(), impls.end(), impl) == impls.end()) impls.push_back(impl);
    }
  }
  std::stable_sort(impls.begin(), impls.end(), [](const std::string& a, const std::string& b) {
    return column_of(a) < column_of(b);
  });
  return impls;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool contains(const std::vector<SkippedImpl>& skipped, const std::string& name) {
  return std::any_of(skipped.begin(), skipped.end(),
                     [&](const SkippedImpl& s) { return s.impl == name; });
}

// Why an impl that forces a backend ("evh-epoll", "evh-uring") cannot run here, or nothing.
// EVH_BACKEND, the operator's switch, overrides RuntimeOptions::io_backend, so under it a row
// forcing the other backend would measure the wrong one under its name; and io_uring may be
// forbidden (containers, kernel.io_uring_disabled). Either leaves the row out with the reason
// instead of failing every one of its cells. The probe is the runtime's own: a Runtime asked for
// the backend, whose constructor throws the reason.
std::optional<std::string> backend_unavailable(const std::string& impl) {
  const std::optional<IoBackend> forced = forced_backend(impl);
  if (!forced) return std::nullopt;
  const char* env = std::getenv("EVH_BACKEND");
  const std::string_view op = env != nullptr ? env : "";
  if (!op.empty() && op != "auto") {
    const bool wants_uring = op == "uring" || op == "io_uring";
    if (wants_uring != (*forced == IoBackend::uring)) {
      return "EVH_BACKEND=" + std::string(op) + " overrides the backend this row forces";
    }
  }
  try {
    RuntimeOptions ro;
    ro.io_backend = *forced;
    ro.max_workers = 1;
    Runtime probe(ro);
    probe.shutdown();
  } catch (const std::exception& e) {
    return e.what();
  }
  return std::nullopt;
}

// Throws UsageError for a name this build does not have. Impls of the contract that this build
// lacks go to `skipped`.
SuitePlan make_plan(const Options& o, std::vector<SkippedImpl>& skipped) {
  SuitePlan plan;
  plan.size = o.size;
  plan.reps = o.reps;
  plan.count_syscalls = o.count_syscalls;
  std::vector<std::string> workload_names;
  for (const Workload& w : all_workloads()) workload_names.push_back(w.name);
  for (const std::string& name : o.workloads) {
    if (!contains(workload_names, name)) {
      throw UsageError("unknown workload '" + name +
                       "' (this build has: " + joined(workload_names) + ")");
    }
  }
  for (const Workload& w : all_workloads()) {
    if (o.workloads.empty() || contains(o.workloads, w.name)) plan.workloads.push_back(&w);
  }
  const std::vector<std::string> impls = known_impls();
  for (const std::string& name : o.impls) {
    if (contains(impls, name)) continue;
    if (std::find(std::begin(kContractImpls), std::end(kContractImpls), name) !=
        std::end(kContractImpls)) {
      std::fprintf(stderr, "evh-bench: impl %s is not built; skipped\n", name.c_str());
      if (!contains(skipped, name)) skipped.push_back({name, "not built"});
      continue;
    }
    throw UsageError("unknown impl '" + name + "' (this build has: " + joined(impls) + ")");
  }
  for (const std::string& impl : impls) {
    if (!o.impls.empty() && !contains(o.impls, impl)) continue;
    if (const std::optional<std::string> why = backend_unavailable(impl)) {
      std::fprintf(stderr, "evh-bench: impl %s skipped: %s\n", impl.c_str(), why->c_str());
      skipped.push_back({impl, *why});
      continue;
    }
    plan.impls.push_back(impl);
  }
  // A default run names the peers this build lacks too, so a table without them says why.
  if (o.impls.empty()) {
    for (const std::string_view peer : kPeerImpls) {
      const std::string name(peer);
      if (contains(impls, name) || contains(skipped, name)) continue;
      std::fprintf(stderr, "evh-bench: impl %s is not built (its package was missing); skipped\n",
                   name.c_str());
      skipped.push_back({name, "not built: its package was missing"});
    }
  }
  return plan;
}

void print_list() {
  for (const Workload& w : all_workloads()) std::cout << "workload " << w.name << '\n';
  for (const std::string& impl : known_impls()) std::cout << "impl " << impl << '\n';
}

// Returns false (and says why on stderr) when the file cannot be written.
bool write_file(const std::string& path, const std::function<void(std::ostream&)>& write) {
  std::ofstream out(path);
  if (out) write(out);
  out.close();
  if (!out) {
    std::fprintf(stderr, "evh-bench: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

int run(int argc, char** argv) {
  Options o;
  SuitePlan plan;
  std::vector<SkippedImpl> skipped;
  try {
    o = parse_options(argc, argv);
    if (o.help) {
      print_usage(std::cout);
      return 0;
    }
    if (o.syscall_child) {
      return run_syscall_child(o.syscall_child->workload, o.syscall_child->impl,
                               o.syscall_child->units);
    }
    if (o.list) {
      print_list();
      return 0;
    }
    plan = make_plan(o, skipped);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "evh-bench: %s\n(evh-bench --help shows the usage)\n", e.what());
    return kUsageStatus;
  }

  // A run takes minutes; find out now, not after it, that a result file cannot be written.
  for (const std::string* path : {&o.json_path, &o.markdown_path, &o.plot_path}) {
    if (!path->empty() && !std::ofstream(*path, std::ios::app)) {
      std::fprintf(stderr, "evh-bench: cannot write %s\n", path->c_str());
      return 1;
    }
  }

  set_thread_pinning(o.pin_threads);
  SuiteResult result = run_suite(plan);
  result.skipped_impls = std::move(skipped);
  result.size = o.size == Size::quick ? "quick" : o.size == Size::full ? "full" : "standard";
  std::cout << '\n';
  write_table(std::cout, result);
  std::cout.flush();

  bool written = true;
  if (!o.json_path.empty()) {
    const MachineInfo machine = machine_info(result.backends);
    written &=
        write_file(o.json_path, [&](std::ostream& out) { write_json(out, result, machine); });
  }
  if (!o.markdown_path.empty()) {
    written &= write_file(o.markdown_path, [&](std::ostream& out) { write_markdown(out, result); });
  }
  if (!o.plot_path.empty()) {
    written &= write_file(o.plot_path, [&](std::ostream& out) { write_plot(out, result); });
  }
  if (result.failed_cells > 0) {
    std::fprintf(stderr, "evh-bench: %d cell(s) failed\n", result.failed_cells);
    return 1;
  }
  return written ? 0 : 1;
}

}  // namespace
}  // namespace evh::bench

int main(int argc, char** argv) {
  return evh::bench::run(argc, argv);
}
