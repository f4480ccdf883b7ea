// Timer start and cancel on an isolate's own turn. The isolate runs on an InlineRunner, so its
// handler runs Google Benchmark's loop on the benchmark's thread.

#include <benchmark/benchmark.h>
#include <evh/clock.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/runtime.h>
#include <evh/timer.h>

#include <chrono>
#include <functional>
#include <vector>

#include "inline_runner.h"

namespace evh::bench {
namespace {

using namespace std::chrono_literals;

void never(Isolate&, Timer&, std::uint64_t) {}

// Runs `body(self)` on an isolate's turn, on this thread.
void on_isolate_turn(benchmark::State& state, const std::function<void(Isolate&)>& body) {
  InlineRunner runner;
  Runtime rt;
  IsolateOptions options;
  options.runner = &runner;
  IsolateRef iso =
      *rt.spawn(make_handler([&body](Isolate& self, Message&) { body(self); }), options);
  if (!rt.post(iso->main_port(), Message::u64(0))) state.SkipWithError("post failed");
  while (runner.run_pending() > 0) {
  }
  iso->destroy();
  while (runner.run_pending() > 0) {
  }
  rt.shutdown();
}

// The relative form: start_timer reads the clock at each call (SEMANTICS 11).
void BM_Timer_StartCancel_Relative(benchmark::State& state) {
  on_isolate_turn(state, [&state](Isolate& self) {
    Timer t;
    for (auto _ : state) {
      if (!self.start_timer(t, 10s, &never)) state.SkipWithError("start_timer failed");
      (void)self.cancel_timer(t);
    }
  });
}
BENCHMARK(BM_Timer_StartCancel_Relative);

// The absolute form with the once-per-message reading: no clock read per start.
void BM_Timer_StartCancel_AtCachedNow(benchmark::State& state) {
  on_isolate_turn(state, [&state](Isolate& self) {
    Timer t;
    for (auto _ : state) {
      if (!self.start_timer_at(t, self.cached_now() + 10s, &never)) {
        state.SkipWithError("start_timer_at failed");
      }
      (void)self.cancel_timer(t);
    }
  });
}
BENCHMARK(BM_Timer_StartCancel_AtCachedNow);

// Bulk: `state.range(0)` timers started, then cancelled (in start order), per iteration; the
// items are start+cancel pairs.
void BM_Timer_BulkStartCancel(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  on_isolate_turn(state, [&state, n](Isolate& self) {
    std::vector<Timer> timers(n);
    for (auto _ : state) {
      const TimePoint deadline = self.now() + 10s;
      for (std::size_t i = 0; i < n; ++i) {
        if (!self.start_timer_at(timers[i], deadline + std::chrono::nanoseconds(i), &never)) {
          state.SkipWithError("start_timer_at failed");
        }
      }
      for (Timer& t : timers) (void)self.cancel_timer(t);
    }
  });
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Timer_BulkStartCancel)->Arg(1'000)->Arg(100'000);

}  // namespace
}  // namespace evh::bench
