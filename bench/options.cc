#include "options.h"

#include <charconv>
#include <string_view>

namespace evh::bench {
namespace {

constexpr int kMaxReps = 1000;

std::vector<std::string> split_names(std::string_view flag, std::string_view list) {
  std::vector<std::string> names;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t comma = list.find(',', begin);
    const std::string_view name = list.substr(begin, comma - begin);
    if (name.empty())
      throw UsageError(std::string(flag) + ": empty name in '" + std::string(list) + "'");
    names.emplace_back(name);
    if (comma == std::string_view::npos) return names;
    begin = comma + 1;
  }
}

template <class T>
T parse_number(std::string_view flag, std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError(std::string(flag) + ": not a number: '" + std::string(text) + "'");
  }
  return value;
}

std::string file_name(std::string_view flag, std::string_view value) {
  if (value.empty()) throw UsageError(std::string(flag) + " needs a file name");
  return std::string(value);
}

// Walks argv, accepting both "--flag value" and "--flag=value".
class ArgReader {
 public:
  ArgReader(int argc, char** argv) : argc_(argc), argv_(argv) {}

  bool next() {
    if (++i_ >= argc_) return false;
    const std::string_view arg = argv_[i_];
    const std::size_t eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string_view::npos) {
      flag_ = arg.substr(0, eq);
      inline_value_ = arg.substr(eq + 1);
      has_inline_ = true;
    } else {
      flag_ = arg;
      has_inline_ = false;
    }
    return true;
  }
  std::string_view flag() const { return flag_; }
  std::string_view value() {
    if (has_inline_) {
      has_inline_ = false;
      return inline_value_;
    }
    if (++i_ >= argc_) throw UsageError(std::string(flag_) + " needs a value");
    return argv_[i_];
  }
  // For flags that take no value.
  void no_value() const {
    if (has_inline_) throw UsageError(std::string(flag_) + " takes no value");
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string_view flag_;
  std::string_view inline_value_;
  bool has_inline_ = false;
};

}  // namespace

Options parse_options(int argc, char** argv) {
  Options o;
  bool quick = false;
  bool full = false;
  ArgReader args(argc, argv);
  while (args.next()) {
    const std::string_view f = args.flag();
    if (f == "--workload") {
      for (auto& n : split_names(f, args.value())) o.workloads.push_back(std::move(n));
    } else if (f == "--impl") {
      for (auto& n : split_names(f, args.value())) o.impls.push_back(std::move(n));
    } else if (f == "--quick") {
      args.no_value();
      quick = true;
    } else if (f == "--full") {
      args.no_value();
      full = true;
    } else if (f == "--reps") {
      o.reps = parse_number<int>(f, args.value());
      if (o.reps < 1 || o.reps > kMaxReps) {
        throw UsageError("--reps must be between 1 and " + std::to_string(kMaxReps));
      }
    } else if (f == "--json") {
      o.json_path = file_name(f, args.value());
    } else if (f == "--markdown") {
      o.markdown_path = file_name(f, args.value());
    } else if (f == "--plot") {
      o.plot_path = file_name(f, args.value());
    } else if (f == "--list") {
      args.no_value();
      o.list = true;
    } else if (f == "--help" || f == "-h") {
      o.help = true;
    } else if (f == "--syscall-child") {
      SyscallChildArgs child;
      child.workload = args.value();
      child.impl = args.value();
      child.units = parse_number<std::uint64_t>(f, args.value());
      o.syscall_child = std::move(child);
    } else {
      throw UsageError("unknown argument '" + std::string(f) + "'");
    }
  }
  if (quick && full) throw UsageError("--quick and --full exclude each other");
  if (quick) o.size = Size::quick;
  if (full) o.size = Size::full;
  return o;
}

void print_usage(std::ostream& out) {
  out << "usage: evh-bench [--workload NAME[,NAME...]] [--impl NAME[,NAME...]] [--quick | --full]\n"
         "                 [--reps N] [--json FILE] [--markdown FILE] [--plot FILE.svg] [--list]\n"
         "\n"
         "Runs the evh latency benchmarks and their peers in one process and prints one table:\n"
         "median (min-max) of the repetitions, '*' on the best impl of each row.\n"
         "\n"
         "  --workload  only these workloads (see --list)\n"
         "  --impl      only these impls (see --list)\n"
         "  --quick     smaller sizes: the whole suite in well under 2 minutes\n"
         "  --full      the sizes of BENCHMARKS.md (the default too)\n"
         "  --reps N    repetitions per cell, interleaved across impls (default 3)\n"
         "  --json      write the results as JSON (schema 1)\n"
         "  --markdown  write the table as GitHub markdown\n"
         "  --plot      write latency percentile curves as an SVG\n"
         "  --list      print the workloads and impls of this build\n";
}

}  // namespace evh::bench
