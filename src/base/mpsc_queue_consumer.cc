// The queue's consumer side (base/mpsc_queue.h): the pops, the batch pop, the packed peek and
// take, the drain, and the recycling of finished blocks onto the free list. The producer side is
// mpsc_queue.cc; what the two share, mpsc_queue_internal.h.
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "base/message_access.h"
#include "base/mpsc_queue.h"
#include "base/mpsc_queue_internal.h"
#include "sync/spin.h"

namespace evh::detail {
namespace {

using mpsc::block_of;
using mpsc::depth_blocks;
using mpsc::depth_units;
using mpsc::depth_word;
using mpsc::free_block;
using mpsc::free_depth;
using mpsc::header_at;
using mpsc::kHomePort;
using mpsc::kMaxFreeUnits;
using mpsc::kPortWord;
using mpsc::kSkip;
using mpsc::kTagMask;
using mpsc::list_word;
using mpsc::offset_of;

// The consumer only, after its first look (the word is a free list): keeps a block it has read
// to the end, up to kMaxFreeBytes of blocks.
void recycle_block(QueueTail& tail, QueueBlock* block) noexcept {
  const std::uint64_t units = std::uint64_t{1} << block->size_class;
  // acquire: pairs with the release CAS below of an earlier push (the top's depth is visible).
  std::uintptr_t word = tail.free.load(std::memory_order_acquire);
  for (;;) {
    QueueBlock* top = block_of(word);
    const std::uint64_t below =
        top == nullptr ? 0 : free_depth(top).load(std::memory_order_relaxed);
    if (depth_units(below) + units > kMaxFreeUnits) {
      free_block(block);
      return;
    }
    block->next.store(top, std::memory_order_relaxed);
    free_depth(block).store(depth_word(depth_blocks(below) + 1, depth_units(below) + units),
                            std::memory_order_relaxed);
    // release: pairs with the acquire loads in take_block (mpsc_queue.cc); a failure means the
    // installing producer popped the top meanwhile: look again.
    if (tail.free.compare_exchange_weak(word, list_word(block), std::memory_order_release,
                                        std::memory_order_acquire)) {
      return;
    }
  }
}

// The consumer leaves a finished block for the next one (linked before the record that ended
// the block, or its skip, was published).
void advance_block(QueueTail& tail, QueueHead& head) noexcept {
  QueueBlock* next = head.block->next.load(std::memory_order_acquire);
  recycle_block(tail, head.block);
  head.block = next;
  set_head_pos(head, head.pos & ~kOffsetMask);
}

// Moves the head past `take` of the `in_record` messages of the record at it (header `header`,
// `payload` words each), once they have been read: the rest of a run stays at the head as
// queue_pop leaves it (its header, one fewer each, over the last payload word taken: record_next's
// place; relaxed, only this consumer reads it), a whole record moves the head past it and off a
// finished block. True when the whole record was taken.
bool take_from_record(QueueTail& tail, QueueHead& head, std::uint64_t header,
                      std::uint32_t in_record, std::uint32_t take, std::uint32_t payload) noexcept {
  const std::uint32_t offset = offset_of(head.pos);
  const std::uint64_t count = queue_count(head.pos) + take;
  if (take < in_record) {
    const std::uint32_t next = offset + take * payload;
    std::atomic_ref<std::uint64_t>(head.block->words()[next])
        .store(header - take * kRecordRunOne, std::memory_order_relaxed);
    set_head_pos(head, (count << kOffsetBits) | next);
    return false;
  }
  const std::uint32_t next = offset + 1 + in_record * payload;
  set_head_pos(head, (count << kOffsetBits) | next);
  if (next == head.block->end) advance_block(tail, head);
  return true;
}

// The messages of a record: 1, or a run's (mpsc_queue.h).
std::uint32_t record_messages(std::uint64_t header) noexcept {
  return 1 + static_cast<std::uint32_t>((header & kRecordRunMask) >> kRecordRunShift);
}
}  // namespace

std::uint32_t queue_pop_batch(QueueTail& tail, QueueHead& head, Message* out, std::uint32_t max,
                              PortId home, bool leave_inline) noexcept {
  std::uint32_t n = 0;
  if (head.block == nullptr) return 0;  // the first look is queue_pop's
  while (n < max) {
    const std::uint32_t offset = offset_of(head.pos);
    // acquire: pairs with the producer's release store of the header.
    const std::uint64_t header = header_at(head.block, offset).load(std::memory_order_acquire);
    if (header == 0) break;  // pending or empty: queue_pop tells which
    if ((header & kTagMask) == kSkip) {
      advance_block(tail, head);
      continue;
    }
    if ((header & (kHomePort | kPortWord)) != kHomePort) break;  // not to `home`
    const auto kind = static_cast<Message::Kind>((header & kTagMask) - 1);
    const auto size = static_cast<std::uint32_t>(header >> 32);
    if (leave_inline && kind == Message::Kind::inline_bytes && size != 0) break;
    const std::uint32_t payload = MessageAccess::payload_words(kind, size);
    const std::uint32_t in_record = record_messages(header);
    const std::uint32_t take = std::min(in_record, max - n);
    const std::uint64_t* w = head.block->words() + offset + 1;
    if (payload == 1) {  // the common run: one word a message (a u64, a heap pointer)
      for (std::uint32_t j = 0; j < take; ++j) {
        MessageAccess::construct(out + n + j, home, kind, size, w + j, 1);
      }
    } else {
      for (std::uint32_t j = 0; j < take; ++j) {
        MessageAccess::construct(out + n + j, home, kind, size, w + j * payload, payload);
      }
    }
    n += take;
    if (!take_from_record(tail, head, header, in_record, take, payload)) break;
  }
  return n;
}

std::uint32_t queue_peek_packed(QueueTail& tail, QueueHead& head, std::uint32_t max,
                                PackedPeek& out) noexcept {
  if (head.block == nullptr) return 0;  // the first look is queue_pop's
  for (;;) {
    const std::uint32_t offset = offset_of(head.pos);
    // acquire: pairs with the producer's release store of the header.
    const std::uint64_t header = header_at(head.block, offset).load(std::memory_order_acquire);
    if (header == 0) return 0;  // pending or empty: queue_pop tells which
    if ((header & kTagMask) == kSkip) {
      advance_block(tail, head);
      continue;
    }
    const auto kind = static_cast<Message::Kind>((header & kTagMask) - 1);
    const auto size = static_cast<std::uint32_t>(header >> 32);
    if (kind != Message::Kind::inline_bytes || size == 0 ||
        (header & (kHomePort | kPortWord)) != kHomePort) {
      return 0;
    }
    const std::uint32_t in_record = record_messages(header);
    out.payload = head.block->words() + offset + 1;
    out.header = header;
    out.count = std::min(in_record, max);
    out.size = size;
    out.words = MessageAccess::payload_words(kind, size);
    return out.count;
  }
}

void queue_take_packed(QueueTail& tail, QueueHead& head, const PackedPeek& peek) noexcept {
  (void)take_from_record(tail, head, peek.header, record_messages(peek.header), peek.count,
                         peek.words);
}

PopResult queue_pop_slow(QueueTail& tail, QueueHead& head, Message& out, PortId home) noexcept {
  if (head.block == nullptr) {
    // The first look: take the first block (acquire: pairs with install_first's acq_rel CAS,
    // the block's zeroing before it) and turn the word into the (empty) free list. Producers
    // only read a first-block word, so a store would do; nothing else writes it now.
    const std::uintptr_t word = tail.free.load(std::memory_order_acquire);
    if ((word & kFirstBlockTag) == 0) {
      // Nothing installed yet, or (with a claim racing) not yet visible here.
      return queue_has_claimed(tail, head) ? PopResult::pending : PopResult::empty;
    }
    head.block = block_of(word);
    tail.free.store(kFreeListTag, std::memory_order_release);
  }
  for (;;) {
    const std::uint32_t offset = offset_of(head.pos);
    // acquire: pairs with the producer's release store of the header.
    const std::uint64_t header = header_at(head.block, offset).load(std::memory_order_acquire);
    if (header == 0) {
      // Only when every message known to be claimed has been read does the consumer look at
      // the producers' cache line again: polling it would slow every producer's CAS. (Counts,
      // not positions: a position's offset goes back to 0 in each new block.)
      if (queue_count(head.pos) < queue_count(head.known_tail)) return PopResult::pending;
      return queue_has_claimed(tail, head) ? PopResult::pending : PopResult::empty;
    }
    if ((header & kTagMask) == kSkip) {
      advance_block(tail, head);
      continue;
    }
    const auto kind = static_cast<Message::Kind>((header & kTagMask) - 1);
    const std::uint32_t next =
        record_next(header, offset,
                    MessageAccess::payload_words(kind, static_cast<std::uint32_t>(header >> 32)));
    const bool last = next == head.block->end;
    take_record(head, header, next, out, home);
    if (last) advance_block(tail, head);
    return PopResult::item;
  }
}

std::uint64_t queue_drain(QueueTail& tail, QueueHead& head) noexcept {
  std::uint64_t released = 0;
  Backoff backoff;
  for (;;) {
    Message m;
    switch (queue_pop(tail, head, m)) {
      case PopResult::item:
        ++released;
        break;  // `m` releases the payload here
      case PopResult::pending:
        backoff.snooze();
        break;
      case PopResult::empty:
        return released;
    }
  }
}

}  // namespace evh::detail
