#include "port/port_map.h"

#include <gtest/gtest.h>

#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace evh::detail {
namespace {

// A target that counts its references, so the test can see the map's bookkeeping.
class CountingTarget final : public PortTarget {
 public:
  void retain() noexcept override { ++refs; }
  void release() noexcept override { --refs; }
  bool enqueue(Message&&, Priority) noexcept override {
    ++enqueued;
    return true;
  }
  std::size_t enqueue_batch(std::span<Message> messages, Priority) noexcept override {
    enqueued += static_cast<int>(messages.size());
    return messages.size();
  }
  int refs = 0;
  int enqueued = 0;
};

// Random inserts and erases agree with std::unordered_map, including after backward shifts
// (ids are chosen so that many share a shard and collide in their home slots).
TEST(PortMap, AgreesWithReferenceMap) {
  CountingTarget target;
  PortMap map;
  std::unordered_map<std::uint64_t, PortState*> model;
  std::mt19937_64 rng(42);
  for (int step = 0; step < 200'000; ++step) {
    // Low 6 bits fixed (one shard), few distinct home slots: long probe runs.
    const std::uint64_t id = ((rng() % 512) << 6) | 5;
    if (rng() % 2 == 0 && model.count(id) == 0) {
      auto* p = PortState::make(static_cast<PortId>(id), &target, nullptr);
      map.insert(p);
      model[id] = p;
    } else if (model.count(id) != 0) {
      PortState* p = map.erase(static_cast<PortId>(id));
      ASSERT_EQ(p, model[id]);
      p->release();          // the map's reference
      model[id]->release();  // ours
      model.erase(id);
    }
    if (step % 1000 == 0) {
      for (auto& [k, v] : model) {
        PortState* got = map.acquire(static_cast<PortId>(k));
        ASSERT_EQ(got, v);
        got->release();
      }
      ASSERT_EQ(map.size(), model.size());
    }
  }
  for (auto& [k, v] : model) {
    map.erase(static_cast<PortId>(k))->release();
    v->release();
  }
  EXPECT_EQ(target.refs, 0);
  EXPECT_EQ(map.size(), 0u);
}

// Posting to an id the map does not hold fails without touching any target.
TEST(PortMap, PostToUnknownIdFails) {
  PortMap map;
  auto st = map.post(static_cast<PortId>(77), Message::u64(1), Priority::normal);
  EXPECT_EQ(st.error(), Errc::unknown_port);
}

}  // namespace
}  // namespace evh::detail
