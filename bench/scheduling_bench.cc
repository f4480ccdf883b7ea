// bench/scheduling_bench.cc — `oversubscribed`: how a probe's round trip grows when K always-busy
// isolates share a pool of W workers, for K/W = 1, 4 and 16 (SEMANTICS 7: in proportion, never
// off a cliff). The raw floor is a W-thread pool with one shared FIFO (raw_floor.h).

#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/receiver.h>
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
// A probe slower than this is a starved isolate: the cell fails instead of hanging.
constexpr auto kProbeTimeout = 30s;

struct ProbeSize {
  std::uint64_t warmup;
  std::uint64_t count;
};

ProbeSize probe_size(Size size) {
  if (size == Size::quick) return {5, 60};
  return {10, 200};
}

void probe_metrics(RunResult& out, unsigned factor, std::vector<std::int64_t>& samples) {
  add_latency_metrics(out, "probe_rtt", "_x" + std::to_string(factor), samples,
                      {{50, "p50"}, {99, "p99"}});
}

// ---- evh ----------------------------------------------------------------------------------

// Always runnable: every message costs kBusyTime and queues the next one. Posting through the
// runtime by id (not a captured SendPort) keeps the isolate from holding a reference to itself.
void busy_on_message(Isolate& self, Message&, void*) {
  spin_for(kBusyTime);
  (void)self.runtime().post(self.main_port(), Message::u64(0));
}

RunResult evh_oversubscribed(ProbeSize size) {
  RuntimeOptions options;
  options.max_workers = kWorkers;
  Runtime rt(options);
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  SendPort reply = take(rt.send_port(rx.id()), "send_port(receiver)");
  IsolateRef probe = take(rt.spawn(echo_handler(std::move(reply))), "spawn probe");
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

    std::vector<std::int64_t> samples;
    samples.reserve(size.count);
    for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
      const std::int64_t sent = now_ns();
      check(to_probe.post(Message::u64(i)), "post probe");
      Message back = take(rx.receive(kProbeTimeout), "receive probe reply");
      const std::int64_t received = now_ns();
      if (back.as_u64() != i) throw BenchError("probe reply out of order");
      if (i >= size.warmup) samples.push_back(received - sent);
      std::this_thread::sleep_for(kProbeGap);
    }
    probe_metrics(out, factor, samples);
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

      std::vector<std::int64_t> samples;
      samples.reserve(size.count);
      for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
        const std::int64_t sent = now_ns();
        probe.set_sequence(i);
        pool.post(probe);
        const std::uint64_t back = reply.pop();
        const std::int64_t received = now_ns();
        if (back != i) throw BenchError("probe reply out of order");
        if (i >= size.warmup) samples.push_back(received - sent);
        std::this_thread::sleep_for(kProbeGap);
      }
      probe_metrics(out, factor, samples);
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
