// Message create and finalize: what a post costs before and after the queue.

#include <benchmark/benchmark.h>
#include <evh/message.h>

#include <array>
#include <cstddef>

namespace evh::bench {
namespace {

// An 8-byte payload, stored inline: no allocation.
void BM_Message_U64_CreateFinalize(benchmark::State& state) {
  std::uint64_t v = 0;
  for (auto _ : state) {
    Message m = Message::u64(++v);
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_Message_U64_CreateFinalize);

// 64 bytes: past the 40 inline bytes, one heap allocation and its free.
void BM_Message_Bytes64_CreateFinalize(benchmark::State& state) {
  std::array<std::byte, 64> payload{};
  for (auto _ : state) {
    Message m = Message::bytes(payload);
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_Message_Bytes64_CreateFinalize);

// A native object whose finalizer runs when the message is released undelivered.
void BM_Message_Native_CreateFinalize(benchmark::State& state) {
  static int finalized = 0;
  int object = 0;
  for (auto _ : state) {
    Message m = Message::native(&object, [](void*) noexcept { ++finalized; });
    benchmark::DoNotOptimize(m);
  }
  benchmark::DoNotOptimize(finalized);
}
BENCHMARK(BM_Message_Native_CreateFinalize);

}  // namespace
}  // namespace evh::bench
