#include "base/mpsc_queue.h"

#include "sync/spin.h"

namespace evh::detail {
namespace {

// How many slots ahead a producer asks for ownership of the cache line it will probably write
// next. The CAS that claims a position is a locked instruction: it waits for this producer's
// earlier stores to drain, and the store into a slot line that the consumer read a moment ago
// first needs that line back (a read-for-ownership across cores, tens of nanoseconds). Asking
// early overlaps those transfers instead of paying them one per message.
constexpr std::uint32_t kPrefetchAhead = 8;

inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__)
  // PREFETCHW; CPUs without it decode the 0F 0D opcode as a NOP.
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

// The installing producer only (one at a time: see the header).
QueueBlock* take_block(QueueTail& tail) {
  // acquire: pairs with the release CAS in recycle_block, so the block's `next` is visible.
  QueueBlock* top = tail.free.load(std::memory_order_acquire);
  while (top != nullptr) {
    QueueBlock* next = top->next.load(std::memory_order_relaxed);
    if (tail.free.compare_exchange_weak(top, next, std::memory_order_acquire,
                                        std::memory_order_acquire)) {
      top->next.store(nullptr, std::memory_order_relaxed);
      return top;
    }
  }
  return new QueueBlock;
}

// The consumer only.
void recycle_block(QueueTail& tail, QueueBlock* block) noexcept {
  // acquire: pairs with the release CAS below of an earlier push (the top's depth is visible).
  QueueBlock* top = tail.free.load(std::memory_order_acquire);
  for (;;) {
    const std::uint32_t depth =
        top == nullptr ? 1 : top->free_depth.load(std::memory_order_relaxed) + 1;
    if (depth > kMaxFreeBlocks) {
      delete block;
      return;
    }
    block->next.store(top, std::memory_order_relaxed);
    block->free_depth.store(depth, std::memory_order_relaxed);
    // release: pairs with the acquire loads in take_block; a failure means the installing
    // producer popped the top meanwhile: look again.
    if (tail.free.compare_exchange_weak(top, block, std::memory_order_release,
                                        std::memory_order_acquire)) {
      return;
    }
  }
}

}  // namespace

void queue_push(QueueTail& tail, Message&& message) noexcept {
  Backoff backoff;
  for (;;) {
    // acquire: pairs with the release store of `pos` by the producer that installed the block,
    // so the `block` we load next is at least as new as `pos`.
    std::uint64_t pos = tail.pos.load(std::memory_order_acquire);
    const auto offset = static_cast<std::uint32_t>(pos % kPositionsPerBlock);
    if (offset == kSlotsPerBlock) {  // another producer is installing the next block
      backoff.snooze();
      continue;
    }
    QueueBlock* block = tail.block.load(std::memory_order_acquire);
    if (block == nullptr) {  // the very first message: install the first block
      QueueBlock* first = tail.first.load(std::memory_order_acquire);
      if (first == nullptr) {
        // Not from the free list: producers racing here would pop it concurrently. Once per
        // queue (or per queue_destroy).
        QueueBlock* fresh = new QueueBlock;
        // acq_rel: publishes the block (release) or sees the winner's (acquire).
        if (tail.first.compare_exchange_strong(first, fresh, std::memory_order_acq_rel)) {
          first = fresh;
        } else {
          delete fresh;  // another producer's block won
        }
      }
      QueueBlock* expected = nullptr;  // whoever gets here first makes it the tail block
      tail.block.compare_exchange_strong(expected, first, std::memory_order_acq_rel);
      continue;
    }
    const bool last_slot = offset + 1 == kSlotsPerBlock;
    // seq_cst: the mailbox owners' idle protocol pairs this with their seq_cst load of `pos`.
    // A stale `pos` (another producer won, or a block was installed) makes the CAS fail, which
    // also catches a `block` loaded after a concurrent install.
    if (!tail.pos.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
      continue;
    }
    if (last_slot) {
      // The block comes after the claim, so that only one producer pops the free list at a
      // time; the install window is then a pop (an allocation only past the high-water mark).
      QueueBlock* fresh = take_block(tail);
      // Link before publishing: the consumer follows `next` once it has read this last slot.
      block->next.store(fresh, std::memory_order_release);
      tail.block.store(fresh, std::memory_order_release);
      tail.pos.store(pos + 2, std::memory_order_release);  // past the install marker
    }
    QueueSlot& slot = block->slots[offset];
    if (offset + kPrefetchAhead < kSlotsPerBlock)
      prefetch_for_write(&block->slots[offset + kPrefetchAhead]);
    new (slot.storage) Message(std::move(message));
    // release: pairs with the consumer's acquire load of `seq`.
    slot.seq.store(pos + 1, std::memory_order_release);
    return;
  }
}

PopResult queue_pop(QueueTail& tail, QueueHead& head, Message& out) noexcept {
  if (head.block == nullptr) {
    head.block = tail.first.load(std::memory_order_acquire);
    if (head.block == nullptr) return PopResult::empty;
  }
  const auto offset = static_cast<std::uint32_t>(head.pos % kPositionsPerBlock);
  QueueSlot& slot = head.block->slots[offset];
  if (slot.seq.load(std::memory_order_acquire) != head.pos + 1) {
    // Only when everything known to be claimed has been read does the consumer look at the
    // producers' cache line again: polling it would slow every producer's CAS.
    if (head.pos < head.known_tail) return PopResult::pending;
    return queue_has_claimed(tail, head) ? PopResult::pending : PopResult::empty;
  }
  // The slot's message is relocated, not moved: the slot is left as raw storage, unwritten.
  MessageAccess::relocate(out, *slot.message());
  if (offset + 1 == kSlotsPerBlock) {
    // The producer of this last slot linked the next block before publishing the slot.
    QueueBlock* next = head.block->next.load(std::memory_order_acquire);
    recycle_block(tail, head.block);
    head.block = next;
    head.pos += 2;
  } else {
    head.pos += 1;
  }
  return PopResult::item;
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

std::uint32_t queue_free_blocks(const QueueTail& tail) noexcept {
  const QueueBlock* top = tail.free.load(std::memory_order_acquire);
  return top == nullptr ? 0 : top->free_depth.load(std::memory_order_relaxed);
}

std::uint64_t queue_destroy(QueueTail& tail, QueueHead& head) noexcept {
  const std::uint64_t released = queue_drain(tail, head);
  QueueBlock* b = head.block != nullptr ? head.block : tail.first.load(std::memory_order_acquire);
  while (b != nullptr) {
    QueueBlock* next = b->next.load(std::memory_order_acquire);
    delete b;
    b = next;
  }
  for (QueueBlock* f = tail.free.exchange(nullptr, std::memory_order_acquire); f != nullptr;) {
    QueueBlock* next = f->next.load(std::memory_order_relaxed);
    delete f;
    f = next;
  }
  head = QueueHead{};
  tail.block.store(nullptr, std::memory_order_relaxed);
  tail.first.store(nullptr, std::memory_order_relaxed);
  tail.pos.store(0, std::memory_order_relaxed);
  return released;
}

}  // namespace evh::detail
