#include "syscalls.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "stats.h"

extern char** environ;

namespace evh::bench {
namespace {

std::string find_in_path(const char* name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// The binary's own path. strace must be given this, not "/proc/self/exe": that link would name
// strace itself by the time strace execs it.
std::string self_path() {
  char buf[PATH_MAX];
  const ssize_t len = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (len <= 0) return {};
  return std::string(buf, static_cast<std::size_t>(len));
}

// A counted run takes a second or two; one that has not ended after this is hung.
constexpr auto kChildTimeLimit = std::chrono::minutes(2);

struct ChildOutput {
  int status = -1;         // as from waitpid
  bool timed_out = false;  // killed after kChildTimeLimit
  std::string output;      // stdout and stderr, interleaved
};

// Runs argv[0] with stdout and stderr captured; throws BenchError when it cannot start. The
// child leads a process group of its own, so that a hung run is killed together with the
// benchmark process the tool started, not left behind.
ChildOutput run_captured(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw BenchError(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    throw BenchError("cannot start " + args[0] + ": " + std::strerror(rc));
  }
  ChildOutput out;
  const auto deadline = std::chrono::steady_clock::now() + kChildTimeLimit;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{fds[0], POLLIN, 0};
    const int ready = left.count() > 0 ? poll(&pfd, 1, static_cast<int>(left.count())) : 0;
    if (ready == 0) {
      out.timed_out = true;
      kill(-pid, SIGKILL);
      break;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      out.output.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  while (waitpid(pid, &out.status, 0) < 0 && errno == EINTR) {
  }
  return out;
}

constexpr const char* kPerfEvent = "raw_syscalls:sys_enter";

bool parse_count(const std::string& text, std::uint64_t& value) {
  char* end = nullptr;
  errno = 0;
  value = std::strtoull(text.c_str(), &end, 10);
  return !text.empty() && errno == 0 && *end == '\0';
}

bool exited_ok(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// strace -c: the calls column of the summary's "total" line,
//   100.00    0.000123           1       123         5 total
// The errors column is blank when there were none, so the calls are the fourth field either way.
bool parse_strace_total(const std::string& path, std::uint64_t& calls) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.size() >= 5 && f.back() == "total") return parse_count(f[3], calls);
  }
  return false;
}

// perf stat -x, : "4502,,raw_syscalls:sys_enter,3671660,100.00,,". The count field reads
// "<not counted>" or "<not supported>" when perf could not count.
bool parse_perf_count(const std::string& path, std::uint64_t& calls) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string w; std::getline(fields, w, ',');) f.push_back(w);
    if (f.size() >= 3 && f[2] == kPerfEvent) return parse_count(f[0], calls);
  }
  return false;
}

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// A temporary file for strace's summary, removed on destruction.
class TempFile {
 public:
  TempFile() {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/evh-bench-XXXXXX";
    const int fd = mkstemp(path_.data());
    if (fd < 0) throw BenchError("mkstemp " + path_ + ": " + std::strerror(errno));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

}  // namespace

SyscallCounter::SyscallCounter() {
  self_ = self_path();
  if (self_.empty()) {
    description_ = "cannot read /proc/self/exe";
    return;
  }
  // Each tool is tried once on a run that does nothing: a container may have the binary but
  // forbid perf tracepoints (perf_event_paranoid) or ptrace (no CAP_SYS_PTRACE, seccomp).
  std::string why;
  std::uint64_t calls = 0;
  const std::string perf = find_in_path("perf");
  if (!perf.empty() && count_run(Tool::perf, perf, {"--list"}, "", calls, why) && calls > 0) {
    tool_ = Tool::perf;
    tool_path_ = perf;
    description_ = std::string("counting syscalls with perf (") + kPerfEvent + ")";
    return;
  }
  const std::string strace = find_in_path("strace");
  if (!strace.empty() && count_run(Tool::strace, strace, {"--list"}, "", calls, why) && calls > 0) {
    tool_ = Tool::strace;
    tool_path_ = strace;
    description_ = "counting syscalls with strace -f -c";
    return;
  }
  if (perf.empty() && strace.empty()) {
    description_ = "neither perf nor strace is installed";
  } else {
    description_ = "no tool can count syscalls here (" + why + ")";
  }
}

bool SyscallCounter::count_run(Tool tool, const std::string& path,
                               const std::vector<std::string>& child_args, std::string_view expect,
                               std::uint64_t& calls, std::string& why, std::string* output) {
  TempFile out;
  std::vector<std::string> args;
  if (tool == Tool::perf) {
    args = {path, "stat", "-x", ",", "-e", kPerfEvent, "-o", out.path(), "--", self_};
  } else {
    args = {path, "-f", "-c", "-o", out.path(), self_};
  }
  args.insert(args.end(), child_args.begin(), child_args.end());
  ChildOutput child = run_captured(args);
  if (output != nullptr) *output = child.output;
  const bool parsed = tool == Tool::perf ? parse_perf_count(out.path(), calls)
                                         : parse_strace_total(out.path(), calls);
  // The child says how much work it did; a child that ran something else must not count.
  const bool did_work = expect.empty() || child.output.find(expect) != std::string::npos;
  if (child.timed_out) {
    why =
        "killed after running for " +
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kChildTimeLimit).count()) +
        " s";
    return false;
  }
  if (!exited_ok(child.status) || !parsed || !did_work) {
    why = last_line(child.output);
    if (why.empty()) why = "exit status " + std::to_string(child.status);
    return false;
  }
  return true;
}

SyscallCounter::Traced SyscallCounter::traced_calls(std::string_view workload,
                                                    std::string_view impl, std::uint64_t units) {
  Traced t;
  std::string why;
  std::string output;
  if (!count_run(
          tool_, tool_path_,
          {"--syscall-child", std::string(workload), std::string(impl), std::to_string(units)},
          "units " + std::to_string(units) + "\n", t.calls, why, &output)) {
    throw BenchError("counted child run failed: " + why);
  }
  constexpr std::string_view kOwn = "own_calls ";
  if (const std::size_t at = output.find(kOwn); at != std::string::npos) {
    const std::size_t from = at + kOwn.size();
    const std::size_t end = output.find('\n', from);
    std::uint64_t own = 0;
    if (parse_count(output.substr(from, end == std::string::npos ? end : end - from), own)) {
      t.own = own;
    }
  }
  return t;
}

SyscallCounter::PerUnit SyscallCounter::per_unit(const Workload& workload, std::string_view impl,
                                                 Size size, std::string& why) {
  const std::uint64_t units = workload.syscalls->units(size);
  const std::uint64_t small = std::max<std::uint64_t>(1, units / 10);
  const Traced small_run = traced_calls(workload.name, impl, small);
  const Traced large_run = traced_calls(workload.name, impl, units);
  PerUnit out;
  out.all = marginal_per_unit(small_run.calls, small, large_run.calls, units);
  if (!out.all) {
    why = std::to_string(large_run.calls) + " calls for " + std::to_string(units) + " units, " +
          std::to_string(small_run.calls) + " for " + std::to_string(small);
  }
  // The loop's calls: the process's minus those the workload counted itself. A count of its
  // own above the tool's total would mean the tool missed calls: no figure then.
  if (small_run.own && large_run.own && *small_run.own <= small_run.calls &&
      *large_run.own <= large_run.calls) {
    out.loop = marginal_per_unit(small_run.calls - *small_run.own, small,
                                 large_run.calls - *large_run.own, units);
  }
  return out;
}

int run_syscall_child(std::string_view workload, std::string_view impl, std::uint64_t units) {
  const Workload* w = find_workload(workload);
  if (w == nullptr || !w->syscalls) {
    std::fprintf(stderr, "evh-bench: no syscall probe for workload '%.*s'\n",
                 static_cast<int>(workload.size()), workload.data());
    return 2;
  }
  try {
    if (w->syscalls->run_counting_own != nullptr) {
      const std::uint64_t own = w->syscalls->run_counting_own(impl, units);
      std::printf("own_calls %llu\n", static_cast<unsigned long long>(own));
    } else {
      w->syscalls->run(impl, units);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "evh-bench: %s\n", e.what());
    return 1;
  }
  std::printf("units %llu\n", static_cast<unsigned long long>(units));
  return 0;
}

}  // namespace evh::bench
