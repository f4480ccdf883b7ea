// Helpers for the C API's tests: they see evh only through <evh/evh.h>, as a runtime would.
#pragma once

#include <evh/evh.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace evh_capi_test {

// Generous: a test that waits this long has hung, not run slowly.
inline constexpr int64_t kLongWaitNs = INT64_C(60'000'000'000);
inline constexpr int64_t kMs = 1'000'000;

// A runtime destroyed at the end of the test; every handle taken from it must be released
// first (evh_runtime_destroy refuses otherwise), so declare this before them.
struct Runtime {
  evh_runtime* rt = nullptr;
  explicit Runtime(const evh_runtime_options* options = nullptr) {
    EXPECT_EQ(evh_runtime_create(options, &rt), EVH_OK);
  }
  ~Runtime() {
    if (rt != nullptr) {
      EXPECT_EQ(evh_runtime_destroy(rt), EVH_OK);
    }
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  operator evh_runtime*() const { return rt; }  // NOLINT: a handle, used as one
};

struct Receiver {
  evh_receiver* r = nullptr;
  explicit Receiver(evh_runtime* rt) { EXPECT_EQ(evh_receiver_open(rt, &r), EVH_OK); }
  ~Receiver() {
    if (r != nullptr) {
      EXPECT_EQ(evh_receiver_destroy(r), EVH_OK);
    }
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  evh_port_id port() const { return evh_receiver_port(r); }

  // The next message (the caller destroys it), or null after a failed expectation.
  evh_message* next() {
    evh_message* m = nullptr;
    const int e = evh_receiver_receive(r, kLongWaitNs, &m);
    EXPECT_EQ(e, EVH_OK) << evh_strerror(e);
    return m;
  }
  // The next message's bytes as text.
  std::string text() {
    evh_message* m = next();
    size_t n = 0;
    const void* d = evh_message_data(m, &n);
    std::string s(static_cast<const char*>(d), d != nullptr ? n : 0);
    evh_message_destroy(m);
    return s;
  }
  // The next message as an exit listener's.
  evh_isolate_exit exit() {
    evh_message* m = next();
    evh_isolate_exit e{};
    EXPECT_EQ(evh_message_isolate_exit(m, &e), EVH_OK);
    evh_message_destroy(m);
    return e;
  }
  // True when nothing is queued now.
  bool empty() {
    evh_message* m = nullptr;
    const int e = evh_receiver_try_receive(r, &m);
    evh_message_destroy(m);
    return e == EVH_ETIMEDOUT;
  }
};

inline int post_text(evh_runtime* rt, evh_port_id port, const std::string& s, unsigned flags = 0) {
  return evh_post(rt, port, s.data(), s.size(), flags);
}

// Native payloads that count their finalizations.
struct Finalized {
  std::atomic<int> count{0};
  static void finalize(void* self) noexcept {
    static_cast<Finalized*>(self)->count.fetch_add(1, std::memory_order_relaxed);
  }
  int get() const { return count.load(std::memory_order_acquire); }
};

}  // namespace evh_capi_test
