// evh-crosscheck: the comparison step of tools/bench-crosscheck (crosscheck.h).
//
//   evh-crosscheck [--tolerance F] [--strict] HARNESS_RAW_JSONL EVH_BENCH_JSON...
// Prints, for every figure both measured, the harness's median, evh-bench's and their ratio, as a
// markdown table. Several evh-bench files (one per interleaved cell) are merged: the median of
// their medians. Exit status 0; with --strict, 1 when a figure is beyond the tolerance; 2 when a
// file is missing or malformed.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_json.h"
#include "crosscheck.h"
#include "perf_compare.h"

namespace evh::bench {
namespace {

int run(int argc, char** argv) {
  double tolerance = kCrosscheckTolerance;
  bool strict = false;
  std::string harness_path;
  std::vector<std::string> bench_paths;
  CLI::App app("evh-bench's peer rows against the independent peer harness.", "evh-crosscheck");
  app.add_option("--tolerance", tolerance, "the agreement band (default 0.15: 15%)")
      ->check(CLI::Range(0.0, 10.0));
  app.add_flag("--strict", strict, "exit 1 when a figure is beyond the tolerance");
  app.add_option("harness", harness_path, "the harness's raw.jsonl")->required();
  app.add_option("bench", bench_paths, "evh-bench's --json output(s)")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    std::ifstream in(harness_path);
    if (!in) throw JsonError("cannot read " + harness_path);
    std::ostringstream text;
    text << in.rdbuf();
    std::vector<BenchRun> runs;
    for (const std::string& path : bench_paths) {
      runs.push_back(bench_run_from_json(read_json_file(path)));
    }
    const std::vector<CrossRow> rows =
        crosscheck(parse_harness_lines(text.str()), merge_runs(runs), tolerance);
    if (rows.empty()) {
      std::fprintf(stderr, "evh-crosscheck: no figure is in both files\n");
      return 2;
    }
    write_crosscheck(std::cout, rows, tolerance);
    const bool all_within =
        std::all_of(rows.begin(), rows.end(), [](const CrossRow& r) { return r.within; });
    return strict && !all_within ? 1 : 0;
  } catch (const JsonError& e) {
    std::fprintf(stderr, "evh-crosscheck: %s\n", e.what());
    return 2;
  }
}

}  // namespace
}  // namespace evh::bench

int main(int argc, char** argv) {
  return evh::bench::run(argc, argv);
}
