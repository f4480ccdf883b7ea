// bench/process_bench.cc — process_spawn (BENCHMARKS.md): start and reap 2,000 /bin/true;
// stream 256 MiB through cat. Impls: evh (ProcessManager, exits and data as port messages),
// raw (posix_spawn + waitpid; a blocking read loop), and the peers that can start processes
// (libuv: uv_spawn).
//
// Both phases feed every impl the same way: the spawns keep kInFlight children running at
// once (a new one as soon as one is reaped); cat's stdin is a pipe that one feeder thread
// fills with the same bytes for every impl, and the measured stream is cat's stdout.
//
// The stream's consumer runs where each impl's reader runs, as the peers' does: raw counts the
// bytes in its read loop, libuv in its read callback on the loop's thread, evh in an isolate on
// the runtime's pool (the worker that read a chunk runs the isolate's turn). `evh-receiver` is
// an extra row, not the target's: the same stream consumed by a plain thread blocked in
// `Receiver::receive()`, a thread hop per chunk that no peer has.

#include <errno.h>
#include <evh/event_handler.h>
#include <evh/process.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "peers.h"
#include "workloads.h"

extern char** environ;

namespace evh::bench {
namespace {

using namespace std::chrono_literals;

constexpr unsigned kInFlight = 16;
constexpr auto kReceiveTimeout = 30s;
const char* const kTrue = "/bin/true";
const char* const kCat = "/bin/cat";

struct ProcessSize {
  std::uint64_t spawns;
  std::uint64_t stream_bytes;
};

ProcessSize process_size(Size size) {
  if (size == Size::quick) return {200, 32u << 20};
  return {2'000, 256u << 20};
}

[[noreturn]] void fail_errno(std::string_view what, int e = errno) {
  throw BenchError(std::string(what) + ": " + std::strerror(e));
}

// ---- the feeder: writes `bytes` into a pipe and closes it; cat's stdin is the read end ----

class Feeder {
 public:
  explicit Feeder(std::uint64_t bytes) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe2");
    read_end = fds[0];
    write_end_ = fds[1];
    thread_ = std::thread([this, bytes] {
      std::vector<char> block(1 << 20, 'e');
      std::uint64_t left = bytes;
      while (left > 0) {
        const ssize_t n =
            ::write(write_end_, block.data(), std::min<std::uint64_t>(left, block.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // the reader went away: the byte count check fails the cell
        left -= static_cast<std::uint64_t>(n);
      }
      ::close(write_end_);
    });
  }
  // Call once the child holds its copy of the read end.
  void child_started() {
    ::close(read_end);
    read_end = -1;
  }
  ~Feeder() {
    if (read_end >= 0) ::close(read_end);  // unblocks the writer if no child ever read
    thread_.join();
  }
  Feeder(const Feeder&) = delete;
  Feeder& operator=(const Feeder&) = delete;

  int read_end = -1;

 private:
  int write_end_ = -1;
  std::thread thread_;
};

// The two phases' figures, each with the process CPU of its phase (this process only: the
// children's CPU is theirs, the same /bin/true and cat for every impl).
struct PhaseFigures {
  std::int64_t spawn_ns = 0;
  double spawn_cpu_ms = 0;
  std::uint64_t bytes = 0;
  std::int64_t stream_ns = 0;
  double stream_cpu_ms = 0;
};

RunResult result(std::uint64_t spawns, const PhaseFigures& f) {
  RunResult out;
  out.metrics.push_back({"spawn_per_s", "spawns/s",
                         static_cast<double>(spawns) * 1e9 / static_cast<double>(f.spawn_ns)});
  out.metrics.push_back(
      {"cpu_us_per_spawn", "us", f.spawn_cpu_ms * 1e3 / static_cast<double>(spawns)});
  out.metrics.push_back(
      {"stdout_mib_per_s", "MiB/s",
       static_cast<double>(f.bytes) / (1 << 20) * 1e9 / static_cast<double>(f.stream_ns)});
  out.metrics.push_back({"stream_cpu_ms", "ms", f.stream_cpu_ms});
  return out;
}

// ---- raw: posix_spawn + waitpid; a blocking read loop ----------------------------------------

pid_t raw_spawn(const char* path, posix_spawn_file_actions_t* actions) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, path, actions, nullptr, argv, environ);
  if (rc != 0) fail_errno("posix_spawn", rc);
  return pid;
}

void raw_reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail_errno("waitpid");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw BenchError("child failed");
}

std::int64_t raw_spawns(std::uint64_t count) {
  const std::int64_t start = now_ns();
  std::uint64_t started = 0;
  std::uint64_t running = 0;
  while (started < count || running > 0) {
    while (started < count && running < kInFlight) {
      (void)raw_spawn(kTrue, nullptr);
      ++started;
      ++running;
    }
    int status = 0;
    if (::waitpid(-1, &status, 0) < 0) {
      if (errno == EINTR) continue;
      fail_errno("waitpid");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw BenchError("child failed");
    --running;
  }
  return now_ns() - start;
}

std::uint64_t raw_stream(Feeder& feeder) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) fail_errno("pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, feeder.read_end, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  const pid_t pid = raw_spawn(kCat, &actions);
  posix_spawn_file_actions_destroy(&actions);
  feeder.child_started();
  ::close(out[1]);
  std::vector<char> buf(64 * 1024);
  std::uint64_t bytes = 0;
  for (;;) {
    const ssize_t n = ::read(out[0], buf.data(), buf.size());
    if (n > 0) {
      bytes += static_cast<std::uint64_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  ::close(out[0]);
  raw_reap(pid);
  return bytes;
}

// ---- evh: a ProcessManager; exits and data arrive at a Receiver ------------------------------

std::int64_t evh_spawns(ProcessManager& pm, Receiver& rx, std::uint64_t count) {
  SpawnOptions o;
  o.argv = {kTrue};
  o.stdin_mode = o.stdout_mode = o.stderr_mode = Stdio::inherit();
  o.events = rx.id();
  const std::int64_t start = now_ns();
  std::uint64_t started = 0;
  std::uint64_t running = 0;
  while (started < count || running > 0) {
    while (started < count && running < kInFlight) {
      (void)take(pm.spawn(o), "spawn");
      ++started;
      ++running;
    }
    Message m = take(rx.receive(kReceiveTimeout), "exit message");
    auto ev = decode_process_event(m);
    if (!ev || ev->kind != ProcessEventKind::exit) throw BenchError("not an exit message");
    if (ev->exit_code != 0) throw BenchError("child failed");
    --running;
  }
  return now_ns() - start;
}

SpawnOptions cat_options(Feeder& feeder, PortId events) {
  SpawnOptions o;
  o.argv = {kCat};
  o.stdin_mode = Stdio::from_fd(feeder.read_end);
  o.stderr_mode = Stdio::inherit();
  o.events = events;
  return o;
}

// The consumer as the peers have it: an isolate that counts the bytes on the thread that read
// them, and posts the count to `rx` at the exit (or kCatFailed).
constexpr std::uint64_t kCatFailed = ~std::uint64_t{0};

IsolateRef spawn_sink(Runtime& rt, Receiver& rx) {
  SendPort done = take(rt.send_port(rx.id()), "send_port");
  return take(rt.spawn(make_handler([done, bytes = std::uint64_t{0}](Isolate&, Message& m) mutable {
    auto ev = decode_process_event(m);
    if (!ev) return;
    if (ev->kind == ProcessEventKind::stdout_data) bytes += ev->data.size();
    if (ev->kind == ProcessEventKind::exit) {
      (void)done.post(Message::u64(ev->exit_code == 0 ? bytes : kCatFailed));
    }
  })),
              "spawn sink");
}

std::uint64_t evh_stream(ProcessManager& pm, Isolate& sink, Receiver& rx, Feeder& feeder) {
  Process p = take(pm.spawn(cat_options(feeder, sink.main_port())), "spawn cat");
  feeder.child_started();
  const std::uint64_t bytes = take(rx.receive(kReceiveTimeout), "byte count").as_u64();
  if (bytes == kCatFailed) throw BenchError("cat failed");
  return bytes;
}

// evh-receiver: every chunk goes to this thread, blocked in receive().
std::uint64_t evh_stream_receiver(ProcessManager& pm, Receiver& rx, Feeder& feeder) {
  Process p = take(pm.spawn(cat_options(feeder, rx.id())), "spawn cat");
  feeder.child_started();
  std::uint64_t bytes = 0;
  for (;;) {
    Message m = take(rx.receive(kReceiveTimeout), "stdout message");
    auto ev = decode_process_event(m);
    if (!ev) throw BenchError("not a process message");
    if (ev->kind == ProcessEventKind::stdout_data) bytes += ev->data.size();
    if (ev->kind == ProcessEventKind::exit) {
      if (ev->exit_code != 0) throw BenchError("cat failed");
      return bytes;
    }
  }
}

// Runs the two phases: `spawn()` returns the ns from the first start to the last reap; `stream`
// gets the feeder and returns the bytes read. Each phase's process CPU is taken around it.
template <class Spawn, class Stream>
PhaseFigures run_phases(ProcessSize size, Spawn&& spawn, Stream&& stream) {
  PhaseFigures f;
  PhaseMeter phase;
  f.spawn_ns = spawn();
  f.spawn_cpu_ms = phase.cpu_ms();
  Feeder feeder(size.stream_bytes);
  ThreadCpuMeter threads;  // EVH_BENCH_THREAD_CPU: each thread's share, a diagnostic
  phase.restart();
  f.bytes = stream(feeder);
  f.stream_ns = phase.wall_ns();
  f.stream_cpu_ms = phase.cpu_ms();
  (void)threads.cpu_ms();
  threads.print_if_asked("process_spawn stream");
  if (f.bytes != size.stream_bytes) throw BenchError("cat lost bytes");
  return f;
}

enum class Consumer { isolate, receiver };

RunResult run_evh(ProcessSize size, Consumer consumer) {
  Runtime rt(evh_options());
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  PhaseFigures f;
  std::string backend;
  {
    ProcessManager pm(rt);
    // Started outside the timed phases.
    backend = take(rt.event_handler(), "event_handler")->backend();
    IsolateRef sink = spawn_sink(rt, rx);
    f = run_phases(
        size, [&] { return evh_spawns(pm, rx, size.spawns); },
        [&](Feeder& feeder) {
          return consumer == Consumer::isolate ? evh_stream(pm, *sink, rx, feeder)
                                               : evh_stream_receiver(pm, rx, feeder);
        });
    sink->kill();
  }
  rt.shutdown();
  RunResult out = result(size.spawns, f);
  out.backend = backend;
  return out;
}

RunResult run_raw(ProcessSize size) {
  return result(size.spawns, run_phases(
                                 size, [&] { return raw_spawns(size.spawns); },
                                 [](Feeder& feeder) { return raw_stream(feeder); }));
}

RunResult run_peer(const PeerImpl& p, ProcessSize size) {
  return result(size.spawns, run_phases(
                                 size, [&] { return p.spawn_true(size.spawns, kInFlight); },
                                 [&](Feeder& feeder) { return p.stream_cat(feeder.read_end); }));
}

RunResult process_spawn(std::string_view impl, ProcessSize size) {
  if (impl == "evh") return run_evh(size, Consumer::isolate);
  if (impl == "evh-receiver") return run_evh(size, Consumer::receiver);
  if (auto b = forced_backend(impl)) {
    BackendScope scope(*b);
    return run_evh(size, Consumer::isolate);
  }
  if (impl == "raw") return run_raw(size);
  if (const PeerImpl* p = find_peer(impl); p != nullptr && p->spawn_true != nullptr) {
    return run_peer(*p, size);
  }
  throw BenchError("process_spawn has no impl " + std::string(impl));
}

std::vector<std::string> process_impls() {
  std::vector<std::string> impls{"evh", "evh-epoll", "evh-uring", "raw", "evh-receiver"};
  for (const PeerImpl* p : built_peers()) {
    if (p->spawn_true != nullptr) impls.emplace_back(p->name);
  }
  return impls;
}

}  // namespace

std::vector<Workload> process_workloads() {
  std::vector<Workload> all;
  all.push_back(
      {"process_spawn", process_impls(), Threading::multi,
       [](std::string_view impl, Size size) { return process_spawn(impl, process_size(size)); },
       std::nullopt});
  return all;
}

}  // namespace evh::bench
