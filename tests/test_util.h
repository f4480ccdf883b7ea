// Helpers shared by the tests: payloads that count their releases, and waiting on a Receiver.
#pragma once

#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>

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

}  // namespace evh::test
