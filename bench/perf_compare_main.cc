// evh-perf-compare: the comparison step of tools/perf-ci (perf_compare.h).
//
//   evh-perf-compare [--verbose] BASELINE CURRENT [RERUN...]
//       exit 0: no regression; 1: a regression. A cell regressed in CURRENT counts only if it
//       also regressed in every RERUN that measured it.
//   evh-perf-compare --workloads BASELINE CURRENT   prints the workloads that regressed, comma-
//       separated (empty when none): what tools/perf-ci re-runs
//   evh-perf-compare --update BASELINE CURRENT      puts CURRENT in BASELINE for its size
// Exit status 2: a file is missing or malformed, or the baseline has no run of CURRENT's size.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "bench_json.h"
#include "perf_compare.h"

namespace evh::bench {
namespace {

int run(int argc, char** argv) {
  bool update = false;
  bool verbose = false;
  bool list_workloads = false;
  std::vector<std::string> files;
  CLI::App app("Compares an evh-bench run with the perf-CI baseline (tools/perf-ci).",
               "evh-perf-compare");
  auto* update_flag =
      app.add_flag("--update", update, "put CURRENT into BASELINE for its size instead");
  auto* verbose_flag = app.add_flag("--verbose", verbose, "list every compared cell");
  app.add_flag("--workloads", list_workloads,
               "print the workloads that regressed, comma-separated (what perf-ci re-runs)")
      ->excludes(update_flag)
      ->excludes(verbose_flag);
  app.add_option("files", files, "BASELINE CURRENT [RERUN...]")->required()->expected(2, -1);
  try {
    app.parse(argc, argv);
    if (update && files.size() != 2) throw CLI::ValidationError("--update takes BASELINE CURRENT");
  } catch (const CLI::ParseError& e) {
    // Help is a success; every other parse error exits 2 like a malformed file.
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  const std::string& baseline_path = files[0];
  try {
    Json current_doc = read_json_file(files[1]);
    const BenchRun current = bench_run_from_json(current_doc);
    if (update) {
      Json baseline = empty_baseline();
      if (std::ifstream(baseline_path)) baseline = read_json_file(baseline_path);
      set_baseline(baseline, current.size, std::move(current_doc));
      std::ofstream out(baseline_path);
      write_json_document(out, baseline);
      out << '\n';
      out.close();
      if (!out) {
        std::fprintf(stderr, "evh-perf-compare: cannot write %s\n", baseline_path.c_str());
        return 2;
      }
      std::printf("perf-ci: baseline for size '%s' written to %s\n", current.size.c_str(),
                  baseline_path.c_str());
      return 0;
    }
    const std::optional<BenchRun> baseline =
        baseline_for(read_json_file(baseline_path), current.size);
    if (!baseline) {
      std::fprintf(stderr,
                   "evh-perf-compare: %s has no baseline for size '%s'; make one with "
                   "tools/perf-ci%s --update\n",
                   baseline_path.c_str(), current.size.c_str(),
                   current.size == "quick" ? " --quick" : "");
      return 2;
    }
    Comparison c = compare_runs(*baseline, current);
    if (list_workloads) {
      std::string names;
      for (const CellVerdict& v : c.cells) {
        if (v.regressed && names.find(v.workload) == std::string::npos) {
          names += (names.empty() ? "" : ",") + v.workload;
        }
      }
      std::printf("%s\n", names.c_str());
      return 0;
    }
    std::vector<Comparison> reruns;
    for (std::size_t i = 2; i < files.size(); ++i) {
      reruns.push_back(compare_runs(*baseline, bench_run_from_json(read_json_file(files[i]))));
    }
    c = confirm(c, reruns);
    write_comparison(std::cout, c, verbose);
    return c.passed() ? 0 : 1;
  } catch (const JsonError& e) {
    std::fprintf(stderr, "evh-perf-compare: %s\n", e.what());
    return 2;
  }
}

}  // namespace
}  // namespace evh::bench

int main(int argc, char** argv) {
  return evh::bench::run(argc, argv);
}
