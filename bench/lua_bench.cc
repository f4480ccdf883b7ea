// bench/lua_bench.cc — the Lua workloads (BENCHMARKS.md): `lua_timer_batch`, `lua_pingpong` and
// `lua_process_stream`, the jobs of timer_batch_100k, isolate_pingpong and process_spawn's stream
// written in Lua 5.4, and `lua_idle_states` (isolate_spawn's idle cost, for Lua states). Impls:
// `evh-lua` (lua/, Lua states as isolates) and `luv` (lua5.4 with Debian's lua-luv: libuv for Lua,
// what a Lua user picks today).
//
// Each cell runs one script as a child process — lua/bench/evh_<job>.lua under evh-lua,
// lua/bench/luv_<job>.lua under lua5.4 — with the same arguments and input, and reads back what
// the script measured around its own phase (CLOCK_MONOTONIC through evh.now or uv.hrtime, both
// the same clock; process CPU through os.clock). The metrics are computed here, by the same
// lines for both impls: a script reports raw samples, never a percentile. Interpreter start-up
// and the script's set-up are outside every measured phase.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "measure.h"
#include "timer_common.h"
#include "workloads.h"

extern char** environ;

namespace evh::bench {
namespace {

#ifdef EVH_BENCH_LUA_BINARY
constexpr bool kHaveEvhLua = true;
const char* const kEvhLua = EVH_BENCH_LUA_BINARY;
#else
constexpr bool kHaveEvhLua = false;
const char* const kEvhLua = "";
#endif
#ifdef EVH_BENCH_HAVE_LUV
constexpr bool kHaveLuv = true;
#else
constexpr bool kHaveLuv = false;
#endif
#ifdef EVH_BENCH_LUA_SCRIPTS
const char* const kScripts = EVH_BENCH_LUA_SCRIPTS;
#else
const char* const kScripts = "";
#endif

// What a script printed: "name value" lines, and sample lists ("samples name", one value per
// line, "end").
struct ScriptOutput {
  std::map<std::string, double> values;
  std::map<std::string, std::vector<std::int64_t>> samples;

  double value(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) throw BenchError("the script did not report " + name);
    return it->second;
  }
  std::vector<std::int64_t>& sample(const std::string& name) {
    auto it = samples.find(name);
    if (it == samples.end()) throw BenchError("the script did not report samples " + name);
    return it->second;
  }
};

ScriptOutput parse(const std::string& text) {
  ScriptOutput out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto space = line.find(' ');
    if (space == std::string::npos) throw BenchError("unexpected script output: " + line);
    const std::string name = line.substr(0, space);
    const std::string rest = line.substr(space + 1);
    if (name == "samples") {
      auto& list = out.samples[rest];
      while (std::getline(in, line) && line != "end") {
        // uv.hrtime is a float in luv: "123.0" (or "1.5e+06") reads the same way.
        list.push_back(static_cast<std::int64_t>(std::strtod(line.c_str(), nullptr)));
      }
    } else {
      out.values[name] = std::strtod(rest.c_str(), nullptr);
    }
  }
  return out;
}

[[noreturn]] void fail_errno(const std::string& what, int e = errno) {
  throw BenchError(what + ": " + std::strerror(e));
}

// Runs `argv` with `input` on its stdin and returns what it wrote on stdout; its stderr is ours.
// A non-zero exit fails the cell.
std::string run_child(const std::vector<std::string>& argv, const std::string& input) {
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) fail_errno("pipe2");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    fail_errno("pipe2");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    fail_errno("posix_spawnp " + argv[0], rc);
  }
  // The scripts read all their input before they write anything: no deadlock writing first.
  std::size_t written = 0;
  while (written < input.size()) {
    const ssize_t n = ::write(in[1], input.data() + written, input.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail_errno("waitpid");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw BenchError(argv[0] + " " + argv[1] + " failed (status " + std::to_string(status) + ")");
  }
  return text;
}

// The command line of `job` for `impl`: evh-lua evh_<job>.lua or lua5.4 luv_<job>.lua, then
// `args`.
std::vector<std::string> command(std::string_view impl, const std::string& job,
                                 const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  if (impl == "evh-lua") {
    argv = {kEvhLua, std::string(kScripts) + "/evh_" + job + ".lua"};
  } else if (impl == "luv") {
    argv = {"lua5.4", std::string(kScripts) + "/luv_" + job + ".lua"};
  } else {
    throw BenchError("unknown impl " + std::string(impl));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// ---- lua_timer_batch: timer_batch_100k's job, from Lua -----------------------------------------

// Both Lua impls arm with relative delays (Lua has no absolute-deadline timer call in either
// library) and each script measures lateness against a clock read just before its own start
// call plus the delay: one reference for the two rows, though not evh-bench's BatchBook (the
// scripts run in a child process). The delays are BatchBook's offsets plus the lead.
std::vector<std::int64_t> lua_delays(const BatchSize& b) {
  std::mt19937_64 rng(kTimerSeed);
  std::vector<std::int64_t> delays(b.count);
  for (auto& d : delays) d = b.lead_ns + static_cast<std::int64_t>(rng() % b.spread_ns);
  return delays;
}

RunResult lua_timer_batch(std::string_view impl, Size size) {
  const BatchSize b = size == Size::quick ? BatchSize{20'000, 150'000'000, 1'000'000'000}
                                          : BatchSize{100'000, 150'000'000, 1'000'000'000};
  const std::vector<std::int64_t> delays = lua_delays(b);
  std::string input = std::to_string(delays.size()) + "\n";
  for (std::int64_t d : delays) input += std::to_string(d) + "\n";
  ScriptOutput s = parse(run_child(command(impl, "timer_batch", {}), input));
  const auto per = [&b](double v) { return v / static_cast<double>(b.count); };
  RunResult out;
  out.metrics.push_back({"arm_ns_per_timer", "ns", per(s.value("arm_ns_total"))});
  out.metrics.push_back({"cpu_ms", "ms", s.value("cpu_ms")});
  out.metrics.push_back({"wall_ms", "ms", s.value("wall_ms")});
  out.metrics.push_back(
      {"overrun_ms", "ms", (s.value("last_fire_ns") - s.value("last_deadline_ns")) / 1e6});
  std::vector<std::int64_t>& late = s.sample("late_ns");
  if (late.size() != b.count) throw BenchError("fires: " + std::to_string(late.size()));
  add_latency_metrics(out, "late", "", late,
                      {{50, "p50"}, {99, "p99"}, {99.9, "p999"}, {100, "max"}});
  out.metrics.push_back({"early_fires", "count", s.value("early")});
  out.metrics.push_back({"bytes_per_timer", "bytes", per(s.value("bytes"))});
  return out;
}

// ---- lua_pingpong: two states exchanging a number -----------------------------------------------

RunResult lua_pingpong(std::string_view impl, Size size) {
  const std::uint64_t n = size == Size::quick ? 20'000 : 100'000;
  const std::uint64_t warmup = 2'000;
  ScriptOutput s = parse(run_child(
      command(impl, "pingpong", {std::to_string(n), std::to_string(warmup)}), std::string()));
  std::vector<std::int64_t>& rtt = s.sample("rtt_ns");
  if (rtt.size() != n) throw BenchError("round trips: " + std::to_string(rtt.size()));
  RunResult out;
  add_latency_metrics(out, "rtt", "", rtt, {{50, "p50"}, {99, "p99"}, {99.9, "p999"}});
  out.metrics.push_back(
      {"cpu_us_per_rtt", "us", s.value("cpu_ms") * 1000.0 / static_cast<double>(n)});
  return out;
}

// ---- lua_process_stream: a child's output read in Lua -------------------------------------------

RunResult lua_process_stream(std::string_view impl, Size size) {
  const std::uint64_t bytes = size == Size::quick ? 32ull << 20 : 100ull << 20;
  ScriptOutput s =
      parse(run_child(command(impl, "process_stream", {std::to_string(bytes)}), std::string()));
  if (static_cast<std::uint64_t>(s.value("bytes")) != bytes) throw BenchError("bytes lost");
  RunResult out;
  out.metrics.push_back({"stdout_mib_per_s", "MiB/s",
                         static_cast<double>(bytes) / (1 << 20) / (s.value("wall_ms") / 1000.0)});
  out.metrics.push_back({"cpu_ms", "ms", s.value("cpu_ms")});
  return out;
}

// ---- lua_idle_states: what a started state costs while it waits -------------------------------

RunResult lua_idle_states(std::string_view impl, Size size) {
  const std::uint64_t n = size == Size::quick ? 200 : 1'000;
  ScriptOutput s =
      parse(run_child(command(impl, "idle_states", {std::to_string(n)}), std::string()));
  const double count = static_cast<double>(n);
  RunResult out;
  out.metrics.push_back({"bytes_per_idle_state", "bytes", s.value("bytes") / count});
  out.metrics.push_back({"start_us_per_state", "us", s.value("wall_ms") * 1000.0 / count});
  out.metrics.push_back({"cpu_us_per_state", "us", s.value("cpu_ms") * 1000.0 / count});
  return out;
}

}  // namespace

std::vector<Workload> lua_workloads() {
  std::vector<std::string> impls;
  if (kHaveEvhLua) impls.emplace_back("evh-lua");
  if (kHaveLuv) impls.emplace_back("luv");
  if (impls.empty()) return {};
  return {
      {"lua_timer_batch", impls, Threading::multi, &lua_timer_batch, std::nullopt},
      {"lua_pingpong", impls, Threading::multi, &lua_pingpong, std::nullopt},
      {"lua_process_stream", impls, Threading::multi, &lua_process_stream, std::nullopt},
      {"lua_idle_states", impls, Threading::multi, &lua_idle_states, std::nullopt},
  };
}

}  // namespace evh::bench
