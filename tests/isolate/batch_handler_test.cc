// The batch form of the message handler (IsolateHandler::on_batch) and packed posts
// (SendPort::post_bytes_batch / post_u64_batch), issue 19: the guarantees of the per-message
// handler and of post for every message — FIFO per sender, each payload released exactly once
// (also when the handler throws or the isolate is killed racing the senders), kills and pauses
// between batches, never more than the budget or kMaxBatch in one call. A paused isolate keeps
// its messages queued, so the batch sizes asserted here do not depend on timing.
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;
using test::ReleaseCounter;

// Spawning with both forms, or neither, is refused, and the user data is released once.
TEST(BatchHandler, SpawnNeedsExactlyOneForm) {
  Runtime rt;
  static std::atomic<int> released{0};
  released = 0;
  IsolateHandler both{[](Isolate&, Message&, void*) {}, nullptr,
                      [](void*) noexcept { released.fetch_add(1); },
                      [](Isolate&, std::span<Message>, void*) {}};
  EXPECT_EQ(rt.spawn(both).error(), Errc::invalid_argument);
  IsolateHandler neither{nullptr, nullptr, [](void*) noexcept { released.fetch_add(1); }, nullptr};
  EXPECT_EQ(rt.spawn(neither).error(), Errc::invalid_argument);
  EXPECT_EQ(released.load(), 2);
}

// Four senders — single posts, message batches, packed u64 batches through a SendPort and packed
// bytes by id — into one batch handler: each sender's messages arrive in its order, every one
// once, never more than kMaxBatch in one call.
TEST(BatchHandler, PerSenderFifoAcrossEveryKindOfPost) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  constexpr int kSenders = 4;
  constexpr std::uint64_t kPer = 20'000;
  struct State {
    test::SenderOrder<kSenders> order;
    std::size_t largest = 0;
  };
  auto state = std::make_shared<State>();
  auto iso = rt.spawn(make_batch_handler([state, done](Isolate&, std::span<Message> ms) {
    state->largest = std::max(state->largest, ms.size());
    for (Message& m : ms) {
      state->order.see(m.as_u64());
      if (state->order.got == kSenders * kPer) {
        (void)done.post(Message::u64(state->order.in_order && state->largest <= kMaxBatch));
      }
    }
  }));
  ASSERT_TRUE(iso.ok());
  test::post_tagged_concurrently(rt, (*iso)->main_port(), kSenders, kPer);
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
}

// A batch never holds more than the turn's budget has left: with a budget of 5 and 100 messages
// queued while paused, the first turn's first message comes alone (its first look at the
// mailbox), then 4, then batches of 5, one turn each.
TEST(BatchHandler, BatchesStayWithinTheBudget) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  auto sizes = std::make_shared<std::vector<std::size_t>>();
  IsolateOptions options;
  options.budget = 5;
  auto iso = rt.spawn(make_batch_handler([sizes, done](Isolate&, std::span<Message> ms) {
                        sizes->push_back(ms.size());
                        if (ms.back().as_u64() == 99) (void)done.post(Message::u64(1));
                      }),
                      options);
  ASSERT_TRUE(iso.ok());
  const PauseCapability cap = (*iso)->pause();
  std::vector<std::uint64_t> values(100);
  for (std::uint64_t i = 0; i < values.size(); ++i) values[i] = i;
  ASSERT_TRUE(rt.send_port((*iso)->main_port())->post_u64_batch(values).ok());
  EXPECT_EQ((*iso)->stats().mailbox_depth, 100u);
  ASSERT_TRUE((*iso)->resume(cap).ok());
  (void)expect_receive(*rx);
  rt.shutdown();
  std::vector<std::size_t> want{1, 4};
  for (int i = 0; i < 19; ++i) want.push_back(5);
  EXPECT_EQ(*sizes, want);
  const IsolateStats st = (*iso)->stats();
  EXPECT_EQ(st.handled, 100u);
  EXPECT_EQ(st.mailbox_peak, 100u);
}

// What a batch handler leaves in its messages is released once after it returns, what it takes
// is its own, and a batch whose handler throws is released too (the exception counted once per
// batch, not per message).
TEST(BatchHandler, LeftoversReleasedOnceAlsoWhenTheHandlerThrows) {
  ReleaseCounter c;
  constexpr int kMessages = 200;
  {
    Runtime rt;
    auto rx = rt.open_receiver();
    SendPort done = *rt.send_port(rx->id());
    auto calls = std::make_shared<int>(0);
    auto seen = std::make_shared<int>(0);
    auto iso =
        rt.spawn(make_batch_handler([&c, calls, seen, done](Isolate&, std::span<Message> ms) {
          const int call = (*calls)++;
          for (std::size_t j = 0; j < ms.size(); ++j) {
            if (j % 2 == 0) c.take(ms[j]);
          }
          *seen += static_cast<int>(ms.size());
          if (*seen == kMessages) (void)done.post(Message::u64(call));
          if (call % 3 == 1) throw std::runtime_error("batch");
        }));
    ASSERT_TRUE(iso.ok());
    const PauseCapability cap = (*iso)->pause();
    std::vector<Message> batch;
    for (int i = 0; i < kMessages; ++i) batch.push_back(c.make());
    ASSERT_TRUE(rt.send_port((*iso)->main_port())->post_batch(batch).ok());
    ASSERT_TRUE((*iso)->resume(cap).ok());
    const std::uint64_t last_call = expect_receive(*rx).as_u64();
    rt.shutdown();
    EXPECT_EQ(c.total(), std::uint64_t{kMessages});
    EXPECT_GT(c.finalized.load(), 0u);
    EXPECT_GT(c.taken.load(), 0u);
    const IsolateStats st = (*iso)->stats();
    EXPECT_EQ(st.handled, std::uint64_t{kMessages});
    // Calls 1, 4, 7, ... threw.
    EXPECT_EQ(st.exceptions, (last_call + 2) / 3);
  }
  EXPECT_EQ(c.total(), std::uint64_t{kMessages});
}

// A kill from inside the first batch takes effect before the next one: the handler is called
// once, and every message — the batch's and those still queued — is released exactly once.
TEST(BatchHandler, KillFromInsideStopsBeforeTheNextBatch) {
  ReleaseCounter c;
  {
    Runtime rt;
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto iso = rt.spawn(make_batch_handler([calls](Isolate& self, std::span<Message>) {
      calls->fetch_add(1);
      self.kill();
    }));
    ASSERT_TRUE(iso.ok());
    const PauseCapability cap = (*iso)->pause();
    SendPort to = *rt.send_port((*iso)->main_port());
    std::vector<Message> batch;
    for (int i = 0; i < 300; ++i) batch.push_back(c.make());
    ASSERT_TRUE(to.post_batch(batch).ok());
    ASSERT_TRUE((*iso)->resume(cap).ok());
    while (!(*iso)->is_dead()) std::this_thread::yield();
    rt.shutdown();
    EXPECT_EQ(calls->load(), 1);
  }
  EXPECT_EQ(c.finalized.load(), 300u);
}

// Kills racing with senders of packed, message and native batches: every native payload is
// finalized or taken exactly once (the counts, and ASan for double frees).
TEST(BatchHandler, KillRacingWithBatchSendersLosesNothing) {
  ReleaseCounter c;
  constexpr int kThreads = 3;
  constexpr int kBatches = 2'000;
  constexpr int kPerBatch = 16;
  {
    Runtime rt;
    auto iso = rt.spawn(make_batch_handler([&c](Isolate&, std::span<Message> ms) {
      for (std::size_t j = 0; j < ms.size(); j += 2) c.take(ms[j]);
    }));
    SendPort to = *rt.send_port((*iso)->main_port());
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        started.fetch_add(1);
        std::vector<Message> batch;
        std::uint64_t values[kPerBatch] = {};
        for (int i = 0; i < kBatches; ++i) {
          if (t == 0) {
            (void)to.post_u64_batch(values);
            continue;
          }
          for (int k = 0; k < kPerBatch; ++k) batch.push_back(c.make());
          if (t == 1) {
            (void)to.post_batch(batch);
          } else {
            for (Message& m : batch) (void)to.post(std::move(m));
          }
          batch.clear();
        }
      });
    }
    while (started.load() < kThreads) std::this_thread::yield();
    (*iso)->kill();
    for (auto& t : threads) t.join();
    EXPECT_TRUE((*iso)->is_dead());
  }
  EXPECT_EQ(c.total(), std::uint64_t{2} * kBatches * kPerBatch);
}

// Messages to another port of the isolate and OOB messages come alone, in spans of one, with
// their port; microtasks scheduled in a batch run before the next batch.
TEST(BatchHandler, OtherPortsAndOobComeAloneAndMicrotasksRunBetweenBatches) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  struct State {
    PortId extra = PortId::none;
    bool microtask_pending = false;
    bool microtask_ran_late = false;
    std::vector<std::pair<std::size_t, std::uint64_t>> calls;  // span size, first value
    bool other_ports_alone = true;
  };
  auto state = std::make_shared<State>();
  auto iso = rt.spawn(make_batch_handler([state, done](Isolate& self, std::span<Message> ms) {
    if (state->microtask_pending) state->microtask_ran_late = true;
    if (ms[0].as_u64() == 0 && state->extra == PortId::none) {  // the set-up message
      state->extra = *self.open_port();
      (void)done.post(Message::u64(static_cast<std::uint64_t>(state->extra)));
      return;
    }
    state->calls.emplace_back(ms.size(), ms[0].as_u64());
    for (const Message& m : ms) {
      if (m.port() != self.main_port() && ms.size() != 1) state->other_ports_alone = false;
    }
    state->microtask_pending = true;
    ASSERT_TRUE(
        self.schedule_microtask(
                [](Isolate&, void* arg) { static_cast<State*>(arg)->microtask_pending = false; },
                state.get())
            .ok());
    if (ms.back().as_u64() == 999) (void)done.post(Message::u64(1));
  }));
  ASSERT_TRUE(iso.ok());
  SendPort to = *rt.send_port((*iso)->main_port());
  ASSERT_TRUE(to.post(Message::u64(0)).ok());
  const PortId extra{expect_receive(*rx).as_u64()};
  SendPort to_extra = *rt.send_port(extra);
  const PauseCapability cap = (*iso)->pause();
  std::vector<std::uint64_t> values{1, 2, 3};
  ASSERT_TRUE(to.post_u64_batch(values).ok());
  ASSERT_TRUE(to_extra.post(Message::u64(100)).ok());
  ASSERT_TRUE(to_extra.post_u64_batch(std::vector<std::uint64_t>{101, 102}).ok());
  values = {4, 5, 6, 999};
  ASSERT_TRUE(to.post_u64_batch(values).ok());
  ASSERT_TRUE(to.post(Message::u64(200), Priority::oob).ok());  // paused: OOB still runs
  ASSERT_TRUE((*iso)->resume(cap).ok());
  (void)expect_receive(*rx);
  rt.shutdown();
  const std::vector<std::pair<std::size_t, std::uint64_t>> want{{1, 200}, {3, 1},   {1, 100},
                                                                {1, 101}, {1, 102}, {4, 4}};
  EXPECT_EQ(state->calls, want);
  EXPECT_TRUE(state->other_ports_alone);
  EXPECT_FALSE(state->microtask_ran_late);
}

// Packed posts: bad shapes are refused before anything is posted; the errors of post otherwise;
// every size from 1 to Message::kInlineBytes arrives as the bytes posted, to an isolate's main
// port, to its other port and to a Receiver.
TEST(PostBytesBatch, ShapesErrorsAndEverySizeToEveryKindOfPort) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort to_rx = *rt.send_port(rx->id());
  std::vector<std::byte> data(Message::kInlineBytes * 3);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i + 1);
  EXPECT_EQ(to_rx.post_bytes_batch(data, 0).error(), Errc::invalid_argument);
  EXPECT_EQ(to_rx.post_bytes_batch(data, Message::kInlineBytes + 1).error(),
            Errc::invalid_argument);
  EXPECT_EQ(to_rx.post_bytes_batch(std::span(data).first(7), 2).error(), Errc::invalid_argument);
  EXPECT_EQ(SendPort{}.post_bytes_batch(data, 8).error(), Errc::unknown_port);
  EXPECT_EQ(rt.post_bytes_batch(PortId{12345}, data, 8).error(), Errc::unknown_port);
  EXPECT_FALSE(rx->try_receive().ok());  // nothing was posted

  // An isolate that forwards what it gets (its main port's and its other port's) to the receiver,
  // each as a message of its own: the test then reads them in order.
  auto iso = rt.spawn(make_batch_handler([to_rx](Isolate& self, std::span<Message> ms) {
    for (Message& m : ms) {
      if (m.as_u64() == 0xE7 && m.data().size() == 8) {
        (void)to_rx.post(Message::u64(static_cast<std::uint64_t>(*self.open_port())));
      } else {
        (void)to_rx.post(std::move(m));
      }
    }
  }));
  ASSERT_TRUE(iso.ok());
  SendPort to_main = *rt.send_port((*iso)->main_port());
  ASSERT_TRUE(to_main.post(Message::u64(0xE7)).ok());
  SendPort to_extra = *rt.send_port(PortId{expect_receive(*rx).as_u64()});
  for (std::size_t each = 1; each <= Message::kInlineBytes; ++each) {
    for (SendPort* to : {&to_rx, &to_main, &to_extra}) {
      const auto whole = std::span(data).first(data.size() / each * each);
      ASSERT_TRUE(to->post_bytes_batch(whole, each).ok());
      for (std::size_t i = 0; i < data.size() / each; ++i) {
        Message m = expect_receive(*rx);
        ASSERT_EQ(m.kind(), Message::Kind::inline_bytes);
        ASSERT_EQ(m.data().size(), each);
        ASSERT_TRUE(std::equal(m.data().begin(), m.data().end(), data.begin() + i * each))
            << each << " bytes, message " << i;
      }
    }
  }
  (*iso)->destroy();
  EXPECT_EQ(to_main.post_u64_batch(std::vector<std::uint64_t>{1}).error(), Errc::port_closed);
  EXPECT_TRUE(to_main.post_bytes_batch({}, 8).error() == Errc::port_closed);  // still checked
  rt.shutdown();
  EXPECT_EQ(rt.post_bytes_batch(rx->id(), data, 8).error(), Errc::shutting_down);
}

}  // namespace
}  // namespace evh
