#include "port/port_map.h"

#include <mutex>
#include <shared_mutex>

#include "base/alloc_fault.h"

namespace evh::detail {
namespace {

// The id's bits above the shard bits pick the home slot.
inline std::size_t home(std::uint64_t id, std::size_t mask) noexcept {
  return (id >> 6) & mask;
}

}  // namespace

inline std::uint64_t key(const PortState* p) noexcept {
  return static_cast<std::uint64_t>(p->id());
}

PortState* PortMap::Shard::find(std::uint64_t id) const noexcept {
  if (table.empty()) return nullptr;
  const std::size_t mask = table.size() - 1;
  for (std::size_t i = home(id, mask);; i = (i + 1) & mask) {
    if (table[i] == nullptr) return nullptr;
    if (key(table[i]) == id) return table[i];
  }
}

void PortMap::Shard::insert(PortState* port) {
  if ((count + 1) * 4 > table.size() * 3) {  // keep the load at most 3/4
    // The new table is allocated before anything changes: a failure leaves the shard as it was.
    alloc_site();
    std::vector<PortState*> old(std::max<std::size_t>(16, table.size() * 2), nullptr);
    old.swap(table);
    count = 0;
    for (PortState* p : old) {
      if (p != nullptr) insert(p);
    }
  }
  const std::size_t mask = table.size() - 1;
  std::size_t i = home(key(port), mask);
  while (table[i] != nullptr) i = (i + 1) & mask;
  table[i] = port;
  ++count;
}

PortState* PortMap::Shard::erase(std::uint64_t id) noexcept {
  if (table.empty()) return nullptr;
  const std::size_t mask = table.size() - 1;
  std::size_t i = home(id, mask);
  for (;; i = (i + 1) & mask) {
    if (table[i] == nullptr) return nullptr;
    if (key(table[i]) == id) break;
  }
  PortState* removed = table[i];
  // Backward-shift: pull later entries of the probe run into the hole, so lookups never need
  // tombstones.
  std::size_t hole = i;
  for (std::size_t j = (i + 1) & mask; table[j] != nullptr; j = (j + 1) & mask) {
    const std::size_t h = home(key(table[j]), mask);
    // Move j into the hole when its home is not cyclically within (hole, j].
    const bool home_in_range = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
    if (!home_in_range) {
      table[hole] = table[j];
      hole = j;
    }
  }
  table[hole] = nullptr;
  --count;
  return removed;
}

PortMap::~PortMap() {
  for (Shard& s : shards_) {
    for (PortState* p : s.table) {
      if (p != nullptr) p->release();
    }
  }
}

void PortMap::insert(PortState* port) {
  Shard& s = shard_for(port->id());
  std::lock_guard guard(s.lock);
  s.insert(port);  // may throw std::bad_alloc, changing nothing
  port->retain();
}

PortState* PortMap::erase(PortId id) noexcept {
  Shard& s = shard_for(id);
  std::lock_guard guard(s.lock);
  return s.erase(static_cast<std::uint64_t>(id));
}

Status PortMap::post(PortId id, Message&& message, Priority priority) noexcept {
  Shard& s = shard_for(id);
  PortTarget* finish = nullptr;
  Status st;
  {
    std::shared_lock guard(s.lock);
    PortState* port = s.find(static_cast<std::uint64_t>(id));
    if (port == nullptr) return Errc::unknown_port;
    st = port->post_under_lock(std::move(message), priority, finish);
  }
  // The lock is let go: an embedder's runner may now call back into this shard. `finish` is
  // alive until finish_enqueue() returns (PortTarget::enqueue_under_lock).
  if (finish != nullptr) finish->finish_enqueue();
  return st;
}

PortState* PortMap::acquire(PortId id) noexcept {
  Shard& s = shard_for(id);
  std::shared_lock guard(s.lock);
  PortState* port = s.find(static_cast<std::uint64_t>(id));
  if (port != nullptr) port->retain();
  return port;
}

std::size_t PortMap::size() const noexcept {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::shared_lock guard(s.lock);
    n += s.count;
  }
  return n;
}

}  // namespace evh::detail
