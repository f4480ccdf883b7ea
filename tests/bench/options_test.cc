#include "options.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

namespace evh::bench {
namespace {

// argv from a list of words; the program name comes first.
Options parse(std::initializer_list<const char*> words) {
  std::vector<std::string> args = {"evh-bench"};
  args.insert(args.end(), words.begin(), words.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

TEST(Options, NoArgumentsMeansEverythingAtDefaultSize) {
  const Options o = parse({});
  EXPECT_TRUE(o.workloads.empty());
  EXPECT_TRUE(o.impls.empty());
  EXPECT_EQ(o.size, Size::standard);
  EXPECT_EQ(o.reps, 3);
  EXPECT_FALSE(o.list);
  EXPECT_FALSE(o.help);
  EXPECT_FALSE(o.syscall_child);
}

// The stable interface of BENCHMARKS.md: comma lists, repeated flags, "--flag value" and
// "--flag=value" alike.
TEST(Options, StableInterfaceParses) {
  const Options o =
      parse({"--workload", "timer_batch,port_flood", "--workload=fd_fanout", "--impl", "evh,raw",
             "--quick", "--reps=5", "--json", "out.json", "--markdown", "t.md", "--plot=p.svg"});
  EXPECT_EQ(o.workloads, (std::vector<std::string>{"timer_batch", "port_flood", "fd_fanout"}));
  EXPECT_EQ(o.impls, (std::vector<std::string>{"evh", "raw"}));
  EXPECT_EQ(o.size, Size::quick);
  EXPECT_EQ(o.reps, 5);
  EXPECT_EQ(o.json_path, "out.json");
  EXPECT_EQ(o.markdown_path, "t.md");
  EXPECT_EQ(o.plot_path, "p.svg");
  EXPECT_EQ(parse({"--full"}).size, Size::full);
  EXPECT_TRUE(parse({"--list"}).list);
  EXPECT_TRUE(parse({}).count_syscalls);
  EXPECT_FALSE(parse({"--no-syscalls"}).count_syscalls);
  EXPECT_FALSE(parse({}).pin_threads);
  EXPECT_TRUE(parse({"--pin-threads"}).pin_threads);
  EXPECT_TRUE(parse({"--help"}).help);
  EXPECT_TRUE(parse({"-h"}).help);
}

TEST(Options, MalformedCommandLinesAreUsageErrors) {
  EXPECT_THROW(parse({"--quick", "--full"}), UsageError);
  EXPECT_THROW(parse({"--reps", "0"}), UsageError);
  EXPECT_THROW(parse({"--reps", "1001"}), UsageError);
  EXPECT_THROW(parse({"--reps", "three"}), UsageError);
  EXPECT_THROW(parse({"--workload", "a,,b"}), UsageError);
  EXPECT_THROW(parse({"--json"}), UsageError);
  EXPECT_THROW(parse({"--bogus"}), UsageError);
  EXPECT_THROW(parse({"stray"}), UsageError);
}

// The hidden mode the syscall counter re-executes the binary in.
TEST(Options, SyscallChildMode) {
  const Options o = parse({"--syscall-child", "port_flood", "raw", "20000"});
  ASSERT_TRUE(o.syscall_child);
  EXPECT_EQ(o.syscall_child->workload, "port_flood");
  EXPECT_EQ(o.syscall_child->impl, "raw");
  EXPECT_EQ(o.syscall_child->units, 20000u);
  EXPECT_THROW(parse({"--syscall-child", "port_flood", "raw", "x"}), UsageError);
}

TEST(Options, UsageNamesEveryFlag) {
  std::ostringstream out;
  print_usage(out);
  for (const char* flag : {"--workload", "--impl", "--quick", "--full", "--reps", "--json",
                           "--markdown", "--plot", "--no-syscalls", "--pin-threads", "--list"}) {
    EXPECT_NE(out.str().find(flag), std::string::npos) << flag;
  }
  EXPECT_EQ(out.str().find("--syscall-child"), std::string::npos);
}

}  // namespace
}  // namespace evh::bench
