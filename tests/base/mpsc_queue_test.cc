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

// A queue that once held N blocks' worth of messages keeps the blocks: later bursts of the same
// depth take every block they need from its free list and allocate none (issue 14, defect 0: a
// sender that allocates can sleep in the kernel on the memory-map lock; the one-block cache this
// replaced allocated a block every 31 messages of a burst).
TEST(MpscQueue, BurstsOfTheSameDepthReuseTheirBlocks) {
  MpscQueue q;
  constexpr std::uint32_t kBlocks = 40;
  constexpr std::uint64_t kN = std::uint64_t{kSlotsPerBlock} * kBlocks;
  auto push = [&q] {
    for (std::uint64_t i = 0; i < kN; ++i) q.push(Message::u64(i));
  };
  auto pop = [&q] {
    Message m;
    for (std::uint64_t i = 0; i < kN; ++i) {
      ASSERT_EQ(q.pop(m), PopResult::item);
      ASSERT_EQ(m.as_u64(), i);
    }
  };
  push();
  pop();
  // Each of the burst's last slots installed a block; every block read to the end is kept.
  EXPECT_EQ(q.free_blocks(), kBlocks);
  for (int round = 0; round < 5; ++round) {
    push();
    EXPECT_EQ(q.free_blocks(), 0u);  // every install took a kept block: no allocation
    pop();
    EXPECT_EQ(q.free_blocks(), kBlocks);
  }
}

// Past kMaxFreeBlocks the queue frees what it drains: the free list never holds more.
TEST(MpscQueue, FreeListIsBounded) {
  MpscQueue q;
  constexpr std::uint64_t kN = std::uint64_t{kSlotsPerBlock} * (kMaxFreeBlocks + 50);
  for (std::uint64_t i = 0; i < kN; ++i) q.push(Message::u64(i));
  Message m;
  while (q.pop(m) == PopResult::item) {
  }
  EXPECT_EQ(q.free_blocks(), kMaxFreeBlocks);
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
