// bench/fd_bench.cc — fd readiness through the event handler: fd_event_latency and fd_fanout
// (BENCHMARKS.md), for evh and for the raw floor: one thread in a hand-written epoll loop.

#include <errno.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/receiver.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <future>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "peers.h"
#include "workloads.h"

namespace evh::bench {
namespace {

using namespace std::chrono_literals;

constexpr auto kReplyTimeout = 10s;
constexpr auto kPhaseTimeout = 120s;

[[noreturn]] void fail_errno(std::string_view what) {
  throw BenchError(std::string(what) + ": " + std::strerror(errno));
}

// A pipe closed when it goes out of scope. `read_nonblock` picks the read end's mode; the write
// end is always blocking (the writers here never fill a pipe).
struct BenchPipe {
  int r = -1;
  int w = -1;
  explicit BenchPipe(bool read_nonblock) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe2");
    r = fds[0];
    w = fds[1];
    if (read_nonblock && ::fcntl(r, F_SETFL, O_NONBLOCK) != 0) fail_errno("fcntl");
  }
  ~BenchPipe() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
  BenchPipe(BenchPipe&& o) noexcept : r(o.r), w(o.w) { o.r = o.w = -1; }
  BenchPipe(const BenchPipe&) = delete;
  BenchPipe& operator=(const BenchPipe&) = delete;
};

// `calls`, when given, counts the system calls made (loop_syscalls_per_event subtracts them).
void write_byte(int fd, std::uint64_t* calls = nullptr) {
  const char c = 'x';
  for (;;) {
    if (calls != nullptr) ++*calls;
    if (::write(fd, &c, 1) == 1) return;
    if (errno != EINTR) fail_errno("write");
  }
}

// Blocking read of at least one byte.
void read_byte(int fd) {
  char c[16];
  while (::read(fd, c, sizeof c) <= 0) {
    if (errno != EINTR) fail_errno("read");
  }
}

// Reads what a non-blocking fd holds; returns the byte count. `calls`, when given, counts the
// reads made.
std::size_t drain(int fd, std::uint64_t* calls = nullptr) {
  char buf[256];
  std::size_t total = 0;
  for (;;) {
    if (calls != nullptr) ++*calls;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      total += static_cast<std::size_t>(n);
      if (static_cast<std::size_t>(n) < sizeof buf) return total;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return total;
    }
  }
}

// ---- fd_event_latency -----------------------------------------------------------------------

// fd_event_latency_loaded's background: one busy thread per CPU at nice 19, the same for every
// impl, so that the figure shows what a thread wakeup costs when the machine is not idle (issue
// 15: with a compile beside it, a second wakeup per event tripled evh's round trip). Its threads
// are left out of the impl's CPU (latency_loop).
class BackgroundLoad {
 public:
  BackgroundLoad() : spins_(std::max(1u, std::thread::hardware_concurrency())) {
    const unsigned n = static_cast<unsigned>(spins_.size());
    tids_.resize(n);
    std::atomic<unsigned> ready{0};
    for (unsigned i = 0; i < n; ++i) {
      threads_.emplace_back([this, i, &ready] {
        (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
        tids_[i] = current_tid();
        ready.fetch_add(1);
        std::uint64_t n = 0;
        while (!stop_.load(std::memory_order_relaxed)) {
          spins_[i].n.store(++n, std::memory_order_relaxed);  // read only by spins()
        }
      });
    }
    while (ready.load() < n) std::this_thread::yield();
  }
  ~BackgroundLoad() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
  }
  BackgroundLoad(const BackgroundLoad&) = delete;
  BackgroundLoad& operator=(const BackgroundLoad&) = delete;

  const std::vector<int>& tids() const noexcept { return tids_; }
  // Loop turns of the load so far, and the CPU its threads used: their ratio, compared between
  // repetitions, says whether a repetition ran on a machine that gave a CPU second less work
  // (EVH_BENCH_THREAD_CPU prints it; no figure depends on it).
  std::uint64_t spins() const noexcept {
    std::uint64_t total = 0;
    for (const Spins& c : spins_) total += c.n.load(std::memory_order_relaxed);
    return total;
  }
  std::int64_t cpu_ns() const noexcept {
    std::int64_t total = 0;
    for (int tid : tids_) total += std::max<std::int64_t>(0, thread_cpu_ns(tid));
    return total;
  }

 private:
  struct alignas(64) Spins {
    std::atomic<std::uint64_t> n{0};
  };
  std::vector<Spins> spins_;
  std::atomic<bool> stop_{false};
  std::vector<int> tids_;
  std::vector<std::thread> threads_;
};

struct LatencySize {
  std::uint64_t warmup;
  std::uint64_t count;
  const BackgroundLoad* load = nullptr;  // fd_event_latency_loaded: its CPU is not the impl's
};

LatencySize latency_size(Size size) {
  if (size == Size::quick) return {200, 10'000};
  return {2'000, 100'000};
}

struct LatencySamples {
  std::vector<std::int64_t> rtt_ns;
  double cpu_us_per_rtt = 0;  // the measured threads' CPU over the measured round trips
};

// The measuring thread: one byte out on `to`, blocks for one byte back on `from`. The CPU is that
// of every thread of the process but the background load's (ThreadCpuMeter: each thread's own
// clock, the same for every impl) over the measured round trips; the warm-up is left out.
LatencySamples latency_loop(int to, int from, LatencySize size) {
  LatencySamples out;
  out.rtt_ns.reserve(size.count);
  ThreadCpuMeter cpu(size.load != nullptr ? size.load->tids() : std::vector<int>{});
  std::int64_t start = 0;
  std::uint64_t load_spins = 0;
  std::int64_t load_cpu = 0;
  for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
    if (i == size.warmup) {
      cpu.restart();
      start = now_ns();
      if (size.load != nullptr) {
        load_spins = size.load->spins();
        load_cpu = size.load->cpu_ns();
      }
    }
    const std::int64_t sent = now_ns();
    write_byte(to);
    read_byte(from);
    const std::int64_t received = now_ns();
    if (i >= size.warmup) out.rtt_ns.push_back(received - sent);
  }
  const double cpu_ms = cpu.cpu_ms();
  cpu.print_if_asked(size.load != nullptr ? "fd_event_latency_loaded" : "fd_event_latency");
  if (std::getenv("EVH_BENCH_THREAD_CPU") != nullptr) {
    // Beside the threads' CPU: the phase's wall time, the round trips over 100 µs, and the
    // load's loop turns per µs of its CPU (a diagnostic of the machine, the same for every impl).
    const auto slow = std::count_if(out.rtt_ns.begin(), out.rtt_ns.end(),
                                    [](std::int64_t ns) { return ns > 100'000; });
    std::fprintf(stderr, "  wall=%.2fs rtt>100us=%lld", static_cast<double>(now_ns() - start) / 1e9,
                 static_cast<long long>(slow));
    if (size.load != nullptr) {
      const double load_us = static_cast<double>(size.load->cpu_ns() - load_cpu) / 1e3;
      std::fprintf(
          stderr, " load_cpu=%.0fms load_spins_per_us=%.1f", load_us / 1e3,
          load_us > 0 ? static_cast<double>(size.load->spins() - load_spins) / load_us : 0.0);
    }
    std::fprintf(stderr, "\n");
  }
  out.cpu_us_per_rtt = size.count == 0 ? 0 : cpu_ms * 1e3 / static_cast<double>(size.count);
  return out;
}

RunResult latency_result(LatencySamples& samples) {
  RunResult out;
  add_latency_metrics(out, "rtt", "", samples.rtt_ns, {{50, "p50"}, {99, "p99"}});
  out.metrics.push_back({"cpu_us_per_rtt", "us", samples.cpu_us_per_rtt});
  return out;
}

// raw: a thread in epoll_wait on the request pipe (edge-triggered), answering each request.
RunResult raw_fd_latency(LatencySize size) {
  BenchPipe req(/*read_nonblock=*/true);
  BenchPipe rep(/*read_nonblock=*/false);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail_errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.fd = req.r;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, req.r, &ev) != 0) fail_errno("epoll_ctl");
  std::thread loop([&] {
    epoll_event events[64];
    for (;;) {
      const int n = ::epoll_wait(ep, events, 64, -1);
      if (n < 0 && errno == EINTR) continue;
      for (int i = 0; i < n; ++i) {
        if ((events[i].events & EPOLLHUP) != 0) return;  // the writer closed: done
        drain(req.r);
        write_byte(rep.w);
      }
    }
  });
  LatencySamples samples;
  std::exception_ptr error;
  try {
    samples = latency_loop(req.w, rep.r, size);
  } catch (...) {
    error = std::current_exception();
  }
  ::close(req.w);
  req.w = -1;
  loop.join();
  ::close(ep);
  if (error) std::rethrow_exception(error);
  return latency_result(samples);
}

// evh: an isolate registered for the request pipe (edge mode) reads it and answers.
RunResult evh_fd_latency(LatencySize size) {
  BenchPipe req(/*read_nonblock=*/true);
  BenchPipe rep(/*read_nonblock=*/false);
  Runtime rt(evh_options());
  EventHandler* eh = take(rt.event_handler(), "event_handler");
  const std::string backend = eh->backend();
  const int req_r = req.r;
  const int rep_w = rep.w;
  IsolateRef echo = take(rt.spawn(make_handler([req_r, rep_w](Isolate&, Message& m) {
    auto ev = decode_io_event(m);
    if (!ev || ev->notice != IoNotice::ready) return;
    drain(req_r);
    write_byte(rep_w);
  })),
                         "spawn");
  check(eh->add_fd(req.r, echo->main_port(), FdEvents::readable, {.mode = FdMode::edge}), "add_fd");
  LatencySamples samples;
  {
    ShutdownAtExit stop(rt);  // joins the I/O thread and the pool before the pipes close
    samples = latency_loop(req.w, rep.r, size);
  }
  RunResult out = latency_result(samples);
  out.backend = backend;
  return out;
}

// peers: the peer's loop answers each request, exactly as raw's epoll thread does.
RunResult peer_fd_latency(const PeerImpl& p, LatencySize size) {
  BenchPipe req(/*read_nonblock=*/true);
  BenchPipe rep(/*read_nonblock=*/false);
  const int rep_w = rep.w;
  LatencySamples samples;
  p.serve_fds(
      std::span<const int>(&req.r, 1),
      [rep_w](int fd) {
        drain(fd);
        write_byte(rep_w);
      },
      [&] { samples = latency_loop(req.w, rep.r, size); });
  return latency_result(samples);
}

RunResult fd_event_latency(std::string_view impl, LatencySize size) {
  if (auto b = forced_backend(impl)) {
    BackendScope scope(*b);
    return evh_fd_latency(size);
  }
  if (impl == "evh") return evh_fd_latency(size);
  if (impl == "raw") return raw_fd_latency(size);
  if (const PeerImpl* p = find_peer(impl)) return peer_fd_latency(*p, size);
  throw BenchError("fd_event_latency has no impl " + std::string(impl));
}

// ---- fd_fanout ------------------------------------------------------------------------------

constexpr std::size_t kFanoutPipes = 10'000;
constexpr std::uint64_t kWritesPerSecond = 100'000;
constexpr auto kBatchInterval = 1ms;  // writes go out in batches, one per interval

std::uint64_t fanout_writes(Size size) {
  return size == Size::quick ? 20'000 : 200'000;
}

// Raises the soft fd limit to the hard one, and says how many pipes fit.
std::size_t fanout_pipes() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  constexpr std::size_t kSpareFds = 256;  // the runtime, the tools, stdio
  const std::size_t fit = rl.rlim_cur == RLIM_INFINITY
                              ? kFanoutPipes
                              : (static_cast<std::size_t>(rl.rlim_cur) - kSpareFds) / 2;
  if (fit < kFanoutPipes) {
    static bool said = false;
    if (!said) {
      std::fprintf(stderr, "fd_fanout: RLIMIT_NOFILE %llu allows %zu pipes, not %zu\n",
                   static_cast<unsigned long long>(rl.rlim_cur), fit, kFanoutPipes);
      said = true;
    }
    return fit;
  }
  return kFanoutPipes;
}

std::vector<BenchPipe> make_pipes(std::size_t n) {
  std::vector<BenchPipe> pipes;
  pipes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) pipes.emplace_back(/*read_nonblock=*/true);
  return pipes;
}

// Writes `writes` bytes to pipes picked at random (fixed seed), kWritesPerSecond on average, in
// batches every kBatchInterval; sleeps between batches on an absolute schedule (no drift).
// Returns the system calls it made (writes and sleeps).
std::uint64_t fanout_writer(const std::vector<BenchPipe>& pipes, std::uint64_t writes) {
  std::uint64_t calls = 0;
  std::mt19937_64 rng(42);
  const std::uint64_t per_batch =
      kWritesPerSecond *
      std::chrono::duration_cast<std::chrono::microseconds>(kBatchInterval).count() / 1'000'000;
  timespec next{};
  ::clock_gettime(CLOCK_MONOTONIC, &next);
  std::uint64_t done = 0;
  while (done < writes) {
    for (std::uint64_t i = 0; i < per_batch && done < writes; ++i, ++done) {
      write_byte(pipes[rng() % pipes.size()].w, &calls);
    }
    next.tv_nsec += std::chrono::nanoseconds(kBatchInterval).count();
    if (next.tv_nsec >= 1'000'000'000) {
      next.tv_nsec -= 1'000'000'000;
      ++next.tv_sec;
    }
    do {
      ++calls;
    } while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) == EINTR);
  }
  return calls;
}

RunResult fanout_result(std::uint64_t events, std::int64_t start, std::int64_t end, double cpu) {
  RunResult out;
  out.metrics.push_back(
      {"events_per_s", "events/s", static_cast<double>(events) * 1e9 / (end - start)});
  out.metrics.push_back({"cpu_ms", "ms", cpu});
  return out;
}

// The fan-out runs below add the system calls the benchmark's own code made (the writer's writes
// and sleeps, the handlers' reads) to `*own_calls` when it is given: what the syscall probe
// subtracts for loop_syscalls_per_event.

// raw: one thread, one epoll instance, every read end edge-triggered.
RunResult raw_fanout(std::uint64_t writes, std::uint64_t* own_calls = nullptr) {
  const ScopedPlacement at_loop(ThreadRole::loop);  // --pin-threads: the loop thread's CPU
  std::vector<BenchPipe> pipes = make_pipes(fanout_pipes());
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail_errno("epoll_create1");
  for (const auto& p : pipes) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = p.r;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, p.r, &ev) != 0) fail_errno("epoll_ctl");
  }
  std::uint64_t events = 0;
  std::uint64_t reads = 0;  // owned by the loop's thread until it is joined
  std::thread loop([&] {
    std::vector<epoll_event> batch(1024);
    std::uint64_t bytes = 0;
    while (bytes < writes) {
      const int n = ::epoll_wait(ep, batch.data(), static_cast<int>(batch.size()), 10'000);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return;  // a timeout: lost events; the byte count check below fails the cell
      }
      for (int i = 0; i < n; ++i) {
        bytes += drain(batch[i].data.fd, &reads);
        ++events;
      }
    }
  });
  const ScopedPlacement at_sender(ThreadRole::sender);
  ThreadCpuMeter threads;  // EVH_BENCH_THREAD_CPU: each thread's share, a diagnostic
  const double cpu0 = process_cpu_ms();
  const std::int64_t start = now_ns();
  const std::uint64_t writer_calls = fanout_writer(pipes, writes);
  loop.join();
  const std::int64_t end = now_ns();
  const double cpu = process_cpu_ms() - cpu0;
  (void)threads.cpu_ms();
  threads.print_if_asked("fd_fanout raw");
  ::close(ep);
  if (events == 0) throw BenchError("raw fan-out loop saw no events");
  if (own_calls != nullptr) *own_calls += writer_calls + reads;
  return fanout_result(events, start, end, cpu);
}

// evh: one isolate owns every registration (edge mode); each ready message is one event.
struct FanoutSink {
  std::uint64_t expected_bytes;
  SendPort done;
  std::uint64_t bytes = 0;
  std::uint64_t events = 0;
  std::uint64_t reads = 0;
};

RunResult evh_fanout(std::uint64_t writes, std::uint64_t* own_calls = nullptr) {
  // --pin-threads: the pool's worker, started by event_handler() below, inherits the loop's CPU.
  const ScopedPlacement at_loop(ThreadRole::loop);
  std::vector<BenchPipe> pipes = make_pipes(fanout_pipes());
  Runtime rt(evh_options());
  EventHandler* eh = take(rt.event_handler(), "event_handler");
  const std::string backend = eh->backend();
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  FanoutSink sink{writes, take(rt.send_port(rx.id()), "send_port"), 0, 0};
  ShutdownAtExit stop(rt);  // the handler borrows `sink`
  IsolateRef iso = take(rt.spawn(make_handler([&sink](Isolate&, Message& m) {
    auto ev = decode_io_event(m);
    if (!ev || ev->notice != IoNotice::ready) return;
    ++sink.events;
    sink.bytes += drain(ev->fd, &sink.reads);
    if (sink.bytes == sink.expected_bytes) {
      (void)sink.done.post(Message::u64(sink.events));
    }
  })),
                        "spawn");
  for (const auto& p : pipes) {
    check(eh->add_fd(p.r, iso->main_port(), FdEvents::readable, {.mode = FdMode::edge}), "add_fd");
  }
  // A fence: the timeout is posted after every add above has been executed.
  check(eh->set_timeout(rx.id(), EventHandler::Clock::now()), "set_timeout");
  (void)take(rx.receive(kReplyTimeout), "registration fence");

  const ScopedPlacement at_sender(ThreadRole::sender);
  ThreadCpuMeter threads;  // EVH_BENCH_THREAD_CPU: each thread's share, a diagnostic
  const double cpu0 = process_cpu_ms();
  const std::int64_t start = now_ns();
  const std::uint64_t writer_calls = fanout_writer(pipes, writes);
  Message done = take(rx.receive(kPhaseTimeout), "fan-out completion");
  const std::int64_t end = now_ns();
  const double cpu = process_cpu_ms() - cpu0;
  (void)threads.cpu_ms();
  threads.print_if_asked("fd_fanout evh " + backend);
  rt.shutdown();
  // After the shutdown: the pool has joined, so no turn of the isolate still reads.
  if (own_calls != nullptr) *own_calls += writer_calls + sink.reads;
  RunResult out = fanout_result(done.as_u64(), start, end, cpu);
  out.backend = backend;
  return out;
}

// peers: every read end registered on the peer's loop; each readiness callback is one event.
RunResult peer_fanout(const PeerImpl& p, std::uint64_t writes, std::uint64_t* own_calls = nullptr) {
  std::vector<BenchPipe> pipes = make_pipes(fanout_pipes());
  std::vector<int> fds;
  fds.reserve(pipes.size());
  for (const auto& pipe : pipes) fds.push_back(pipe.r);
  std::uint64_t bytes = 0;   // owned by the loop's thread
  std::uint64_t events = 0;  // owned by the loop's thread
  std::uint64_t reads = 0;   // owned by the loop's thread until serve_fds returns
  std::uint64_t writer_calls = 0;
  std::promise<std::uint64_t> done;
  std::future<std::uint64_t> finished = done.get_future();
  double cpu = 0;
  std::int64_t start = 0;
  std::int64_t end = 0;
  std::uint64_t seen = 0;
  const ScopedPlacement at_loop(ThreadRole::loop);  // --pin-threads: the peer's loop thread
  p.serve_fds(
      fds,
      [&](int fd) {
        ++events;
        bytes += drain(fd, &reads);
        if (bytes == writes) done.set_value(events);
      },
      [&] {
        const ScopedPlacement at_sender(ThreadRole::sender);
        ThreadCpuMeter threads;  // EVH_BENCH_THREAD_CPU: each thread's share, a diagnostic
        const double cpu0 = process_cpu_ms();
        start = now_ns();
        writer_calls = fanout_writer(pipes, writes);
        if (finished.wait_for(kPhaseTimeout) != std::future_status::ready) {
          throw BenchError("fan-out loop did not see every byte");
        }
        seen = finished.get();
        end = now_ns();
        cpu = process_cpu_ms() - cpu0;
        (void)threads.cpu_ms();
        threads.print_if_asked("fd_fanout " + std::string(p.name));
      });
  if (own_calls != nullptr) *own_calls += writer_calls + reads;
  return fanout_result(seen, start, end, cpu);
}

RunResult fd_fanout(std::string_view impl, std::uint64_t writes,
                    std::uint64_t* own_calls = nullptr) {
  if (auto b = forced_backend(impl)) {
    BackendScope scope(*b);
    return evh_fanout(writes, own_calls);
  }
  if (impl == "evh") return evh_fanout(writes, own_calls);
  if (impl == "raw") return raw_fanout(writes, own_calls);
  if (const PeerImpl* p = find_peer(impl)) return peer_fanout(*p, writes, own_calls);
  throw BenchError("fd_fanout has no impl " + std::string(impl));
}

}  // namespace

std::vector<Workload> fd_workloads() {
  std::vector<Workload> all;
  all.push_back(
      {"fd_event_latency", with_peers({"evh", "evh-epoll", "evh-uring", "raw"}), Threading::multi,
       [](std::string_view impl, Size size) { return fd_event_latency(impl, latency_size(size)); },
       std::nullopt});
  all.push_back({"fd_event_latency_loaded", with_peers({"evh", "evh-epoll", "evh-uring", "raw"}),
                 Threading::multi,
                 [](std::string_view impl, Size size) {
                   BackgroundLoad load;
                   LatencySize s = latency_size(size);
                   s.load = &load;
                   return fd_event_latency(impl, s);
                 },
                 std::nullopt});
  // syscalls_per_event counts every call of the process, the benchmark's own too: the writer's
  // write() per write and sleep per batch, the handler's read() per event (fewer than one per
  // write when the loop lags and two writes to one pipe are read together, so not the same for
  // every impl). loop_syscalls_per_event leaves out those the benchmark's code counted itself:
  // what is left is the event loop's and its runtime's. Units are writes; with 10,000 pipes
  // almost every write is an event of its own.
  all.push_back(
      {"fd_fanout", with_peers({"evh", "evh-epoll", "evh-uring", "raw"}), Threading::multi,
       [](std::string_view impl, Size size) { return fd_fanout(impl, fanout_writes(size)); },
       SyscallProbe{
           "syscalls_per_event",
           [](Size size) -> std::uint64_t { return size == Size::quick ? 5'000 : 20'000; },
           [](std::string_view impl, std::uint64_t units) { (void)fd_fanout(impl, units); },
           "loop_syscalls_per_event",
           [](std::string_view impl, std::uint64_t units) -> std::uint64_t {
             std::uint64_t own = 0;
             (void)fd_fanout(impl, units, &own);
             return own;
           }}});
  return all;
}

}  // namespace evh::bench
