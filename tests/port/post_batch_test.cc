// post_batch: the guarantees of post for every message of a batch (SEMANTICS 1-4) — FIFO per
// sender across batches and single posts, finalizers exactly once also when a batch races the
// isolate's destruction, everything released on an error.
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;
using test::ReleaseCounter;

// Four senders, two posting batches of 1..64 and two posting one at a time, into one isolate:
// each sender's messages arrive in its order, every one once.
TEST(PostBatch, PerSenderFifoMixedWithSinglePosts) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  constexpr int kSenders = 4;
  constexpr std::uint64_t kPer = 20'000;
  auto iso = test::spawn_order_checker<kSenders>(rt, done, kSenders * kPer);
  ASSERT_TRUE(iso.ok());
  SendPort to = *rt.send_port((*iso)->main_port());
  std::vector<std::thread> senders;
  for (std::uint64_t s = 0; s < kSenders; ++s) {
    senders.emplace_back([&rt, to, s, port = (*iso)->main_port()] {
      std::vector<Message> batch;
      std::size_t batches = 0;
      for (std::uint64_t i = 0; i < kPer; ++i) {
        if (s < 2) {
          ASSERT_TRUE(to.post(Message::u64(s << 32 | i)).ok());
          continue;
        }
        batch.push_back(Message::u64(s << 32 | i));
        if (batch.size() == 1 + batches % 64 || i + 1 == kPer) {
          // One sender through its SendPort, one through the runtime by id.
          const Status st = s == 2 ? to.post_batch(batch) : rt.post_batch(port, batch);
          ASSERT_TRUE(st.ok()) << st.error().message();
          for (const Message& m : batch) ASSERT_EQ(m.kind(), Message::Kind::empty);
          batch.clear();
          ++batches;
        }
      }
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
}

// A batch to a closed port, an empty SendPort, an unknown id or a runtime shutting down is
// refused with the code post() gives, and every payload is released before it returns.
TEST(PostBatch, ErrorsReleaseEveryMessage) {
  ReleaseCounter c;
  auto batch_of = [&c](int n) {
    std::vector<Message> v;
    for (int i = 0; i < n; ++i) v.push_back(c.make());
    return v;
  };
  Runtime rt;
  auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
  SendPort to = *rt.send_port((*iso)->main_port());
  const PortId id = (*iso)->main_port();
  (*iso)->destroy();

  auto b = batch_of(10);
  EXPECT_EQ(to.post_batch(b).error(), Errc::port_closed);
  EXPECT_EQ(c.finalized, 10u);
  b = batch_of(10);
  EXPECT_EQ(rt.post_batch(id, b).error(), Errc::unknown_port);
  EXPECT_EQ(c.finalized, 20u);
  b = batch_of(3);
  EXPECT_EQ(SendPort{}.post_batch(b).error(), Errc::unknown_port);
  EXPECT_EQ(c.finalized, 23u);
  for (const Message& m : b) EXPECT_EQ(m.kind(), Message::Kind::empty);
  EXPECT_TRUE(to.post_batch({}).error() == Errc::port_closed);  // an empty batch: still checked
  rt.shutdown();
  b = batch_of(2);
  EXPECT_EQ(rt.post_batch(id, b).error(), Errc::shutting_down);
  EXPECT_EQ(c.finalized, 25u);
}

// Batches racing the isolate's destruction from another thread: every payload is finalized or
// taken exactly once (the counts, and ASan for double frees).
TEST(PostBatch, DestroyRacingWithBatchesLosesNothing) {
  ReleaseCounter c;
  constexpr int kThreads = 3;
  constexpr int kBatches = 2'000;
  constexpr int kPerBatch = 16;
  {
    Runtime rt;
    auto iso = rt.spawn(make_handler([&c](Isolate&, Message& m) { c.take(m); }));
    SendPort to = *rt.send_port((*iso)->main_port());
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        started.fetch_add(1);
        std::vector<Message> batch;
        for (int i = 0; i < kBatches; ++i) {
          for (int k = 0; k < kPerBatch; ++k) batch.push_back(c.make());
          (void)to.post_batch(batch);
          batch.clear();
        }
      });
    }
    while (started.load() < kThreads) std::this_thread::yield();
    (*iso)->destroy();
    for (auto& t : threads) t.join();
    EXPECT_TRUE((*iso)->is_dead());
  }
  EXPECT_EQ(c.total(), std::uint64_t{kThreads} * kBatches * kPerBatch);
}

}  // namespace
}  // namespace evh
