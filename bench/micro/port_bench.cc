// Posting and port lookup: a SendPort (the port resolved once) against a post by id (a lookup in
// the sharded port map each time), and the lookup alone. The messages go to a Receiver, drained
// in the same loop: one push and one pop of its MPSC queue per iteration.

#include <benchmark/benchmark.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/receiver.h>
#include <evh/runtime.h>

#include <cstdlib>

namespace evh::bench {
namespace {

void drain_one(benchmark::State& state, Receiver& rx) {
  if (!rx.try_receive()) state.SkipWithError("the posted message did not arrive");
}

// The queue's push and pop through the public API: post to a Receiver, take it back.
void BM_Receiver_PostThenReceive(benchmark::State& state) {
  Runtime rt;
  Receiver rx = *rt.open_receiver();
  SendPort to = *rt.send_port(rx.id());
  std::uint64_t v = 0;
  for (auto _ : state) {
    if (!to.post(Message::u64(++v))) state.SkipWithError("post failed");
    drain_one(state, rx);
  }
}
BENCHMARK(BM_Receiver_PostThenReceive);

// The same with a lookup of the id in the port map at every post.
void BM_Runtime_PostByIdThenReceive(benchmark::State& state) {
  Runtime rt;
  Receiver rx = *rt.open_receiver();
  const PortId id = rx.id();
  std::uint64_t v = 0;
  for (auto _ : state) {
    if (!rt.post(id, Message::u64(++v))) state.SkipWithError("post failed");
    drain_one(state, rx);
  }
}
BENCHMARK(BM_Runtime_PostByIdThenReceive);

// The lookup alone: the id to a SendPort (a map probe and a reference count up and down), with
// `state.range(0)` other ports open so the map is not trivially small.
void BM_PortMap_Lookup(benchmark::State& state) {
  Runtime rt;
  std::vector<Receiver> others;
  for (std::int64_t i = 0; i < state.range(0); ++i) others.push_back(*rt.open_receiver());
  Receiver rx = *rt.open_receiver();
  const PortId id = rx.id();
  for (auto _ : state) {
    Result<SendPort> port = rt.send_port(id);
    benchmark::DoNotOptimize(port);
  }
}
BENCHMARK(BM_PortMap_Lookup)->Arg(0)->Arg(10'000);

}  // namespace
}  // namespace evh::bench
