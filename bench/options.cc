#include "options.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <memory>
#include <string_view>

namespace evh::bench {
namespace {

constexpr int kMaxReps = 1000;

std::string non_empty(const std::string& value) {
  return value.empty() ? std::string("needs a value") : std::string();
}

// "a,b" -> {a, b}; an empty name ("a,,b", "a,") is a usage error rather than silently dropped.
void split_names(std::string_view flag, const std::vector<std::string>& lists,
                 std::vector<std::string>& names) {
  for (const std::string& list : lists) {
    std::size_t begin = 0;
    for (;;) {
      const std::size_t comma = list.find(',', begin);
      const std::string name = list.substr(begin, comma - begin);
      if (name.empty()) throw UsageError(std::string(flag) + ": empty name in '" + list + "'");
      names.push_back(name);
      if (comma == std::string::npos) break;
      begin = comma + 1;
    }
  }
}

std::uint64_t parse_units(const std::string& text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError("--syscall-child: not a number: '" + text + "'");
  }
  return value;
}

// What CLI11 fills in before the lists are split and checked.
struct RawArgs {
  std::vector<std::string> workloads;
  std::vector<std::string> impls;
  std::vector<std::string> child;  // the hidden --syscall-child arguments
};

// The command line as CLI11 sees it, writing into `o` and `raw`.
std::unique_ptr<CLI::App> make_app(Options& o, RawArgs& raw) {
  auto app = std::make_unique<CLI::App>(
      "Runs the evh latency benchmarks and their peers in one process and prints one table:\n"
      "median (min-max) of the repetitions, '*' on the best impl of each row.",
      "evh-bench");
  app->add_option("--workload", raw.workloads, "only these workloads (see --list)")
      ->type_name("NAME[,NAME...]");
  app->add_option("--impl", raw.impls, "only these impls (see --list)")
      ->type_name("NAME[,NAME...]");
  auto* quick = app->add_flag_callback(
      "--quick", [&o] { o.size = Size::quick; },
      "smaller sizes: the whole suite in well under 2 minutes");
  app->add_flag_callback(
         "--full", [&o] { o.size = Size::full; }, "the sizes of BENCHMARKS.md (the default too)")
      ->excludes(quick);
  app->add_option("--reps", o.reps, "repetitions per cell, interleaved across impls (default 3)")
      ->type_name("N")
      ->check(CLI::Range(1, kMaxReps));
  app->add_option("--json", o.json_path, "write the results as JSON (schema 1)")
      ->type_name("FILE")
      ->check(non_empty);
  app->add_option("--markdown", o.markdown_path, "write the table as GitHub markdown")
      ->type_name("FILE")
      ->check(non_empty);
  app->add_option("--plot", o.plot_path, "write latency percentile curves as an SVG")
      ->type_name("FILE.svg")
      ->check(non_empty);
  app->add_flag_callback(
      "--no-syscalls", [&o] { o.count_syscalls = false; },
      "skip the syscall-count child runs (the syscalls_per_* metrics)");
  app->add_flag("--pin-threads", o.pin_threads,
                "cross-thread workloads: the sending thread on CPU 0, the consumer on CPU 1, "
                "for every impl (the peer harness's placement)");
  app->add_flag("--list", o.list, "print the workloads and impls of this build");
  // Hidden (no group): the syscall counter re-runs this binary in this mode (syscalls.h).
  app->add_option("--syscall-child", raw.child)->expected(3)->group("");
  return app;
}

}  // namespace

Options parse_options(int argc, char** argv) {
  Options o;
  RawArgs raw;
  const auto app = make_app(o, raw);
  try {
    app->parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    o.help = true;
    return o;
  } catch (const CLI::ParseError& e) {
    throw UsageError(e.what());
  }
  split_names("--workload", raw.workloads, o.workloads);
  split_names("--impl", raw.impls, o.impls);
  if (!raw.child.empty()) {
    o.syscall_child = SyscallChildArgs{raw.child[0], raw.child[1], parse_units(raw.child[2])};
  }
  return o;
}

void print_usage(std::ostream& out) {
  Options o;
  RawArgs raw;
  out << make_app(o, raw)->help();
}

}  // namespace evh::bench
