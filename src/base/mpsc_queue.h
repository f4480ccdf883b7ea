// A lock-free multi-producer single-consumer queue of Messages, stored by value in linked
// blocks of 64-byte slots.
//
// Why not an intrusive node per message: a node needs an allocation per message, and a
// cross-thread malloc/free pair costs more than the rest of a post together. Here a message is
// written into a slot of the current block; a block holds 31 slots and is recycled through the
// queue's own free list, so posting allocates only when the queue grows past its high-water mark
// (issue 14, defect 0: a sender that allocates can sleep in the kernel — malloc → mprotect waits
// on the process's memory-map lock — for milliseconds while other threads fault pages in).
//
// Producers (any thread) claim a position with one CAS on `QueueTail::pos`, then write their
// slot and publish it with a release store of the slot's `seq` word (the position + 1). The
// consumer never writes a slot: it checks `seq` against the position it expects and copies the
// message out, so a slot's cache line moves once, producer to consumer, per message. The producer
// that claims a block's last slot installs the next block; others wait the few instructions that
// takes. Positions count 32 per block: offsets 0..30 are slots, offset 31 means "next block being
// installed". Positions never wrap (64-bit), so there is no ABA.
//
// The free list is a stack that the consumer pushes onto (a block it has read to the end) and that
// only the installing producer pops from. Installs are serialised by the position protocol — no
// position of a block can be claimed before the block is installed, and the install ends with the
// release store of `pos` that the next installer's acquire load sees — so there is one popper at
// a time, and a stack with one popper has no ABA: the top it read cannot be popped and pushed back
// before its CAS. It keeps at most kMaxFreeBlocks blocks; the rest are freed. Only the consumer
// frees a block, and never one on the list, so a block the consumer reads through `free` is
// alive even if a producer has popped it meanwhile (its CAS then fails).
//
// The consumer (one thread at a time; the caller guarantees it) reads slots in order. A slot
// whose position was claimed but whose message is not yet written is reported as `pending`.
//
// The tail and the head are separate structs so that an owner can place them on different
// cache lines: producers write the tail, the consumer writes the head.
#pragma once

#include <evh/message.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>

#include "base/message_access.h"

namespace evh::detail {

inline constexpr std::uint32_t kSlotsPerBlock = 31;
inline constexpr std::uint64_t kPositionsPerBlock = 32;
// The most blocks a queue keeps for reuse: 8,000 messages in flight (512 KiB) recycle without an
// allocation; a queue that once held more frees the excess as it drains.
inline constexpr std::uint32_t kMaxFreeBlocks = 256;

struct alignas(64) QueueSlot {
  // position + 1 once `storage` holds the message of that position. 64-bit positions never
  // repeat, so a value left from an earlier use of a recycled block can never match.
  std::atomic<std::uint64_t> seq{0};
  unsigned char storage[sizeof(Message)];

  Message* message() noexcept { return std::launder(reinterpret_cast<Message*>(storage)); }
};
static_assert(sizeof(QueueSlot) == 64);

struct alignas(64) QueueBlock {
  std::atomic<QueueBlock*> next{nullptr};
  // On the free list: how many blocks it holds from this one down (written by the consumer as it
  // pushes; in the first line's padding, so it costs no space).
  std::atomic<std::uint32_t> free_depth{0};
  QueueSlot slots[kSlotsPerBlock];
};

struct QueueTail {
  std::atomic<std::uint64_t> pos{0};
  std::atomic<QueueBlock*> block{nullptr};
  std::atomic<QueueBlock*> first{nullptr};  // the first block ever installed: the consumer's start
  // Recycled blocks, consumer → the installing producer, linked through `next`. (The tail stays
  // 32 bytes: it sits in an isolate's producer line.)
  std::atomic<QueueBlock*> free{nullptr};
};

struct QueueHead {
  std::uint64_t pos = 0;
  QueueBlock* block = nullptr;
  // The last value of tail.pos the consumer read. Positions below it are claimed, so a slot
  // there that is not yet written is "pending" without another look at the producers' line.
  std::uint64_t known_tail = 0;
};

enum class PopResult { item, empty, pending };

// Producer side; any thread; never blocks for longer than another producer's block install.
// Allocation failure of a new block terminates (as std::bad_alloc from a noexcept function).
void queue_push(QueueTail& tail, Message&& message) noexcept;

// Consumer side. On `item`, `out` holds the message.
PopResult queue_pop(QueueTail& tail, QueueHead& head, Message& out) noexcept;

// Consumer side: true when a position has been claimed that the consumer has not read (the
// message may still be being written). The load is seq_cst: it pairs with the producers' CAS on
// `tail.pos` in the "go idle, then re-check" protocol of the mailbox owners.
inline bool queue_has_claimed(const QueueTail& tail, QueueHead& head) noexcept {
  head.known_tail = tail.pos.load(std::memory_order_seq_cst);
  return head.known_tail != head.pos;
}

// Consumer side: pops and destroys every message (waiting out producers mid-write); returns how
// many were released.
std::uint64_t queue_drain(QueueTail& tail, QueueHead& head) noexcept;

// Consumer side (or with no producer running): how many blocks the free list holds.
std::uint32_t queue_free_blocks(const QueueTail& tail) noexcept;

// When no producer can reach the queue any more: releases what is left and frees the blocks.
std::uint64_t queue_destroy(QueueTail& tail, QueueHead& head) noexcept;

// A queue with both ends together, for owners that do not need to split them.
struct MpscQueue {
  QueueTail tail;
  QueueHead head;

  MpscQueue() = default;
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;
  ~MpscQueue() { queue_destroy(tail, head); }

  void push(Message&& m) noexcept { queue_push(tail, std::move(m)); }
  PopResult pop(Message& out) noexcept { return queue_pop(tail, head, out); }
  bool has_claimed() noexcept { return queue_has_claimed(tail, head); }
  std::uint64_t drain() noexcept { return queue_drain(tail, head); }
  std::uint32_t free_blocks() const noexcept { return queue_free_blocks(tail); }
};

}  // namespace evh::detail
