// PortMap: port id → PortState, sharded so that look-ups from many threads do not serialise.
//
// 64 shards, chosen by the id's low bits (ids are already uniformly spread). Each shard is an
// open-addressing table with linear probing and backward-shift deletion (no tombstones), under
// a reader-writer spin lock. A post looks up and enqueues under the shard's read lock, so a
// concurrent close (write lock) either happens before the look-up (the post fails) or after the
// enqueue (the message is dropped at delivery). Enqueueing never blocks, so the read lock is held
// for a bounded, short time.
#pragma once

#include <evh/error.h>
#include <evh/message.h>

#include <array>
#include <cstdint>
#include <vector>

#include "port/port.h"
#include "sync/rw_spinlock.h"

namespace evh::detail {

class PortMap {
 public:
  PortMap() = default;
  PortMap(const PortMap&) = delete;
  PortMap& operator=(const PortMap&) = delete;
  ~PortMap();  // releases the map's references to any ports still present

  // Inserts `port` and takes a reference to it. The id must not be present.
  void insert(PortState* port);
  // Removes `id`; returns the removed port (the map's reference passes to the caller), or null.
  PortState* erase(PortId id) noexcept;
  // Posts to `id` under the shard's read lock.
  Status post(PortId id, Message&& message, Priority priority) noexcept;
  // A new reference to the port, or null.
  PortState* acquire(PortId id) noexcept;
  std::size_t size() const noexcept;

 private:
  // A slot holds the port pointer only (null: empty); the id is read through it. Half the
  // memory of an (id, pointer) pair, and a look-up dereferences the port anyway to post.
  struct alignas(64) Shard {
    mutable RwSpinLock lock;
    std::uint32_t count = 0;
    std::vector<PortState*> table;  // size is 0 or a power of two

    PortState* find(std::uint64_t id) const noexcept;
    void insert(PortState* port);
    PortState* erase(std::uint64_t id) noexcept;
  };
  static constexpr unsigned kShardBits = 6;

  Shard& shard_for(PortId id) noexcept {
    return shards_[static_cast<std::uint64_t>(id) & ((1u << kShardBits) - 1)];
  }

  std::array<Shard, 1u << kShardBits> shards_;
};

}  // namespace evh::detail
