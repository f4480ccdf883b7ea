#include "base/mpsc_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/alloc_fault.h"
#include "base/message_access.h"
#include "test_util.h"

namespace evh::detail {
namespace {

constexpr std::uint32_t kMaxOut = 64;

// Raw storage for queue_pop_batch, which constructs what it takes there; destroyed by the next
// pop and at the end.
struct BatchOut {
  alignas(Message) std::byte raw[kMaxOut * sizeof(Message)];
  std::uint32_t n = 0;

  BatchOut() = default;
  BatchOut(const BatchOut&) = delete;
  BatchOut& operator=(const BatchOut&) = delete;
  ~BatchOut() { clear(); }
  Message* at() { return reinterpret_cast<Message*>(raw); }
  Message& operator[](std::uint32_t i) { return at()[i]; }
  void clear() {
    std::destroy_n(at(), n);
    n = 0;
  }
  std::uint32_t pop(QueueTail& tail, QueueHead& head, std::uint32_t max, PortId home) {
    clear();
    n = queue_pop_batch(tail, head, at(), max, home);
    return n;
  }
};

// One producer, many blocks: everything comes out in order and the queue ends empty.
TEST(MpscQueue, FifoAcrossBlocks) {
  MpscQueue q;
  constexpr std::uint64_t kN = kBlockWords * 7 + 3;  // u64 records are 2 words: 3+ blocks
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

// Records to the queue's home port leave the port word out (2 words for a u64, 3 with a port, 2
// with none), and every message comes out with the port it was pushed with, batches included.
TEST(MpscQueue, HomePortRecordsAreSmallerAndKeepTheirPort) {
  constexpr PortId kHome{77};
  MpscQueue q;
  auto with_port = [](std::uint64_t v, PortId p) {
    Message m = Message::u64(v);
    MessageAccess::set_port(m, p);
    return m;
  };
  EXPECT_TRUE(queue_push(q.tail, &q.head, with_port(1, kHome), kHome));
  EXPECT_EQ(q.tail.pos.load() & kOffsetMask, 2u);
  EXPECT_TRUE(queue_push(q.tail, &q.head, with_port(2, PortId{5}), kHome));
  EXPECT_EQ(q.tail.pos.load() & kOffsetMask, 5u);
  // Port none: a control message's.
  EXPECT_TRUE(queue_push(q.tail, &q.head, Message::u64(3), kHome));
  EXPECT_EQ(q.tail.pos.load() & kOffsetMask, 7u);
  std::vector<Message> batch;
  batch.push_back(with_port(4, kHome));
  batch.push_back(with_port(5, PortId{6}));
  EXPECT_EQ(queue_push_batch(q.tail, &q.head, batch, kHome), 2u);
  EXPECT_EQ(q.tail.pos.load() & kOffsetMask, 12u);
  const PortId want[] = {kHome, PortId{5}, PortId::none, kHome, PortId{6}};
  for (std::uint64_t i = 0; i < 5; ++i) {
    Message m;
    ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
    EXPECT_EQ(m.as_u64(), i + 1);
    EXPECT_EQ(m.port(), want[i]);
  }
  Message m;
  EXPECT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::empty);
}

// A push whose claim would end the block allocates the next block before claiming: while the
// tagged word still holds the first block (the consumer never looked) that word is no free list,
// so the push allocates, and a failure leaves nothing claimed and the message untouched. Once
// the consumer has recycled a block onto the list, the same push takes it and allocates nothing.
TEST(MpscQueue, BlockIsAllocatedBeforeTheClaimUnlessTheFreeListHasOne) {
  MpscQueue q;
  // u64 records without a port are 2 words: the kPerBlock-th push's claim ends a small block.
  constexpr std::uint64_t kPerBlock = kBlockWords / 2;
  static_assert(kBlockWords % 2 == 0);
  for (std::uint64_t i = 0; i + 1 < kPerBlock; ++i) ASSERT_TRUE(q.push(Message::u64(i)));
  const std::uint64_t before = q.tail.pos.load();
  Message m = Message::u64(kPerBlock - 1);
  arm_alloc_fault(1);
  EXPECT_FALSE(q.push(std::move(m)));
  EXPECT_TRUE(disarm_alloc_fault());
  EXPECT_EQ(q.tail.pos.load(), before) << "a failed push claimed nothing";
  ASSERT_EQ(m.as_u64(), kPerBlock - 1) << "the message is untouched";
  ASSERT_TRUE(q.push(std::move(m)));  // the retry allocates the second block
  for (std::uint64_t i = 0; i < kPerBlock; ++i) {
    Message out;
    ASSERT_EQ(q.pop(out), PopResult::item);
    ASSERT_EQ(out.as_u64(), i);
  }
  EXPECT_EQ(q.free_blocks(), 1u);  // the first block, read to its end
  // Fill the second block up to the claim that ends it.
  for (std::uint64_t i = 0; i + 1 < kPerBlock; ++i) ASSERT_TRUE(q.push(Message::u64(i)));
  arm_alloc_fault(1);
  EXPECT_TRUE(q.push(Message::u64(kPerBlock - 1)));
  EXPECT_FALSE(disarm_alloc_fault()) << "the push allocated although the free list had a block";
  EXPECT_EQ(q.free_blocks(), 0u);
  for (std::uint64_t i = 0; i < kPerBlock; ++i) {
    Message out;
    ASSERT_EQ(q.pop(out), PopResult::item);
    ASSERT_EQ(out.as_u64(), i);
  }
  Message out;
  EXPECT_EQ(q.pop(out), PopResult::empty);
}

// A queue its consumer never looked at still owns its first block (the tagged word): destroying
// it releases the messages and frees the block (LeakSanitizer checks the block).
TEST(MpscQueue, NeverReadQueueReleasesAndFreesItsFirstBlock) {
  int finalized = 0;
  {
    MpscQueue q;
    for (int i = 0; i < 3; ++i) {
      q.push(Message::native(&finalized, [](void* p) noexcept { ++*static_cast<int*>(p); }));
    }
    EXPECT_EQ(q.free_blocks(), 0u);  // the word holds the first block, not a free list
  }
  EXPECT_EQ(finalized, 3);
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

// A u64 message without a port is a 2-word record (header, payload), and a small block holds a
// whole number of them: each block's last record is the claim that ends it and installs the next.
constexpr std::uint64_t kRecordsPerBlock = kBlockWords / 2;
static_assert(kBlockWords % 2 == 0);

// Blocks the queue allocates while `run` runs on this thread (the allocation-failure seam
// counts its sites down; no site fails this far out).
template <class Run>
std::uint64_t blocks_allocated(Run&& run) {
  constexpr std::uint64_t kFar = std::uint64_t{1} << 40;
  arm_alloc_fault(kFar);
  run();
  const std::uint64_t left = alloc_fault_countdown;
  disarm_alloc_fault();
  return kFar - left;
}

// A queue that once held N blocks' worth of messages keeps the blocks: later bursts of the same
// depth take the blocks they need from its free list (issue 14, defect 0: a sender that allocates
// can sleep in the kernel on the memory-map lock; the one-block cache this replaced allocated a
// block every 31 messages of a burst). MpscQueue's blocks are all the smallest (the event
// handler's command channel relies on this: RuntimeEventHandler.SendersDoNotSleepInSteadyState):
// where a burst ends inside a block varies, so a later burst may find the kept blocks a block
// short once or twice; after that no burst allocates.
TEST(MpscQueue, BurstsOfTheSameDepthReuseTheirBlocks) {
  MpscQueue q;
  constexpr std::uint64_t kN = kRecordsPerBlock * 40;
  auto burst = [&q] {
    for (std::uint64_t i = 0; i < kN; ++i) q.push(Message::u64(i));
    Message m;
    for (std::uint64_t i = 0; i < kN; ++i) {
      ASSERT_EQ(q.pop(m), PopResult::item);
      ASSERT_EQ(m.as_u64(), i);
    }
  };
  EXPECT_GT(blocks_allocated(burst), 5u);
  EXPECT_GT(q.free_bytes(), 0u);
  EXPECT_LE(q.free_bytes(), kMaxFreeBytes);
  std::uint64_t later = 0;
  for (int round = 0; round < 4; ++round) later += blocks_allocated(burst);
  EXPECT_LE(later, 2u);
  for (int round = 0; round < 5; ++round) {
    EXPECT_EQ(blocks_allocated(burst), 0u) << "round " << round;
  }
}

// Past kMaxFreeBytes the queue frees what it drains: the free list never holds more, and holds
// nearly that much (its blocks are at most 16 KB).
TEST(MpscQueue, FreeListIsBounded) {
  MpscQueue q;
  constexpr std::uint64_t kN = 2 * kMaxFreeBytes / 8;  // 2-word records: 2 MB of them
  for (std::uint64_t i = 0; i < kN; ++i) q.push(Message::u64(i));
  Message m;
  std::uint64_t n = 0;
  while (q.pop(m) == PopResult::item) ASSERT_EQ(m.as_u64(), n++);
  EXPECT_EQ(n, kN);
  EXPECT_LE(q.free_bytes(), kMaxFreeBytes);
  EXPECT_GT(q.free_bytes(), kMaxFreeBytes - block_bytes(kBlockClasses - 1));
}

// A consumer far behind makes the producers allocate larger blocks, up to the largest class; a
// consumer that keeps up (a ping-pong, short bursts) keeps the queue on small blocks. Either way
// every message comes out once, in order.
TEST(MpscQueue, BlocksGrowOnlyWhileTheConsumerIsFarBehind) {
  {
    MpscQueue q;
    std::uint64_t next_out = 0;
    for (std::uint64_t i = 0; i < 100'000; ++i) {
      ASSERT_TRUE(q.push(Message::u64(i)));
      if (i % 50 == 49) {
        Message m;
        while (q.pop(m) == PopResult::item) ASSERT_EQ(m.as_u64(), next_out++);
        ASSERT_EQ(queue_tail_block(q.tail)->size_class, 0u) << "after message " << i;
      }
    }
    EXPECT_EQ(next_out, 100'000u);
    EXPECT_LE(q.free_bytes(), block_bytes(0)) << "two small blocks take turns";
  }
  {
    // MpscQueue's own pushes (no head to size by) stay on the smallest blocks however far behind.
    MpscQueue q;
    for (std::uint64_t i = 0; i < 100'000; ++i) {
      ASSERT_TRUE(q.push(Message::u64(i)));
      ASSERT_EQ(queue_tail_block(q.tail)->size_class, 0u) << "after message " << i;
    }
  }
  constexpr PortId kHome{77};
  MpscQueue q;
  std::vector<std::uint64_t> values(1000);
  unsigned largest = 0;
  std::uint64_t pushed = 0;
  for (int k = 0; k < 300; ++k) {  // 300,000 values, the consumer not reading
    for (auto& v : values) v = pushed++;
    ASSERT_EQ(
        queue_push_packed(q.tail, &q.head, kHome, reinterpret_cast<const std::byte*>(values.data()),
                          8, values.size(), kHome),
        values.size());
    largest = std::max<unsigned>(largest, queue_tail_block(q.tail)->size_class);
  }
  EXPECT_EQ(largest, kBlockClasses - 1);
  BatchOut out;
  std::uint64_t next_out = 0;
  for (;;) {
    if (out.pop(q.tail, q.head, kMaxOut, kHome) != 0) {
      for (std::uint32_t j = 0; j < out.n; ++j) ASSERT_EQ(out[j].as_u64(), next_out++);
      continue;
    }
    Message m;  // queue_pop's first look, and the end
    if (queue_pop(q.tail, q.head, m, kHome) != PopResult::item) break;
    ASSERT_EQ(m.as_u64(), next_out++);
  }
  EXPECT_EQ(next_out, pushed);
}

// A queue destroyed with blocks of every size on its free list and in use frees them all, and
// releases what is still queued once (LeakSanitizer checks the blocks).
TEST(MpscQueue, DestroyFreesKeptBlocksOfEverySize) {
  test::ReleaseCounter c;
  {
    MpscQueue q;
    // Through the mailbox's push with the head, so that the blocks grow as the backlog does.
    for (std::uint64_t i = 0; i < 200'000; ++i) {
      ASSERT_TRUE(queue_push(q.tail, &q.head, Message::u64(i)));
    }
    Message m;
    for (std::uint64_t i = 0; i < 150'000; ++i) ASSERT_EQ(q.pop(m), PopResult::item);
    EXPECT_GT(q.free_blocks(), 1u);
    for (int i = 0; i < 1000; ++i) q.push(c.make());
  }
  EXPECT_EQ(c.finalized.load(), 1000u);
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

// A message of every kind and size (empty, inline of 0..40 bytes, heap bytes, native), to its
// port none (no port word) or to another, comes out as it went in. Record sizes of 1 to 7 words
// make records end at every offset of a block, so the skip at a block's end is taken many times.
Message varied(std::uint64_t i, test::ReleaseCounter& c) {
  Message m;
  switch (i % 5) {
    case 0:
      m = Message::u64(i);
      break;
    case 1:
      m = Message::bytes(std::string(i % 41, static_cast<char>('a' + i % 26)));
      break;
    case 2:
      m = Message::bytes(std::string(41 + i % 100, static_cast<char>('A' + i % 26)));
      break;
    case 3:
      m = c.make();
      break;
    default:
      break;  // empty
  }
  MessageAccess::set_port(m, (i % 3 == 0) ? PortId::none : PortId{1000 + i});
  return m;
}

void expect_varied(const Message& m, std::uint64_t i) {
  EXPECT_EQ(m.port(), (i % 3 == 0) ? PortId::none : PortId{1000 + i}) << i;
  switch (i % 5) {
    case 0:
      EXPECT_EQ(m.as_u64(), i);
      break;
    case 1:
      EXPECT_EQ(m.text(), std::string(i % 41, static_cast<char>('a' + i % 26))) << i;
      EXPECT_EQ(m.kind(), Message::Kind::inline_bytes);
      break;
    case 2:
      EXPECT_EQ(m.text(), std::string(41 + i % 100, static_cast<char>('A' + i % 26))) << i;
      EXPECT_EQ(m.kind(), Message::Kind::heap_bytes);
      break;
    case 3:
      EXPECT_EQ(m.kind(), Message::Kind::native);
      break;
    default:
      EXPECT_EQ(m.kind(), Message::Kind::empty);
  }
}

TEST(MpscQueue, EveryKindAndSizeRoundTripsWithItsPort) {
  test::ReleaseCounter c;
  constexpr std::uint64_t kN = 5'000;
  {
    MpscQueue q;
    std::uint64_t next_out = 0;
    for (std::uint64_t i = 0; i < kN; ++i) {
      q.push(varied(i, c));
      if (i % 7 == 0) {  // interleave, so the consumer meets the producer mid-block
        Message m;
        while (q.pop(m) == PopResult::item) expect_varied(m, next_out++);
      }
    }
    Message m;
    while (q.pop(m) == PopResult::item) expect_varied(m, next_out++);
    EXPECT_EQ(next_out, kN);
    EXPECT_FALSE(q.has_claimed());
    EXPECT_EQ(queue_count(q.tail.pos.load()), kN);
    EXPECT_EQ(queue_count(q.head.pos), kN);
  }
  EXPECT_EQ(c.finalized, kN / 5);  // every native one, once, when its popped message died
}

// A batch goes in as one claim per block: in order, each message once, the sources left empty.
TEST(MpscQueue, BatchKeepsOrderAcrossBlocksAndEmptiesItsSources) {
  test::ReleaseCounter c;
  {
    MpscQueue q;
    std::uint64_t next_in = 0;
    std::uint64_t next_out = 0;
    for (int round = 0; round < 200; ++round) {
      std::vector<Message> batch;
      for (int k = 0; k < round % 70; ++k) batch.push_back(varied(next_in++, c));
      q.push_batch(batch);
      for (const Message& m : batch) EXPECT_EQ(m.kind(), Message::Kind::empty);
      Message m;
      if (round % 3 != 0) {
        while (q.pop(m) == PopResult::item) expect_varied(m, next_out++);
      }
    }
    Message m;
    while (q.pop(m) == PopResult::item) expect_varied(m, next_out++);
    EXPECT_EQ(next_out, next_in);
  }
  EXPECT_EQ(c.finalized, c.total());
}

// Producers posting single messages and batches of varied records at once: every message arrives
// once, each producer's in its order, and every native payload is finalized exactly once.
TEST(MpscQueue, ProducersMixingBatchesAndSinglesKeepTheirOrder) {
  test::ReleaseCounter c;
  constexpr int kProducers = 4;
  constexpr std::uint64_t kPer = 20'000;
  {
    MpscQueue q;
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&q, &c, p] {
        std::vector<Message> batch;
        std::size_t flushes = 0;
        for (std::uint64_t i = 0; i < kPer; ++i) {
          Message m = (i % 4 == 3)
                          ? c.make()
                          : Message::bytes(std::string(i % 45, static_cast<char>('a' + p)));
          MessageAccess::set_port(m, PortId{(std::uint64_t(p) << 32) | i});
          if (p % 2 == 0) {
            q.push(std::move(m));
          } else {
            batch.push_back(std::move(m));
            if (batch.size() == 1 + flushes % 64) {  // batches of 1 to 64
              ++flushes;
              q.push_batch(batch);
              batch.clear();
            }
          }
        }
        if (!batch.empty()) q.push_batch(batch);
      });
    }
    std::vector<std::uint64_t> next(kProducers, 0);
    std::uint64_t got = 0;
    while (got < kProducers * kPer) {
      Message m;
      if (q.pop(m) != PopResult::item) continue;
      const auto v = static_cast<std::uint64_t>(m.port());
      const auto p = static_cast<int>(v >> 32);
      ASSERT_LT(p, kProducers);
      ASSERT_EQ(v & 0xFFFFFFFF, next[p]) << "producer " << p;
      if (m.kind() != Message::Kind::native) {
        ASSERT_EQ(m.data().size(), next[p] % 45);
      }
      ++next[p];
      ++got;
    }
    for (auto& t : producers) t.join();
    Message m;
    EXPECT_EQ(q.pop(m), PopResult::empty);
  }
  EXPECT_EQ(c.finalized, kProducers * kPer / 4);
}

// Consecutive messages of a batch with the same kind, size and port (home or none) are one
// record, a header and their payloads (issue 19). The consumer takes them one at a time and may
// stop anywhere in a run: every message comes out once, in order, with its port and payload, and
// what is left when the queue goes is released once.
TEST(MpscQueue, LikeMessagesOfABatchAreOneRunTakenOneAtATime) {
  constexpr PortId kHome{77};
  test::ReleaseCounter c;
  {
    MpscQueue q;
    std::vector<Message> batch;
    for (std::uint64_t i = 0; i < 10; ++i) {
      batch.push_back(Message::u64(i));
      MessageAccess::set_port(batch.back(), kHome);
    }
    ASSERT_EQ(queue_push_batch(q.tail, &q.head, batch, kHome), 10u);
    EXPECT_EQ(q.tail.pos.load() & kOffsetMask, 11u);  // one header, ten payload words
    for (std::uint64_t i = 0; i < 3; ++i) {
      Message m;
      ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
      EXPECT_EQ(m.as_u64(), i);
      EXPECT_EQ(m.port(), kHome);
    }
    // Behind it, mid-run: three natives (2 payload words each) and four empties (none), port none.
    batch.clear();
    for (int i = 0; i < 3; ++i) batch.push_back(c.make());
    for (int i = 0; i < 4; ++i) batch.emplace_back();
    ASSERT_EQ(queue_push_batch(q.tail, &q.head, batch, kHome), 7u);
    EXPECT_EQ(q.tail.pos.load() & kOffsetMask, 11u + 1 + 3 * 2 + 1);
    for (std::uint64_t i = 3; i < 10; ++i) {
      Message m;
      ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
      EXPECT_EQ(m.as_u64(), i);
      EXPECT_EQ(m.port(), kHome);
    }
    {
      Message m;
      ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
      EXPECT_EQ(m.kind(), Message::Kind::native);
      EXPECT_EQ(m.port(), PortId::none);
    }  // finalized here
    EXPECT_EQ(c.finalized.load(), 1u);
    EXPECT_EQ(queue_depth(q.tail, q.head), 6u);
  }  // two natives and four empties left in their runs
  EXPECT_EQ(c.finalized.load(), 3u);
}

// Runs end where a block ends (the rest goes on in the next block) and where the header's count
// ends: a batch of 1,000 u64 messages crosses blocks in order, and 70,000 empty messages (no
// payload words) are two records.
TEST(MpscQueue, RunsEndAtBlockEndsAndAtTheirCountsLimit) {
  MpscQueue q;
  std::vector<Message> batch;
  for (std::uint64_t i = 0; i < 1000; ++i) batch.push_back(Message::u64(i));
  ASSERT_EQ(q.push_batch(batch), 1000u);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    Message m;
    ASSERT_EQ(q.pop(m), PopResult::item);
    ASSERT_EQ(m.as_u64(), i);
  }
  Message m;
  ASSERT_EQ(q.pop(m), PopResult::empty);
  const std::uint64_t start = q.tail.pos.load() & kOffsetMask;
  ASSERT_LE(start + 2, queue_tail_block(q.tail)->end);  // both records fit in this block
  std::vector<Message> empties(kMaxRunExtra + 1 + 4464);
  ASSERT_EQ(q.push_batch(empties), empties.size());
  EXPECT_EQ((q.tail.pos.load() & kOffsetMask) - start, 2u);
  for (std::size_t i = 0; i < empties.size(); ++i) {
    ASSERT_EQ(q.pop(m), PopResult::item);
    ASSERT_EQ(m.kind(), Message::Kind::empty);
  }
  EXPECT_EQ(q.pop(m), PopResult::empty);
}

// Producers posting runs (batches of 1 to 64 like messages, u64s and natives in turn, no port)
// while the consumer takes them: each producer's u64s arrive in its order, every message once,
// every native payload finalized once.
TEST(MpscQueue, ProducersPostingRunsKeepTheirOrder) {
  test::ReleaseCounter c;
  constexpr int kProducers = 4;
  constexpr std::uint64_t kPer = 20'000;
  std::uint64_t natives = 0;
  {
    MpscQueue q;
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&q, &c, p] {
        std::vector<Message> batch;
        std::uint64_t i = 0;
        for (std::uint64_t flush = 0; i < kPer; ++flush) {
          batch.clear();
          const std::uint64_t k = std::min<std::uint64_t>(1 + flush % 64, kPer - i);
          for (std::uint64_t j = 0; j < k; ++j, ++i) {
            batch.push_back(flush % 2 == 0 ? Message::u64((std::uint64_t(p) << 32) | i) : c.make());
          }
          ASSERT_EQ(q.push_batch(batch), k);
        }
      });
    }
    std::uint64_t got = 0;
    std::vector<std::uint64_t> next(kProducers, 0);
    while (got < kProducers * kPer) {
      Message m;
      if (q.pop(m) != PopResult::item) continue;
      ++got;
      if (m.kind() == Message::Kind::native) {
        ++natives;
        continue;
      }
      const std::uint64_t v = m.as_u64();
      const auto p = static_cast<std::size_t>(v >> 32);
      ASSERT_LT(p, static_cast<std::size_t>(kProducers));
      ASSERT_GE(v & 0xFFFFFFFF, next[p]) << "producer " << p;
      next[p] = (v & 0xFFFFFFFF) + 1;
    }
    for (auto& t : producers) t.join();
    Message m;
    EXPECT_EQ(q.pop(m), PopResult::empty);
    EXPECT_EQ(c.finalized.load(), natives);
  }
  EXPECT_EQ(c.finalized.load(), natives);
  EXPECT_GT(natives, 0u);
}

// Packed byte messages (queue_push_packed) come out as the Message::bytes of their slices, for
// every size a message holds inline: as one run each to the home port, as records with their port
// word to another port.
TEST(MpscQueue, PackedBytesComeOutAsTheirSlicesWithTheirPort) {
  constexpr PortId kHome{77};
  constexpr PortId kOther{78};
  for (std::uint32_t each = 1; each <= Message::kInlineBytes; ++each) {
    for (const PortId port : {kHome, kOther}) {
      MpscQueue q;
      constexpr std::size_t kCount = 300;  // past a block end for every size
      std::vector<std::byte> data(kCount * each);
      for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 7 + 1);
      ASSERT_EQ(queue_push_packed(q.tail, &q.head, port, data.data(), each, kCount, kHome), kCount);
      for (std::size_t i = 0; i < kCount; ++i) {
        Message m;
        ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item) << each << " " << i;
        ASSERT_EQ(m.kind(), Message::Kind::inline_bytes);
        ASSERT_EQ(m.port(), port);
        ASSERT_EQ(m.data().size(), each);
        ASSERT_TRUE(std::equal(m.data().begin(), m.data().end(), data.begin() + i * each))
            << "size " << each << ", message " << i;
      }
      Message m;
      EXPECT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::empty);
    }
  }
}

// queue_pop_batch takes home-port messages one after another — whole records, runs in part,
// across block ends — stops before a message to another port, to none or not yet written, and
// leaves a run it took in part where queue_pop goes on with it.
TEST(MpscQueue, PopBatchTakesRunsInPartAcrossBlocksAndStopsAtOtherPorts) {
  constexpr PortId kHome{77};
  MpscQueue q;
  BatchOut out;
  // The consumer's first look is queue_pop's.
  std::uint64_t v0 = 1000;
  ASSERT_EQ(
      queue_push_packed(q.tail, &q.head, kHome, reinterpret_cast<std::byte*>(&v0), 8, 1, kHome),
      1u);
  EXPECT_EQ(out.pop(q.tail, q.head, 16, kHome), 0u);
  {
    Message m;
    ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
    EXPECT_EQ(m.as_u64(), 1000u);
  }
  std::vector<std::uint64_t> values(1000);
  for (std::uint64_t i = 0; i < values.size(); ++i) values[i] = i;
  ASSERT_EQ(queue_push_packed(q.tail, &q.head, kHome, reinterpret_cast<std::byte*>(values.data()),
                              8, values.size(), kHome),
            values.size());
  Message to_other = Message::u64(5000);
  MessageAccess::set_port(to_other, PortId{78});
  ASSERT_TRUE(queue_push(q.tail, &q.head, std::move(to_other), kHome));
  ASSERT_TRUE(
      queue_push(q.tail, &q.head, Message::u64(6000), kHome));  // port none: a control message
  std::uint64_t next = 0;
  std::uint32_t round = 0;
  while (next < values.size()) {
    // Batches of 1..16, every third message taken alone by queue_pop.
    const std::uint32_t max = 1 + round++ % 16;
    const std::uint32_t n = out.pop(q.tail, q.head, max, kHome);
    ASSERT_EQ(n, std::min<std::uint64_t>(max, values.size() - next));
    for (std::uint32_t j = 0; j < n; ++j) {
      ASSERT_EQ(out[j].as_u64(), next++);
      ASSERT_EQ(out[j].port(), kHome);
    }
    if (round % 3 == 0 && next < values.size()) {
      Message m;
      ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
      ASSERT_EQ(m.as_u64(), next++);
    }
  }
  EXPECT_EQ(out.pop(q.tail, q.head, 16, kHome), 0u);  // the other port's: alone
  Message m;
  ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
  EXPECT_EQ(m.as_u64(), 5000u);
  EXPECT_EQ(m.port(), PortId{78});
  EXPECT_EQ(out.pop(q.tail, q.head, 16, kHome), 0u);
  ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
  EXPECT_EQ(m.as_u64(), 6000u);
  EXPECT_EQ(m.port(), PortId::none);
  EXPECT_EQ(out.pop(q.tail, q.head, 16, kHome), 0u);  // nothing written
  EXPECT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::empty);
  EXPECT_EQ(queue_depth(q.tail, q.head), 0u);
}

// queue_peek_packed reports the inline-bytes messages to `home` of the record at the head, in
// place, without moving it; queue_take_packed takes exactly those — a run in part (the rest where
// queue_pop goes on with it), across block ends — and a peek reports nothing at a heap payload,
// another port or an unwritten head. A pop_batch told to leave inline runs stops at one.
TEST(MpscQueue, PackedPeekAndTakeReadRunsInPlace) {
  constexpr PortId kHome{77};
  MpscQueue q;
  PackedPeek peek;
  std::uint64_t v0 = 1000;
  ASSERT_EQ(
      queue_push_packed(q.tail, &q.head, kHome, reinterpret_cast<std::byte*>(&v0), 8, 1, kHome),
      1u);
  EXPECT_EQ(queue_peek_packed(q.tail, q.head, 16, peek), 0u);  // the first look is queue_pop's
  {
    Message m;
    ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
  }
  // 3-byte values (one word each), enough for several blocks, then a heap message.
  constexpr std::size_t kValues = 3 * kBlockWords;
  std::vector<std::byte> bytes(kValues * 3);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 13 & 0xFF);
  std::size_t pushed = 0;
  while (pushed < kValues) {  // runs of up to 100, so that some end at a block's end
    const std::size_t k = std::min<std::size_t>(100, kValues - pushed);
    ASSERT_EQ(queue_push_packed(q.tail, &q.head, kHome, bytes.data() + pushed * 3, 3, k, kHome), k);
    pushed += k;
  }
  std::byte big[64] = {};
  Message heap = Message::bytes(big);
  MessageAccess::set_port(heap, kHome);
  ASSERT_TRUE(queue_push(q.tail, &q.head, std::move(heap), kHome));

  std::vector<std::byte> got;
  std::uint32_t round = 0;
  while (got.size() < bytes.size()) {
    const std::uint32_t max = 1 + round++ % 40;
    const std::uint32_t n = queue_peek_packed(q.tail, q.head, max, peek);
    ASSERT_GE(n, 1u);
    ASSERT_LE(n, max);
    ASSERT_EQ(peek.size, 3u);
    ASSERT_EQ(peek.words, 1u);
    EXPECT_EQ(queue_peek_packed(q.tail, q.head, max, peek), n);  // a peek moves nothing
    const auto* at = reinterpret_cast<const std::byte*>(peek.payload);
    for (std::uint32_t j = 0; j < n; ++j) got.insert(got.end(), at + j * 8, at + j * 8 + 3);
    queue_take_packed(q.tail, q.head, peek);
    if (round % 5 == 0 && got.size() < bytes.size()) {  // queue_pop goes on inside the run
      Message m;
      ASSERT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::item);
      ASSERT_EQ(m.data().size(), 3u);
      got.insert(got.end(), m.data().begin(), m.data().end());
    }
  }
  EXPECT_EQ(got, bytes);
  EXPECT_EQ(queue_peek_packed(q.tail, q.head, 16, peek), 0u);  // the heap payload
  BatchOut out;
  EXPECT_EQ(out.pop(q.tail, q.head, 16, kHome), 1u);
  EXPECT_EQ(out[0].kind(), Message::Kind::heap_bytes);
  EXPECT_EQ(queue_peek_packed(q.tail, q.head, 16, peek), 0u);  // nothing written

  // pop_batch leaving inline runs: takes the heap message, stops at the run behind it.
  Message heap2 = Message::bytes(big);
  MessageAccess::set_port(heap2, kHome);
  ASSERT_TRUE(queue_push(q.tail, &q.head, std::move(heap2), kHome));
  std::uint64_t vs[4] = {1, 2, 3, 4};
  ASSERT_EQ(
      queue_push_packed(q.tail, &q.head, kHome, reinterpret_cast<std::byte*>(vs), 8, 4, kHome), 4u);
  out.clear();
  out.n = queue_pop_batch(q.tail, q.head, out.at(), 16, kHome, /*leave_inline=*/true);
  EXPECT_EQ(out.n, 1u);
  ASSERT_EQ(queue_peek_packed(q.tail, q.head, 16, peek), 4u);
  EXPECT_EQ(peek.payload[3], 4u);
  queue_take_packed(q.tail, q.head, peek);
  Message m;
  EXPECT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::empty);
  EXPECT_EQ(queue_depth(q.tail, q.head), 0u);
}

// A batch leaves native payloads to whoever holds the Messages: those taken are the taker's, the
// rest are finalized once, by the Message or by the queue's destruction.
TEST(MpscQueue, PopBatchHandsOverPayloadsExactlyOnce) {
  constexpr PortId kHome{77};
  test::ReleaseCounter c;
  {
    MpscQueue q;
    std::vector<Message> batch;
    for (int i = 0; i < 40; ++i) {
      batch.push_back(c.make());
      MessageAccess::set_port(batch.back(), kHome);
    }
    ASSERT_EQ(queue_push_batch(q.tail, &q.head, batch, kHome), 40u);
    Message first;
    ASSERT_EQ(queue_pop(q.tail, q.head, first, kHome), PopResult::item);
    {
      BatchOut out;
      ASSERT_EQ(out.pop(q.tail, q.head, 10, kHome), 10u);
      for (std::uint32_t j = 0; j < 10; j += 2) c.take(out[j]);
    }  // five finalized here
    EXPECT_EQ(c.taken.load(), 5u);
    EXPECT_EQ(c.finalized.load(), 5u);
  }  // `first` and the 29 left in the queue
  EXPECT_EQ(c.finalized.load(), 35u);
  EXPECT_EQ(c.total(), 40u);
}

// Producers posting packed runs, message batches and single posts while the consumer takes
// batches: each producer's values arrive in its order, every one once.
TEST(MpscQueue, PackedProducersAndBatchConsumerKeepPerProducerOrder) {
  constexpr PortId kHome{77};
  constexpr int kProducers = 3;
  constexpr std::uint64_t kPer = 30'000;
  MpscQueue q;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, p] {
      std::vector<std::uint64_t> values;
      std::vector<Message> batch;
      std::uint64_t i = 0;
      for (std::uint64_t flush = 0; i < kPer; ++flush) {
        const std::uint64_t k = std::min<std::uint64_t>(1 + flush % 64, kPer - i);
        if (p == 0 || flush % 3 == 0) {
          values.clear();
          for (std::uint64_t j = 0; j < k; ++j) values.push_back((std::uint64_t(p) << 32) | i++);
          ASSERT_EQ(queue_push_packed(q.tail, &q.head, kHome,
                                      reinterpret_cast<std::byte*>(values.data()), 8, k, kHome),
                    k);
        } else if (p == 1) {
          batch.clear();
          for (std::uint64_t j = 0; j < k; ++j) {
            batch.push_back(Message::u64((std::uint64_t(p) << 32) | i++));
            MessageAccess::set_port(batch.back(), kHome);
          }
          ASSERT_EQ(queue_push_batch(q.tail, &q.head, batch, kHome), k);
        } else {
          Message m = Message::u64((std::uint64_t(p) << 32) | i++);
          MessageAccess::set_port(m, kHome);
          ASSERT_TRUE(queue_push(q.tail, &q.head, std::move(m), kHome));
        }
      }
    });
  }
  std::uint64_t got = 0;
  std::vector<std::uint64_t> next(kProducers, 0);
  auto check = [&](const Message& m) {
    const std::uint64_t v = m.as_u64();
    const auto p = static_cast<std::size_t>(v >> 32);
    ASSERT_LT(p, static_cast<std::size_t>(kProducers));
    ASSERT_EQ(v & 0xFFFFFFFF, next[p]) << "producer " << p;
    ASSERT_EQ(m.port(), kHome);
    ++next[p];
    ++got;
  };
  BatchOut out;
  while (got < kProducers * kPer) {
    const std::uint32_t n = out.pop(q.tail, q.head, kMaxOut, kHome);
    for (std::uint32_t j = 0; j < n; ++j) check(out[j]);
    if (n == 0) {
      Message m;
      if (queue_pop(q.tail, q.head, m, kHome) == PopResult::item) check(m);
    }
  }
  for (auto& t : producers) t.join();
  Message m;
  EXPECT_EQ(queue_pop(q.tail, q.head, m, kHome), PopResult::empty);
}

}  // namespace
}  // namespace evh::detail
