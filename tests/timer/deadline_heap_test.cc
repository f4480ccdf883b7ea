#include "timer/deadline_heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace evh::detail {
namespace {

// Nanosecond deadlines, as the heap keeps them.
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kT0 = 0;

// Equal deadlines come out in the order they were set; replacing a key's deadline moves it.
TEST(DeadlineHeap, OrderTiesAndReplace) {
  DeadlineHeap h;
  h.set(1, kT0 + 5 * kMs);
  h.set(2, kT0 + 3 * kMs);
  h.set(3, kT0 + 5 * kMs);
  h.set(4, kT0 + 9 * kMs);
  h.set(4, kT0 + 1 * kMs);  // earlier
  h.set(2, kT0 + 7 * kMs);  // later
  EXPECT_EQ(h.size(), 4u);
  std::vector<std::uint64_t> order;
  while (!h.empty()) order.push_back(h.pop().key);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{4, 1, 3, 2}));
}

// Random sets, replaces and erases against a reference map.
TEST(DeadlineHeap, MatchesReference) {
  std::mt19937_64 rng(7);
  DeadlineHeap h;
  std::map<std::uint64_t, std::int64_t> ref;
  for (int i = 0; i < 20000; ++i) {
    const std::uint64_t key = rng() % 500;
    if (rng() % 3 == 0) {
      EXPECT_EQ(h.erase(key), ref.erase(key) == 1);
    } else {
      const std::int64_t t = kT0 + static_cast<std::int64_t>(rng() % 100000) * 1000;
      h.set(key, t);
      ref[key] = t;
    }
    ASSERT_EQ(h.size(), ref.size());
    if (!ref.empty()) {
      std::int64_t min = ref.begin()->second;
      for (auto& [k, t] : ref) min = std::min(min, t);
      ASSERT_EQ(h.top().deadline, min);
      ASSERT_EQ(ref.at(h.top().key), min);
    }
  }
  std::int64_t last = kT0;
  while (!h.empty()) {
    auto e = h.pop();
    EXPECT_GE(e.deadline, last);
    last = e.deadline;
    EXPECT_FALSE(h.contains(e.key));
  }
}

}  // namespace
}  // namespace evh::detail
