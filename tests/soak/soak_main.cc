// evh_soak: spawn/kill isolates that hold ports, timers, owned fds, tied children and a shared
// lock, while messages and timers run at full rate from several threads; samples the process's
// resident memory, fd count, thread count and evh's live objects every few seconds, and fails
// when any of them grows beyond its stated bound after warm-up, or when anything is left over
// at the end. Public API only: it is what a runtime built on evh would do for hours.
//
//   evh_soak [--seconds N] [--sample-seconds S] [--threads T]
//
// Exit status 0: clean; 1: a bound was crossed or something leaked (the report says which).
#include <dirent.h>
#include <evh/event_handler.h>
#include <evh/isolate_mutex.h>
#include <evh/process.h>
#include <evh/runtime.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Bounds on growth after warm-up, over the maximum seen during warm-up. Stated here so that the
// report and docs can quote them.
constexpr std::int64_t kRssGrowthBound = 48 << 20;  // bytes
constexpr std::int64_t kFdGrowthBound = 64;
constexpr std::int64_t kThreadGrowthBound = 8;
constexpr std::int64_t kIsolateBound = 4096;   // live at any sample (spawned minus exited)
constexpr std::uint64_t kChurnBacklog = 2048;  // the churn waits while more are live

struct Sample {
  double t_s = 0;
  std::int64_t rss = 0;
  std::int64_t fds = 0;
  std::int64_t threads = 0;
  std::int64_t isolates = 0;
  std::int64_t ports = 0;
  std::int64_t timers = 0;
  std::int64_t payloads_in_flight = 0;
  std::uint64_t cycles = 0;
  std::uint64_t messages = 0;
};

std::int64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

std::int64_t fd_count() {
  std::int64_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n - 1;  // the directory stream's own fd
}

std::int64_t thread_count() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoll(line.c_str() + 8);
  }
  return 0;
}

// Native payloads count their creation and their release, wherever it happens.
struct Payloads {
  std::atomic<std::int64_t> made{0};
  std::atomic<std::int64_t> released{0};
  evh::Message make() {
    made.fetch_add(1, std::memory_order_relaxed);
    return evh::Message::native(this, [](void* self) noexcept {
      static_cast<Payloads*>(self)->released.fetch_add(1, std::memory_order_relaxed);
    });
  }
  std::int64_t in_flight() const {
    return made.load(std::memory_order_relaxed) - released.load(std::memory_order_relaxed);
  }
};

// What one churned isolate holds; freed with the isolate's handler.
struct Holder {
  evh::Timer timers[4];
  bool locked = false;
};

struct Shared {
  evh::Runtime* rt = nullptr;
  evh::ProcessManager* processes = nullptr;
  evh::IsolateMutex lock;
  Payloads payloads;
  std::atomic<std::uint64_t> cycles{0};
  std::atomic<std::uint64_t> messages{0};
  std::atomic<std::uint64_t> children{0};
  std::atomic<bool> stop{false};
};

void tick(evh::Isolate&, evh::Timer&, std::uint64_t) {}

constexpr std::uint64_t kSetup = 1;
constexpr std::uint64_t kSetupWithChild = 2;

// A churned isolate: on its set-up message it opens a second port, arms timers (one periodic),
// registers an owned eventfd, maybe starts a tied child, maybe takes the shared lock and keeps
// it; every other message is counted (native payloads are released by evh after the handler).
evh::IsolateHandler churned(Shared& s) {
  return evh::make_handler(
      [&s, h = std::make_shared<Holder>()](evh::Isolate& self, evh::Message& m) {
        const std::uint64_t what = m.as_u64();
        if (what != kSetup && what != kSetupWithChild) {
          s.messages.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        (void)self.open_port();
        (void)self.start_timer(h->timers[0], 1ms, &tick);
        (void)self.start_timer(h->timers[1], 1h, &tick);
        (void)self.start_periodic(h->timers[2], 2ms, &tick);
        (void)self.start_timer(h->timers[3], 0ns, &tick);
        if (auto eh = self.runtime().event_handler(); eh.ok()) {
          const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
          if (fd >= 0) {
            evh::FdOptions opts;
            opts.owned = true;
            if (!(*eh)->add_fd(fd, self.main_port(), evh::FdEvents::readable, opts).ok()) close(fd);
          }
        }
        if (what == kSetupWithChild) {
          evh::SpawnOptions o;
          o.argv = {"sleep", "30"};
          o.stdin_mode = evh::Stdio::null();
          o.stdout_mode = evh::Stdio::null();
          o.stderr_mode = evh::Stdio::null();
          o.tie_to = &self;
          // The handle is dropped at once: the tie, not the handle, ends the child.
          if (s.processes->spawn(o).ok()) s.children.fetch_add(1, std::memory_order_relaxed);
        }
        if (self.main_port() != evh::PortId::none &&
            (static_cast<std::uint64_t>(self.main_port()) & 3) == 0) {
          const evh::Status st = s.lock.try_lock(self);
          if (st.ok() || st.error() == evh::Errc::owner_died) {
            if (!st.ok()) (void)s.lock.mark_consistent(self);
            h->locked = true;  // held until the kill releases it with "owner died"
          }
        }
      });
}

void churn_loop(Shared& s, unsigned seed) {
  std::mt19937 rng(seed);
  while (!s.stop.load(std::memory_order_relaxed)) {
    // Pacing: kills of running isolates finish on their runners; a loaded machine must not let
    // the churn outrun them without bound. If isolates stopped dying, the churn stalls here and
    // the sampler reports it.
    if (s.rt->stats().isolates_live > kChurnBacklog) {
      std::this_thread::yield();
      continue;
    }
    auto iso = s.rt->spawn(churned(s));
    if (!iso.ok()) continue;
    const evh::PortId port = (*iso)->main_port();
    // A child for one cycle in 16: enough to churn pidfds and pipes without a fork storm.
    const bool child = rng() % 16 == 0;
    (void)s.rt->post(port, evh::Message::u64(child ? kSetupWithChild : kSetup));
    const int burst = static_cast<int>(rng() % 64);
    for (int i = 0; i < burst; ++i) (void)s.rt->post(port, s.payloads.make());
    if (rng() % 4 == 0) std::this_thread::yield();  // sometimes let it run first
    (*iso)->kill(rng() % 2 ? evh::KillPriority::immediate : evh::KillPriority::before_next_event);
    s.cycles.fetch_add(1, std::memory_order_relaxed);
  }
}

// Full-rate messages into one long-lived isolate, which also runs dense timers.
void flood_loop(Shared& s, evh::PortId sink) {
  while (!s.stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 256; ++i) (void)s.rt->post(sink, s.payloads.make());
    std::this_thread::yield();
  }
}

void print_sample(const Sample& x) {
  std::printf(
      "%7.1f s  rss %7.1f MiB  fds %5lld  threads %3lld  isolates %6lld  ports %6lld  "
      "timers %7lld  payloads %7lld  cycles %9llu  msgs %11llu\n",
      x.t_s, static_cast<double>(x.rss) / (1 << 20), static_cast<long long>(x.fds),
      static_cast<long long>(x.threads), static_cast<long long>(x.isolates),
      static_cast<long long>(x.ports), static_cast<long long>(x.timers),
      static_cast<long long>(x.payloads_in_flight), static_cast<unsigned long long>(x.cycles),
      static_cast<unsigned long long>(x.messages));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 60;
  double sample_s = 5;
  unsigned threads = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> double {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "evh_soak: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atof(argv[++i]);
    };
    if (a == "--seconds") {
      seconds = next();
    } else if (a == "--sample-seconds") {
      sample_s = next();
    } else if (a == "--threads") {
      threads = static_cast<unsigned>(next());
    } else {
      std::fprintf(stderr, "usage: evh_soak [--seconds N] [--sample-seconds S] [--threads T]\n");
      return 2;
    }
  }
  if (seconds <= 0 || sample_s <= 0 || threads == 0) {
    std::fprintf(stderr, "evh_soak: durations and --threads must be positive\n");
    return 2;
  }

  const std::int64_t fds_before = fd_count();
  const std::int64_t threads_before = thread_count();
  Shared s;
  std::vector<Sample> samples;
  bool failed = false;
  {
    evh::Runtime rt;
    evh::ProcessManager processes(rt);
    s.rt = &rt;
    s.processes = &processes;

    struct Sink {
      evh::Timer timers[64];
    };
    auto sink_state = std::make_shared<Sink>();
    auto sink = rt.spawn(evh::make_handler([&s, sink_state](evh::Isolate& self, evh::Message& m) {
      s.messages.fetch_add(1, std::memory_order_relaxed);
      if (m.as_u64() != kSetup) return;
      // Dense timers at full rate for the whole run: exact and coarse, 50 µs to 1 ms.
      for (int i = 0; i < 64; ++i) {
        (void)self.start_periodic(sink_state->timers[i], std::chrono::microseconds(50 + 15 * i),
                                  &tick, i % 2 ? evh::Slack::exact() : evh::Slack::coarse());
      }
    }));
    if (!sink.ok()) {
      std::fprintf(stderr, "evh_soak: spawn failed: %s\n", sink.error().message().c_str());
      return 1;
    }
    (void)rt.post((*sink)->main_port(), evh::Message::u64(kSetup));

    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) workers.emplace_back(churn_loop, std::ref(s), 17 + t);
    workers.emplace_back(flood_loop, std::ref(s), (*sink)->main_port());

    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::duration<double>(seconds);
    // The first fifth of the run (at most 30 s, at least one sample) is warm-up: its maxima are
    // the base of every bound.
    const auto warmup_samples =
        static_cast<std::size_t>(std::max(1.0, std::ceil(std::min(30.0, seconds / 5) / sample_s)));
    Sample warm{};  // the maximum of each series during warm-up
    auto next_sample = t0;
    while (true) {
      next_sample +=
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(sample_s));
      const bool last = next_sample >= end;
      std::this_thread::sleep_until(last ? end : next_sample);  // pacing, not synchronisation
      const evh::RuntimeStats st = rt.stats();
      Sample x;
      x.t_s = std::chrono::duration<double>(Clock::now() - t0).count();
      x.rss = rss_bytes();
      x.fds = fd_count();
      x.threads = thread_count();
      x.isolates = static_cast<std::int64_t>(st.isolates_live);
      x.ports = static_cast<std::int64_t>(st.ports_open);
      x.timers = static_cast<std::int64_t>(rt.timer_stats().live);
      x.payloads_in_flight = s.payloads.in_flight();
      x.cycles = s.cycles.load();
      x.messages = s.messages.load();
      print_sample(x);
      samples.push_back(x);
      if (samples.size() <= warmup_samples) {
        warm.rss = std::max(warm.rss, x.rss);
        warm.fds = std::max(warm.fds, x.fds);
        warm.threads = std::max(warm.threads, x.threads);
      } else {
        auto over = [&](const char* what, std::int64_t v, std::int64_t base, std::int64_t bound) {
          if (v - base <= bound) return;
          std::printf(
              "FAIL at %.1f s: %s %lld grew past the warm-up maximum %lld by more than %lld\n",
              x.t_s, what, static_cast<long long>(v), static_cast<long long>(base),
              static_cast<long long>(bound));
          failed = true;
        };
        over("rss", x.rss, warm.rss, kRssGrowthBound);
        over("fds", x.fds, warm.fds, kFdGrowthBound);
        over("threads", x.threads, warm.threads, kThreadGrowthBound);
      }
      if (samples.size() >= 2 && x.cycles == samples[samples.size() - 2].cycles) {
        std::printf("FAIL at %.1f s: no spawn/kill cycle completed since the last sample\n", x.t_s);
        failed = true;
      }
      if (x.isolates > kIsolateBound) {
        std::printf("FAIL at %.1f s: %lld live isolates (bound %lld)\n", x.t_s,
                    static_cast<long long>(x.isolates), static_cast<long long>(kIsolateBound));
        failed = true;
      }
      if (last) break;
    }
    s.stop.store(true);
    for (auto& w : workers) w.join();
    if (s.cycles.load() == 0 || s.messages.load() == 0) {
      std::printf("FAIL: nothing ran (cycles %llu, messages %llu)\n",
                  static_cast<unsigned long long>(s.cycles.load()),
                  static_cast<unsigned long long>(s.messages.load()));
      failed = true;
    }
    std::printf("children started: %llu\n", static_cast<unsigned long long>(s.children.load()));
  }  // the process manager, then the runtime: everything must be released by now

  const std::int64_t fds_after = fd_count();
  const std::int64_t threads_after = thread_count();
  std::printf(
      "after shutdown: fds %lld (before %lld), threads %lld (before %lld), "
      "payloads made %lld released %lld\n",
      static_cast<long long>(fds_after), static_cast<long long>(fds_before),
      static_cast<long long>(threads_after), static_cast<long long>(threads_before),
      static_cast<long long>(s.payloads.made.load()),
      static_cast<long long>(s.payloads.released.load()));
  if (fds_after != fds_before) {
    std::printf("FAIL: %lld fds leaked\n", static_cast<long long>(fds_after - fds_before));
    failed = true;
  }
  if (threads_after != threads_before) {
    std::printf("FAIL: %lld threads left\n",
                static_cast<long long>(threads_after - threads_before));
    failed = true;
  }
  if (s.payloads.in_flight() != 0) {
    std::printf("FAIL: %lld payloads never released (or released twice if negative)\n",
                static_cast<long long>(s.payloads.in_flight()));
    failed = true;
  }
  std::printf("%s\n", failed ? "evh_soak: FAIL" : "evh_soak: PASS");
  return failed ? 1 : 0;
}
