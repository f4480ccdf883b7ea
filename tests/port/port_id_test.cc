#include "port/port_id.h"

#include <gtest/gtest.h>

#include <unordered_set>

namespace evh::detail {
namespace {

// A million ids: none is 0, none repeats.
TEST(PortIdGenerator, NonZeroAndUnique) {
  PortIdGenerator gen;
  std::unordered_set<std::uint64_t> seen;
  seen.reserve(1'000'000);
  for (int i = 0; i < 1'000'000; ++i) {
    const auto id = static_cast<std::uint64_t>(gen.next());
    ASSERT_NE(id, 0u);
    ASSERT_TRUE(seen.insert(id).second) << "repeated id after " << i;
  }
}

// Consecutive ids are not consecutive numbers, and two generators (two runtimes) have
// different keys, so one runtime's ids say nothing about another's.
TEST(PortIdGenerator, IdsLookUnrelated) {
  PortIdGenerator a;
  PortIdGenerator b;
  const auto a1 = static_cast<std::uint64_t>(a.next());
  const auto a2 = static_cast<std::uint64_t>(a.next());
  EXPECT_NE(a2 - a1, 1u);
  EXPECT_NE(a.permute(12345), b.permute(12345));
  // About half of the bits flip between neighbouring counters.
  int flipped = __builtin_popcountll(a.permute(1000) ^ a.permute(1001));
  EXPECT_GT(flipped, 10);
  EXPECT_LT(flipped, 54);
}

}  // namespace
}  // namespace evh::detail
