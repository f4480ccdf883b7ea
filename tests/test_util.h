// Helpers shared by the tests: payloads that count their releases, and waiting on a Receiver.
#pragma once

#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <thread>
#include <vector>

namespace evh::test {

// Every message made by `make()` carries this counter as its native object; the finalizer
// counts releases. Receivers that take the object count it as taken.
struct ReleaseCounter {
  std::atomic<std::uint64_t> finalized{0};
  std::atomic<std::uint64_t> taken{0};

  Message make() noexcept {
    return Message::native(this, [](void* self) noexcept {
      static_cast<ReleaseCounter*>(self)->finalized.fetch_add(1, std::memory_order_relaxed);
    });
  }
  // In a handler: take the object so the finalizer does not run, and count it.
  void take(Message& m) noexcept {
    if (m.take_native() != nullptr) taken.fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t total() const noexcept {
    return finalized.load(std::memory_order_relaxed) + taken.load(std::memory_order_relaxed);
  }
};

// Generous: a test that waits this long has hung, not run slowly.
inline constexpr std::chrono::seconds kLongWait{60};

inline Message expect_receive(Receiver& rx) {
  auto r = rx.receive(kLongWait);
  EXPECT_TRUE(r.ok()) << r.error().message();
  if (!r.ok()) return Message{};
  return std::move(r).value();
}

// One sender of the per-sender FIFO tests: posts the values `sender << 32 | i` for i in
// 0..count-1, in flushes of 1..100, by one kind of post chosen by the sender's number — 0 single
// `post`s, 1 `post_batch` of Messages, 2 `post_u64_batch`, 3 `Runtime::post_bytes_batch` by id,
// 4 single heap byte messages (48 bytes, the value in the first 8).
inline void post_tagged(Runtime& rt, const SendPort& to, PortId port, std::uint64_t sender,
                        std::uint64_t count) {
  std::vector<Message> batch;
  std::vector<std::uint64_t> values;
  std::uint64_t i = 0;
  for (std::uint64_t flush = 0; i < count; ++flush) {
    const std::uint64_t k = std::min<std::uint64_t>(1 + flush % 100, count - i);
    if (sender == 0 || sender == 4) {
      const std::uint64_t v = sender << 32 | i++;
      std::byte big[48] = {};  // more than kInlineBytes: a heap payload
      std::memcpy(big, &v, sizeof v);
      const Status st = to.post(sender == 0 ? Message::u64(v) : Message::bytes(big));
      ASSERT_TRUE(st.ok()) << st.error().message();
      continue;
    }
    if (sender == 1) {
      batch.clear();
      for (std::uint64_t j = 0; j < k; ++j) batch.push_back(Message::u64(sender << 32 | i++));
      ASSERT_TRUE(to.post_batch(batch).ok());
      continue;
    }
    values.clear();
    for (std::uint64_t j = 0; j < k; ++j) values.push_back(sender << 32 | i++);
    const Status st = sender == 2 ? to.post_u64_batch(values)
                                  : rt.post_bytes_batch(port, std::as_bytes(std::span(values)), 8);
    ASSERT_TRUE(st.ok()) << st.error().message();
  }
}

// post_tagged's senders 0..senders-1 at once, one thread each, into `port`; returns when all
// have posted.
inline void post_tagged_concurrently(Runtime& rt, PortId port, std::uint64_t senders,
                                     std::uint64_t count) {
  const SendPort to = *rt.send_port(port);
  std::vector<std::thread> threads;
  for (std::uint64_t s = 0; s < senders; ++s) {
    threads.emplace_back([&rt, to, port, s, count] { post_tagged(rt, to, port, s, count); });
  }
  for (auto& t : threads) t.join();
}

// The receiving side of the per-sender FIFO tests: sees values `sender << 32 | i` and keeps
// whether each sender's arrived in its order from 0, and none from a sender beyond kSenders.
template <std::size_t kSenders>
struct SenderOrder {
  std::uint64_t next[kSenders] = {};
  std::uint64_t got = 0;
  bool in_order = true;

  void see(std::uint64_t v) noexcept {
    const std::uint64_t s = v >> 32;
    if (s >= kSenders || (v & 0xFFFFFFFF) != next[s]) in_order = false;
    if (s < kSenders) next[s] = (v & 0xFFFFFFFF) + 1;
    ++got;
  }
};

// An isolate whose handler checks `total` u64 messages with a SenderOrder and, at the last one,
// posts its verdict to `done`: 1 when every sender's came in order.
template <std::size_t kSenders>
Result<IsolateRef> spawn_order_checker(Runtime& rt, SendPort done, std::uint64_t total) {
  auto order = std::make_shared<SenderOrder<kSenders>>();
  return rt.spawn(make_handler([order, done, total](Isolate&, Message& m) {
    order->see(m.as_u64());
    if (order->got == total) (void)done.post(Message::u64(order->in_order));
  }));
}

}  // namespace evh::test
