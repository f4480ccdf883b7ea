// bench/scheduling_bench.cc — `oversubscribed`: how a probe's round trip grows when K always-busy
// isolates share a pool of W workers, for K/W = 1, 4 and 16 (SEMANTICS 7: in proportion, never
// off a cliff). The raw floor is a W-thread pool with one shared FIFO (raw_floor.h).

#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/runtime.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "raw_floor.h"
#include "workloads.h"

namespace evh::bench {
namespace {

using namespace std::chrono_literals;

// Fixed rather than the CPU count so that K is the same on every machine.
constexpr unsigned kWorkers = 2;
constexpr unsigned kLoadFactors[] = {1, 4, 16};
constexpr auto kBusyTime = 50us;
// Lets newly added busy actors reach their steady state before the first probe.
constexpr auto kSettleTime = 20ms;
// Between probes, so that each probe meets the busy load rather than the previous probe.
constexpr auto kProbeGap = 200us;

struct ProbeSize {
  std::uint64_t warmup;
  std::uint64_t count;
};

ProbeSize probe_size(Size size) {
  if (size == Size::quick) return {5, 60};
  return {10, 200};
}

// The probe's RTT percentiles at one load factor, and the process CPU per probe over that
// factor's probing (mostly the busy isolates' own work: K/W >= 1 keeps every worker busy).
void probe_metrics(RunResult& out, unsigned factor, std::vector<std::int64_t>& samples,
                   double cpu_ms) {
  const std::string suffix = "_x" + std::to_string(factor);
  const double n = static_cast<double>(samples.size());
  add_latency_metrics(out, "probe_rtt", suffix, samples, {{50, "p50"}, {99, "p99"}});
  out.metrics.push_back({"cpu_us_per_rtt" + suffix, "us", cpu_ms * 1e3 / n});
}

// The measuring side, the same for both impls: posts probe i, blocks for its echo on `replies`
// (an EventfdQueue that blocks at once, so that the measuring thread takes no CPU from the
// workers), sleeps kProbeGap, and returns the RTTs and the CPU of the probing.
template <class Post>
std::vector<std::int64_t> probe_loop(Post&& post, EventfdQueue& replies, ProbeSize size,
                                     double& cpu_ms) {
  std::vector<std::int64_t> samples;
  samples.reserve(size.count);
  PhaseMeter phase;
  for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
    if (i == size.warmup) phase.restart();
    const std::int64_t sent = now_ns();
    post(i);
    const std::uint64_t back = replies.pop();
    const std::int64_t received = now_ns();
    if (back != i) throw BenchError("probe reply out of order");
    if (i >= size.warmup) samples.push_back(received - sent);
    std::this_thread::sleep_for(kProbeGap);
  }
  cpu_ms = phase.cpu_ms();
  return samples;
}

// ---- evh ----------------------------------------------------------------------------------

// Always runnable: every message costs kBusyTime and queues the next one. Posting through the
// runtime by id (not a captured SendPort) keeps the isolate from holding a reference to itself.
void busy_on_message(Isolate& self, Message&, void*) {
  spin_for(kBusyTime);
  (void)self.runtime().post(self.main_port(), Message::u64(0));
}

RunResult evh_oversubscribed(ProbeSize size) {
  EventfdQueue replies;
  RuntimeOptions options;
  options.max_workers = kWorkers;
  Runtime rt(options);
  ShutdownAtExit stop_first(rt);  // the probe borrows `replies`
  IsolateRef probe =
      take(rt.spawn(make_handler([&replies](Isolate&, Message& m) { replies.push(m.as_u64()); })),
           "spawn probe");
  SendPort to_probe = take(rt.send_port(probe->main_port()), "send_port(probe)");

  RunResult out;
  std::vector<IsolateRef> busy;
  for (unsigned factor : kLoadFactors) {
    while (busy.size() < factor * kWorkers) {
      busy.push_back(
          take(rt.spawn(IsolateHandler{&busy_on_message, nullptr, nullptr}), "spawn busy isolate"));
      check(rt.post(busy.back()->main_port(), Message::u64(0)), "start busy isolate");
    }
    std::this_thread::sleep_for(kSettleTime);
    double cpu_ms = 0;
    std::vector<std::int64_t> samples =
        probe_loop([&](std::uint64_t i) { check(to_probe.post(Message::u64(i)), "post probe"); },
                   replies, size, cpu_ms);
    probe_metrics(out, factor, samples, cpu_ms);
  }
  for (IsolateRef& b : busy) b->destroy();
  probe->destroy();
  rt.shutdown();
  return out;
}

// ---- raw ----------------------------------------------------------------------------------

class BusyActor final : public RawTask {
 public:
  BusyActor(RawPool& pool, const std::atomic<bool>& stop) : pool_(pool), stop_(stop) {}
  void run() noexcept override {
    spin_for(kBusyTime);
    if (!stop_.load(std::memory_order_relaxed)) pool_.post(*this);
  }

 private:
  RawPool& pool_;
  const std::atomic<bool>& stop_;
};

class ProbeTask final : public RawTask {
 public:
  explicit ProbeTask(EventfdQueue& reply) : reply_(reply) {}
  void set_sequence(std::uint64_t seq) noexcept { seq_ = seq; }
  // The push is the last touch of `this`: the main thread may re-post the task once it sees it.
  void run() noexcept override { reply_.push(seq_); }

 private:
  EventfdQueue& reply_;
  std::uint64_t seq_ = 0;
};

RunResult raw_oversubscribed(ProbeSize size) {
  std::atomic<bool> stop{false};
  std::deque<BusyActor> actors;  // a deque: growing it never moves a queued actor
  EventfdQueue reply;
  ProbeTask probe(reply);
  RunResult out;
  {
    // Declared last so that it is joined before the tasks it may hold are destroyed.
    RawPool pool(kWorkers);
    for (unsigned factor : kLoadFactors) {
      while (actors.size() < factor * kWorkers) pool.post(actors.emplace_back(pool, stop));
      std::this_thread::sleep_for(kSettleTime);
      double cpu_ms = 0;
      std::vector<std::int64_t> samples = probe_loop(
          [&](std::uint64_t i) {
            probe.set_sequence(i);
            pool.post(probe);
          },
          reply, size, cpu_ms);
      probe_metrics(out, factor, samples, cpu_ms);
    }
    stop.store(true, std::memory_order_relaxed);
  }
  return out;
}

}  // namespace

std::vector<Workload> scheduling_workloads() {
  std::vector<Workload> all;
  all.push_back({"oversubscribed",
                 {"evh", "raw"},
                 Threading::multi,
                 [](std::string_view impl, Size size) {
                   if (impl == "evh") return evh_oversubscribed(probe_size(size));
                   if (impl == "raw") return raw_oversubscribed(probe_size(size));
                   throw BenchError("oversubscribed has no impl " + std::string(impl));
                 },
                 std::nullopt});
  return all;
}

}  // namespace evh::bench
