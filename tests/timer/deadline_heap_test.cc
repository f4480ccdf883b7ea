#include "timer/deadline_heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

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

// earliest_after: the first deadline past `now`, found among the due entries' children, against
// a reference over every entry; more than 16 due entries answer `now` (bounded work).
TEST(DeadlineHeap, EarliestAfterIsTheFirstDeadlineNotYetDue) {
  constexpr std::int64_t kNone = INT64_MAX;
  DeadlineHeap h;
  EXPECT_EQ(h.earliest_after(kT0, kNone), kNone);
  h.set(1, kT0 + 10);
  EXPECT_EQ(h.earliest_after(kT0, kNone), kT0 + 10);    // nothing due: the top
  EXPECT_EQ(h.earliest_after(kT0 + 10, kNone), kNone);  // the only one is due
  h.set(2, kT0 + 30);
  h.set(3, kT0 + 20);
  h.set(4, kT0 + 5);
  EXPECT_EQ(h.earliest_after(kT0 + 10, kNone), kT0 + 20);  // 5 and 10 due
  EXPECT_EQ(h.earliest_after(kT0 + 25, kNone), kT0 + 30);
  EXPECT_EQ(h.earliest_after(kT0 + 30, kNone), kNone);

  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    DeadlineHeap r;
    std::vector<std::int64_t> all;
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      const std::int64_t t = kT0 + static_cast<std::int64_t>(rng() % 100);
      r.set(static_cast<std::uint64_t>(k), t);
      all.push_back(t);
    }
    const std::int64_t now = kT0 + static_cast<std::int64_t>(rng() % 100);
    std::int64_t want = kNone;
    int due = 0;
    for (std::int64_t t : all) {
      if (t > now)
        want = std::min(want, t);
      else
        ++due;
    }
    const std::int64_t got = r.earliest_after(now, kNone);
    if (due > 16) {
      EXPECT_TRUE(got == want || got == now) << "round " << round;
    } else {
      EXPECT_EQ(got, want) << "round " << round << ", " << due << " due";
    }
  }
}

}  // namespace
}  // namespace evh::detail
