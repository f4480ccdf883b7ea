// Posting to an isolate and handling the message, on one thread: the isolate runs on an
// InlineRunner, so a turn runs here when the benchmark asks, and a batch of posts is one
// mailbox push each, one scheduling, and one pop and handler call each.

#include <benchmark/benchmark.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/runtime.h>

#include "inline_runner.h"

namespace evh::bench {
namespace {

void BM_Isolate_PostAndHandle(benchmark::State& state) {
  const std::int64_t batch = state.range(0);
  InlineRunner runner;
  std::uint64_t handled = 0;
  {
    Runtime rt;
    IsolateOptions options;
    options.runner = &runner;
    options.budget = static_cast<std::uint32_t>(batch);
    IsolateRef iso =
        *rt.spawn(make_handler([&handled](Isolate&, Message&) { ++handled; }), options);
    SendPort to = *rt.send_port(iso->main_port());
    std::uint64_t v = 0;
    for (auto _ : state) {
      for (std::int64_t i = 0; i < batch; ++i) {
        if (!to.post(Message::u64(++v))) state.SkipWithError("post failed");
      }
      while (runner.run_pending() > 0) {
      }
    }
    iso->destroy();
    while (runner.run_pending() > 0) {
    }
    rt.shutdown();
  }
  if (handled != static_cast<std::uint64_t>(state.iterations() * batch)) {
    state.SkipWithError("not every message was handled");
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_Isolate_PostAndHandle)->Arg(1)->Arg(64);

}  // namespace
}  // namespace evh::bench
