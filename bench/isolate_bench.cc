// bench/isolate_bench.cc — `isolate_spawn`: what an isolate costs to create, to destroy and to
// keep idle. The raw floor is the smallest honest actor: a mutex, a mailbox that allocates on
// first use, and a callback.

#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "workloads.h"

namespace evh::bench {
namespace {

std::uint64_t spawn_count(Size size) {
  return size == Size::quick ? 10'000 : 100'000;
}

// Times of the three phases, in nanoseconds, and the resident growth of the first.
struct SpawnTimes {
  std::int64_t spawn_ns = 0;    // n spawns, all kept
  std::int64_t destroy_ns = 0;  // destroying the n kept ones
  std::int64_t pair_ns = 0;     // n times: spawn one, destroy it at once
  std::int64_t resident_growth = 0;
  double cpu_ms = 0;  // process CPU over the three phases
};

RunResult spawn_metrics(const SpawnTimes& t, std::uint64_t n) {
  const auto per = [n](std::int64_t total) { return static_cast<double>(total) / n; };
  RunResult out;
  out.metrics.push_back({"spawn_ns", "ns", per(t.spawn_ns)});
  out.metrics.push_back({"destroy_ns", "ns", per(t.destroy_ns)});
  out.metrics.push_back({"spawn_destroy_pair_ns", "ns", per(t.pair_ns)});
  out.metrics.push_back({"bytes_per_idle_isolate", "bytes", per(t.resident_growth)});
  out.metrics.push_back({"cpu_ms", "ms", t.cpu_ms});
  return out;
}

// ---- evh ----------------------------------------------------------------------------------

void ignore_message(Isolate&, Message&, void*) {}

RunResult evh_isolate_spawn(std::uint64_t n) {
  Runtime rt;
  const IsolateHandler idle{&ignore_message, nullptr, nullptr};
  // Constructed (and so touched) before the baseline: the references are the benchmark's
  // memory, not the isolates'.
  std::vector<IsolateRef> refs(n);
  SpawnTimes t;

  trim_heap();
  const std::int64_t resident_before = resident_bytes();
  const PhaseMeter phase;
  std::int64_t start = now_ns();
  for (IsolateRef& ref : refs) ref = take(rt.spawn(idle), "spawn");
  t.spawn_ns = now_ns() - start;
  t.resident_growth = resident_bytes() - resident_before;

  start = now_ns();
  for (IsolateRef& ref : refs) {
    ref->destroy();
    ref = IsolateRef();  // the last reference: frees the isolate
  }
  t.destroy_ns = now_ns() - start;

  start = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) take(rt.spawn(idle), "spawn")->destroy();
  t.pair_ns = now_ns() - start;
  t.cpu_ms = phase.cpu_ms();

  rt.shutdown();
  return spawn_metrics(t, n);
}

// ---- raw ----------------------------------------------------------------------------------

// What a hand-written actor needs at the least: a lock, a mailbox and something to call. The
// mailbox allocates on its first message (an empty std::vector owns no memory), so an idle actor
// is its 80 bytes and their malloc chunk, nothing more.
struct RawActor {
  std::mutex mu;
  std::vector<std::uint64_t> mailbox;
  void (*on_message)(RawActor& self, std::uint64_t value) = nullptr;
  void* user = nullptr;
};

void raw_ignore(RawActor&, std::uint64_t) {}

RunResult raw_isolate_spawn(std::uint64_t n) {
  std::vector<RawActor*> actors(n, nullptr);
  SpawnTimes t;

  trim_heap();
  const std::int64_t resident_before = resident_bytes();
  const PhaseMeter phase;
  std::int64_t start = now_ns();
  for (RawActor*& actor : actors) {
    actor = new RawActor;
    actor->on_message = &raw_ignore;
  }
  t.spawn_ns = now_ns() - start;
  t.resident_growth = resident_bytes() - resident_before;

  start = now_ns();
  for (RawActor*& actor : actors) {
    delete actor;
    actor = nullptr;
  }
  t.destroy_ns = now_ns() - start;

  start = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) {
    auto* actor = new RawActor;
    actor->on_message = &raw_ignore;
    escape(actor);
    delete actor;
  }
  t.pair_ns = now_ns() - start;
  t.cpu_ms = phase.cpu_ms();
  return spawn_metrics(t, n);
}

}  // namespace

std::vector<Workload> isolate_workloads() {
  std::vector<Workload> all;
  // Single-threaded: nothing is ever messaged, so the pool never runs; pinning keeps the
  // allocator's per-CPU state and the caches in one place.
  all.push_back({"isolate_spawn",
                 {"evh", "raw"},
                 Threading::single,
                 [](std::string_view impl, Size size) {
                   if (impl == "evh") return evh_isolate_spawn(spawn_count(size));
                   if (impl == "raw") return raw_isolate_spawn(spawn_count(size));
                   throw BenchError("isolate_spawn has no impl " + std::string(impl));
                 },
                 std::nullopt});
  return all;
}

}  // namespace evh::bench
