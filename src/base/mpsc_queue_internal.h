// What the queue's two sides share (base/mpsc_queue.h has the protocol): how a record's header is
// read and where the head or a position points, and how the free list is written — its depth word
// and its tagged top — and a block freed. The producer side (blocks, claims, pushes, the free
// list's pop) is mpsc_queue.cc; the consumer side (pops, packed peeks, recycling onto the free
// list, drain) is mpsc_queue_consumer.cc. Private to src/base/mpsc_queue*.cc. All inline: the pops
// and pushes read headers and offsets on their hot paths, as they did when both sides were one
// file.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "base/mpsc_queue.h"

namespace evh::detail::mpsc {

// The header's bits: mpsc_queue.h (the inline pop reads them too).
inline constexpr std::uint64_t kTagMask = kRecordTagMask;
inline constexpr std::uint64_t kSkip = kRecordSkip;
inline constexpr std::uint64_t kPortWord = kRecordPortWord;
inline constexpr std::uint64_t kHomePort = kRecordHomePort;

inline std::atomic_ref<std::uint64_t> header_at(QueueBlock* block, std::uint32_t offset) noexcept {
  return std::atomic_ref<std::uint64_t>(block->words()[offset]);
}

inline std::uint32_t offset_of(std::uint64_t pos) noexcept {
  return static_cast<std::uint32_t>(pos & kOffsetMask);
}

// On the free list, a block's first data word is the list's depth from it down: its blocks (low
// 32 bits) and their size in units of the smallest block (high 32 bits). Atomic: the consumer
// reads the top's while the installing producer may be popping and zeroing it.
inline std::atomic_ref<std::uint64_t> free_depth(QueueBlock* block) noexcept {
  return std::atomic_ref<std::uint64_t>(block->words()[0]);
}
inline std::uint64_t depth_word(std::uint64_t blocks, std::uint64_t units) noexcept {
  return blocks | (units << 32);
}
inline std::uint64_t depth_blocks(std::uint64_t word) noexcept {
  return word & 0xFFFF'FFFF;
}
inline std::uint64_t depth_units(std::uint64_t word) noexcept {
  return word >> 32;
}
inline constexpr std::uint64_t kMaxFreeUnits = kMaxFreeBytes / block_bytes(0);

inline QueueBlock* block_of(std::uintptr_t word) noexcept {
  return reinterpret_cast<QueueBlock*>(word & ~kQueueTagMask);
}

inline std::uintptr_t list_word(QueueBlock* top) noexcept {
  return reinterpret_cast<std::uintptr_t>(top) | kFreeListTag;
}

inline void free_block(QueueBlock* block) noexcept {
  std::free(block);  // the header is trivially destructible
}

}  // namespace evh::detail::mpsc
