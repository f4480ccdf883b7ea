// PortMap: port id → PortState, sharded so that look-ups from many threads do not serialise.
//
// 64 shards, chosen by the id's low bits (ids are already uniformly spread). Each shard is an
// open-addressing table with linear probing and backward-shift deletion (no tombstones), under
// a reader-writer spin lock. A post looks up and queues the message under the shard's read lock,
// so a concurrent close (write lock) either happens before the look-up (the post fails) or after
// the message is queued (it is dropped at delivery). Queueing never blocks, so the read lock is
// held for a bounded, short time. What can run foreign code — handing an isolate that just
// became runnable to its runner: an embedder's `TaskRunner::post()`, which may open, close or
// post to ports of the same shard, or the pool starting a thread — runs after the lock is let go
// (issue 14, defect 7: a re-entrant runner deadlocked on the shard's write lock). That costs the
// fast path nothing: the isolate is kept alive across the gap by the reference its turn takes
// anyway, and a post to an isolate already scheduled or running has nothing to hand over.
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

  // Inserts `port` and takes a reference to it. The id must not be present. Throws
  // std::bad_alloc when the shard's table cannot grow; nothing has changed then.
  void insert(PortState* port);
  // Removes `id`; returns the removed port (the map's reference passes to the caller), or null.
  PortState* erase(PortId id) noexcept;
  // Posts to `id`: looks up and queues under the shard's read lock, then (lock let go) hands the
  // target to its runner if the message made it runnable. On an error the message is untouched
  // (the caller releases it, outside the lock).
  Status post(PortId id, Message&& message, Priority priority) noexcept;
  // A new reference to the port, or null.
  PortState* acquire(PortId id) noexcept;
  std::size_t size() const noexcept;
  // Which shard holds `id` (tests use it to put two ports in one shard).
  static std::size_t shard_of(PortId id) noexcept {
    return static_cast<std::uint64_t>(id) & ((1u << kShardBits) - 1);
  }

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

  Shard& shard_for(PortId id) noexcept { return shards_[shard_of(id)]; }

  std::array<Shard, 1u << kShardBits> shards_;
};

}  // namespace evh::detail
