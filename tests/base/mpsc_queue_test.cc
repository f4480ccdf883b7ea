#include "base/mpsc_queue.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "test_util.h"

namespace evh::detail {
namespace {

// One producer, many blocks: everything comes out in order and the queue ends empty.
TEST(MpscQueue, FifoAcrossBlocks) {
  MpscQueue q;
  constexpr std::uint64_t kN = kSlotsPerBlock * 7 + 3;
  for (std::uint64_t i = 0; i < kN; ++i) q.push(Message::u64(i));
  for (std::uint64_t i = 0; i < kN; ++i) {
    Message m;
    ASSERT_EQ(q.pop(m), PopResult::item);
    EXPECT_EQ(m.as_u64(), i);
  }
  Message m;
  EXPECT_EQ(q.pop(m), PopResult::empty);
  EXPECT_FALSE(q.has_claimed());
}

// Interleaved push/pop keeps the block recycling path busy.
TEST(MpscQueue, InterleavedPushPop) {
  MpscQueue q;
  std::uint64_t next_in = 0;
  std::uint64_t next_out = 0;
  for (int round = 0; round < 1000; ++round) {
    for (int k = 0; k < (round % 45); ++k) q.push(Message::u64(next_in++));
    Message m;
    while (q.pop(m) == PopResult::item) EXPECT_EQ(m.as_u64(), next_out++);
  }
  EXPECT_EQ(next_in, next_out);
}

// Destroying a queue with messages still in it releases each payload once.
TEST(MpscQueue, DestroyReleasesLeftovers) {
  test::ReleaseCounter c;
  {
    MpscQueue q;
    for (int i = 0; i < 100; ++i) q.push(c.make());
    Message m;
    ASSERT_EQ(q.pop(m), PopResult::item);
  }
  EXPECT_EQ(c.finalized, 100u);
}

// Four producers, one consumer: every message arrives once, each producer's in its order.
TEST(MpscQueue, ManyProducersKeepPerProducerOrder) {
  MpscQueue q;
  constexpr int kProducers = 4;
  constexpr std::uint64_t kPer = 50'000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, p] {
      for (std::uint64_t i = 0; i < kPer; ++i) q.push(Message::u64((std::uint64_t(p) << 32) | i));
    });
  }
  std::vector<std::uint64_t> next(kProducers, 0);
  std::uint64_t got = 0;
  while (got < kProducers * kPer) {
    Message m;
    if (q.pop(m) != PopResult::item) continue;
    const auto v = m.as_u64();
    const auto p = static_cast<int>(v >> 32);
    ASSERT_LT(p, kProducers);
    ASSERT_EQ(v & 0xFFFFFFFF, next[p]) << "producer " << p;
    ++next[p];
    ++got;
  }
  for (auto& t : producers) t.join();
  Message m;
  EXPECT_EQ(q.pop(m), PopResult::empty);
}

}  // namespace
}  // namespace evh::detail
