#include "port/port_map.h"

#include <mutex>
#include <shared_mutex>

namespace evh::detail {
namespace {

// The id's bits above the shard bits pick the home slot.
inline std::size_t home(std::uint64_t id, std::size_t mask) noexcept {
  return (id >> 6) & mask;
}

}  // namespace

PortState* PortMap::Shard::find(std::uint64_t id) const noexcept {
  if (table.empty()) return nullptr;
  const std::size_t mask = table.size() - 1;
  for (std::size_t i = home(id, mask);; i = (i + 1) & mask) {
    if (table[i].id == id) return table[i].port;
    if (table[i].id == 0) return nullptr;
  }
}

void PortMap::Shard::insert(Entry e) {
  if ((count + 1) * 4 > table.size() * 3) {  // keep the load at most 3/4
    std::vector<Entry> old(std::max<std::size_t>(16, table.size() * 2));
    old.swap(table);
    count = 0;
    for (const Entry& x : old) {
      if (x.id != 0) insert(x);
    }
  }
  const std::size_t mask = table.size() - 1;
  std::size_t i = home(e.id, mask);
  while (table[i].id != 0) i = (i + 1) & mask;
  table[i] = e;
  ++count;
}

PortState* PortMap::Shard::erase(std::uint64_t id) noexcept {
  if (table.empty()) return nullptr;
  const std::size_t mask = table.size() - 1;
  std::size_t i = home(id, mask);
  while (table[i].id != id) {
    if (table[i].id == 0) return nullptr;
    i = (i + 1) & mask;
  }
  PortState* removed = table[i].port;
  // Backward-shift: pull later entries of the probe run into the hole, so lookups never need
  // tombstones.
  std::size_t hole = i;
  for (std::size_t j = (i + 1) & mask; table[j].id != 0; j = (j + 1) & mask) {
    const std::size_t h = home(table[j].id, mask);
    // Move j into the hole when its home is not cyclically within (hole, j].
    const bool home_in_range = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
    if (!home_in_range) {
      table[hole] = table[j];
      hole = j;
    }
  }
  table[hole] = Entry{};
  --count;
  return removed;
}

PortMap::~PortMap() {
  for (Shard& s : shards_) {
    for (Entry& e : s.table) {
      if (e.id != 0) e.port->release();
    }
  }
}

void PortMap::insert(PortState* port) {
  port->retain();
  Shard& s = shard_for(port->id());
  std::lock_guard guard(s.lock);
  s.insert(Entry{static_cast<std::uint64_t>(port->id()), port});
}

PortState* PortMap::erase(PortId id) noexcept {
  Shard& s = shard_for(id);
  std::lock_guard guard(s.lock);
  return s.erase(static_cast<std::uint64_t>(id));
}

Status PortMap::post(PortId id, Message&& message, Priority priority) noexcept {
  Shard& s = shard_for(id);
  std::shared_lock guard(s.lock);
  PortState* port = s.find(static_cast<std::uint64_t>(id));
  if (port == nullptr) return Errc::unknown_port;
  return port->post(std::move(message), priority);
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
