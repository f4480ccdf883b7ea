// The packed form of the batch handler (IsolateHandler::on_packed, issue 19): inline byte
// messages to the main port read in place, beside the batch form for everything else — with the
// batch form's guarantees: FIFO per sender across both forms, every message once, never more than
// the budget in one call, an exception reported once and the run not delivered again, a kill
// taking effect before the next call. A paused isolate keeps its messages queued, so the call
// sizes asserted here do not depend on timing.
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;

// What each call was given: which form and how many messages.
struct Call {
  bool packed;
  std::size_t size;
  friend bool operator==(const Call&, const Call&) = default;
};

// on_packed needs on_batch beside it (not on_message, not alone); refused spawns release the
// user data once.
TEST(PackedHandler, SpawnNeedsTheBatchFormBesideIt) {
  Runtime rt;
  static std::atomic<int> released{0};
  released = 0;
  auto packed = [](Isolate&, PackedMessages, void*) {};
  IsolateHandler with_message{[](Isolate&, Message&, void*) {}, nullptr,
                              [](void*) noexcept { released.fetch_add(1); }, nullptr, packed};
  EXPECT_EQ(rt.spawn(with_message).error(), Errc::invalid_argument);
  IsolateHandler alone{nullptr, nullptr, [](void*) noexcept { released.fetch_add(1); }, nullptr,
                       packed};
  EXPECT_EQ(rt.spawn(alone).error(), Errc::invalid_argument);
  EXPECT_EQ(released.load(), 2);
}

// Five senders — single u64 posts, message batches, packed u64 batches through a SendPort, packed
// bytes by id, and heap byte messages — into one packed handler: each sender's values arrive in
// its order, every one once, across both forms; runs come packed, heap bytes as Messages, and no
// packed call holds more than the budget.
TEST(PackedHandler, PerSenderFifoAcrossBothFormsAndEveryKindOfPost) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  constexpr int kSenders = 5;
  constexpr std::uint64_t kPer = 20'000;
  struct State {
    test::SenderOrder<kSenders> order;
    std::uint64_t packed_calls = 0;
    std::uint64_t heap_messages = 0;
    std::size_t largest_packed = 0;
  };
  struct Sink {
    std::shared_ptr<State> state;
    SendPort done;
    void finish_if_all() {
      if (state->order.got == kSenders * kPer) {
        const bool ok = state->order.in_order && state->packed_calls > 0 &&
                        state->heap_messages == kPer && state->largest_packed <= 64;
        (void)done.post(Message::u64(ok ? 1 : 0));
      }
    }
    void operator()(Isolate&, std::span<Message> ms) {
      for (Message& m : ms) {
        std::uint64_t v = 0;
        std::memcpy(&v, m.data().data(), sizeof v);
        if (m.kind() == Message::Kind::heap_bytes) ++state->heap_messages;
        state->order.see(v);
      }
      finish_if_all();
    }
    void operator()(Isolate&, PackedMessages ms) {
      ++state->packed_calls;
      state->largest_packed = std::max<std::size_t>(state->largest_packed, ms.size());
      for (std::uint32_t i = 0; i < ms.size(); ++i) state->order.see(ms.u64(i));
      finish_if_all();
    }
  };
  auto state = std::make_shared<State>();
  auto iso = rt.spawn(make_packed_handler(Sink{state, done}));
  ASSERT_TRUE(iso.ok());
  test::post_tagged_concurrently(rt, (*iso)->main_port(), kSenders, kPer);
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
  rt.shutdown();
  EXPECT_EQ((*iso)->stats().handled, kSenders * kPer);
}

// With a budget of 5 and a run of 100 values queued while paused: the turn's first look at the
// mailbox takes one message through the batch form, then the rest of the run comes packed, 4
// (what the budget has left) and then 5 a turn — the run split where each turn stopped, the
// values in order.
TEST(PackedHandler, RunsSplitWhereTheBudgetEndsATurn) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  struct Seen {
    std::vector<Call> calls;
    std::vector<std::uint64_t> values;
  };
  struct Sink {
    std::shared_ptr<Seen> seen;
    SendPort done;
    void operator()(Isolate&, std::span<Message> ms) {
      seen->calls.push_back({false, ms.size()});
      for (Message& m : ms) seen->values.push_back(m.as_u64());
      if (seen->values.size() == 100) (void)done.post(Message::u64(1));
    }
    void operator()(Isolate&, PackedMessages ms) {
      seen->calls.push_back({true, ms.size()});
      for (std::uint32_t i = 0; i < ms.size(); ++i) seen->values.push_back(ms.u64(i));
      if (seen->values.size() == 100) (void)done.post(Message::u64(1));
    }
  };
  auto seen = std::make_shared<Seen>();
  IsolateOptions options;
  options.budget = 5;
  auto iso = rt.spawn(make_packed_handler(Sink{seen, done}), options);
  ASSERT_TRUE(iso.ok());
  const PauseCapability cap = (*iso)->pause();
  std::vector<std::uint64_t> values(100);
  for (std::uint64_t i = 0; i < values.size(); ++i) values[i] = i;
  ASSERT_TRUE(rt.send_port((*iso)->main_port())->post_u64_batch(values).ok());
  ASSERT_TRUE((*iso)->resume(cap).ok());
  (void)expect_receive(*rx);
  rt.shutdown();
  std::vector<Call> want{{false, 1}, {true, 4}};
  for (int i = 0; i < 19; ++i) want.push_back({true, 5});
  EXPECT_EQ(seen->calls, want);
  EXPECT_EQ(seen->values, values);
  const IsolateStats st = (*iso)->stats();
  EXPECT_EQ(st.handled, 100u);
  EXPECT_EQ(st.mailbox_peak, 100u);
}

// Every size of inline bytes, posted packed through a SendPort and by id: each run arrives with
// its size, the stride of its words, and the bytes as sent.
TEST(PackedHandler, BytesOfEveryInlineSizeInPlace) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  constexpr std::size_t kCount = 10;
  struct Seen {
    std::vector<std::byte> bytes;  // every message's bytes, in order
    std::vector<std::size_t> bad;  // sizes whose stride or size was wrong
    std::uint64_t messages = 0;
    std::uint64_t packed = 0;
  };
  struct Sink {
    std::shared_ptr<Seen> seen;
    SendPort done;
    std::uint64_t expected;
    void count(std::uint64_t n) {
      seen->messages += n;
      if (seen->messages == expected) (void)done.post(Message::u64(1));
    }
    void operator()(Isolate&, std::span<Message> ms) {
      for (Message& m : ms) {
        seen->bytes.insert(seen->bytes.end(), m.data().begin(), m.data().end());
      }
      count(ms.size());
    }
    void operator()(Isolate&, PackedMessages ms) {
      ++seen->packed;
      if (ms.stride() != (ms.each() + 7) / 8 * 8 || ms.each() == 0 ||
          ms.each() > Message::kInlineBytes) {
        seen->bad.push_back(ms.each());
      }
      for (std::uint32_t i = 0; i < ms.size(); ++i) {
        const std::span<const std::byte> b = ms[i];
        if (b.data() != ms.data() + i * ms.stride()) seen->bad.push_back(ms.each());
        seen->bytes.insert(seen->bytes.end(), b.begin(), b.end());
      }
      count(ms.size());
    }
  };
  auto seen = std::make_shared<Seen>();
  const std::uint64_t expected = 2 * kCount * Message::kInlineBytes;
  auto iso = rt.spawn(make_packed_handler(Sink{seen, done, expected}));
  ASSERT_TRUE(iso.ok());
  const PortId port = (*iso)->main_port();
  SendPort to = *rt.send_port(port);
  const PauseCapability cap = (*iso)->pause();
  std::vector<std::byte> sent;
  for (std::size_t each = 1; each <= Message::kInlineBytes; ++each) {
    for (int by_id = 0; by_id < 2; ++by_id) {
      std::vector<std::byte> packed(each * kCount);
      for (std::size_t k = 0; k < packed.size(); ++k) {
        packed[k] = static_cast<std::byte>((each * 31 + k * 7 + by_id) & 0xFF);
      }
      const Status st =
          by_id != 0 ? rt.post_bytes_batch(port, packed, each) : to.post_bytes_batch(packed, each);
      ASSERT_TRUE(st.ok()) << st.error().message();
      sent.insert(sent.end(), packed.begin(), packed.end());
    }
  }
  ASSERT_TRUE((*iso)->resume(cap).ok());
  (void)expect_receive(*rx);
  rt.shutdown();
  EXPECT_TRUE(seen->bad.empty());
  EXPECT_EQ(seen->bytes, sent);
  // One run per post but the turns' first looks: nearly all of them came packed.
  EXPECT_GE(seen->packed, 2 * Message::kInlineBytes - 1);
}

// A packed handler that throws on every call: each throw is reported once, and the run it was
// given is not delivered again — every value arrives exactly once across both forms.
TEST(PackedHandler, ThrowReportedOnceAndTheRunNotDeliveredAgain) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  struct Seen {
    std::vector<std::uint64_t> values;
    std::uint64_t packed_calls = 0;
  };
  struct Sink {
    std::shared_ptr<Seen> seen;
    SendPort done;
    void finish_if_all() {
      if (seen->values.size() == 192) (void)done.post(Message::u64(1));
    }
    void operator()(Isolate&, std::span<Message> ms) {
      for (Message& m : ms) seen->values.push_back(m.as_u64());
      finish_if_all();
    }
    void operator()(Isolate&, PackedMessages ms) {
      ++seen->packed_calls;
      for (std::uint32_t i = 0; i < ms.size(); ++i) seen->values.push_back(ms.u64(i));
      finish_if_all();
      throw std::runtime_error("packed");
    }
  };
  auto seen = std::make_shared<Seen>();
  auto iso = rt.spawn(make_packed_handler(Sink{seen, done}));
  ASSERT_TRUE(iso.ok());
  const PauseCapability cap = (*iso)->pause();
  SendPort to = *rt.send_port((*iso)->main_port());
  std::vector<std::uint64_t> values(192);
  for (std::uint64_t i = 0; i < values.size(); ++i) values[i] = i;
  for (int b = 0; b < 3; ++b) {
    ASSERT_TRUE(to.post_u64_batch(std::span(values).subspan(b * 64, 64)).ok());
  }
  ASSERT_TRUE((*iso)->resume(cap).ok());
  (void)expect_receive(*rx);
  rt.shutdown();
  EXPECT_EQ(seen->values, values);
  const IsolateStats st = (*iso)->stats();
  EXPECT_EQ(st.handled, 192u);
  EXPECT_GT(seen->packed_calls, 0u);
  EXPECT_EQ(st.exceptions, seen->packed_calls);
}

// A kill from inside a packed call takes effect before the next call: one packed call, and the
// rest of the mailbox is released undelivered (counted as dropped).
TEST(PackedHandler, KillFromInsideStopsBeforeTheNextCall) {
  Runtime rt;
  struct Seen {
    std::atomic<int> packed_calls{0};
    std::atomic<int> batch_calls{0};
    std::atomic<std::uint64_t> packed_messages{0};
  };
  struct Sink {
    std::shared_ptr<Seen> seen;
    void operator()(Isolate&, std::span<Message>) { seen->batch_calls.fetch_add(1); }
    void operator()(Isolate& self, PackedMessages ms) {
      seen->packed_messages.fetch_add(ms.size());
      seen->packed_calls.fetch_add(1);
      self.kill();
    }
  };
  auto seen = std::make_shared<Seen>();
  auto iso = rt.spawn(make_packed_handler(Sink{seen}));
  ASSERT_TRUE(iso.ok());
  const PauseCapability cap = (*iso)->pause();
  std::vector<std::uint64_t> values(300);
  for (std::uint64_t i = 0; i < values.size(); ++i) values[i] = i;
  ASSERT_TRUE(rt.send_port((*iso)->main_port())->post_u64_batch(values).ok());
  ASSERT_TRUE((*iso)->resume(cap).ok());
  while (!(*iso)->is_dead()) std::this_thread::yield();
  rt.shutdown();
  EXPECT_EQ(seen->packed_calls.load(), 1);
  // The turn's first look took one message through the batch form before the packed call.
  EXPECT_EQ(seen->batch_calls.load(), 1);
  const IsolateStats st = (*iso)->stats();
  EXPECT_EQ(st.handled, 1 + seen->packed_messages.load());
  EXPECT_EQ(st.handled + st.dropped, 300u);
}

}  // namespace
}  // namespace evh
