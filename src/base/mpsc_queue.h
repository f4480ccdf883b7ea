// A lock-free multi-producer single-consumer queue of Messages, stored as compact records in
// linked blocks of 8-byte words.
//
// Why not an intrusive node per message: a node needs an allocation per message, and a
// cross-thread malloc/free pair costs more than the rest of a post together. Why not a 64-byte
// slot per message (the first design): in a flood the bytes a message takes in the queue are
// what crosses between the producer's and the consumer's cores, twice (the producer takes the
// line back to write it, the consumer reads it). A record takes only what its message needs:
// a header word, the port word unless the port is none (control messages), and the payload
// (inline bytes rounded up to words, a heap pointer, or a native object and its finalizer). The
// port word is left out also for the queue's home port (an isolate's main port, which its owner
// passes to both ends: the header says "home"), so an 8-byte message to it is 16 bytes. Like
// messages of one batch share a header (a run, below), so in a batch of them an 8-byte message
// takes about 8 bytes, as in a vector of values.
//
// Positions: `QueueTail::pos` packs the number of messages ever claimed (high 51 bits) and the
// word offset in the current block (low 13 bits; blocks have 254 to 2,046 data words). A producer
// claims a record's words with one CAS that also counts its message; the packed word never repeats
// (the count grows with every claim, and a claim without a message, the skip below, changes the
// offset), so a stale view makes the CAS fail and there is no ABA. The offset `kInstallingOffset`
// means "the next block is being installed": the producer whose claim reached the end of the block
// installs it, and others wait the few instructions that takes. A record that does not fit in what
// is left of the block is not split: its producer claims the rest of the block (writing a skip
// record there), installs the next block and claims again in it.
//
// Publication: a block is zeroed (allocated zeroed, or cleared by the producer that takes it
// from the free list) before it is linked; a record's words are written first and its header
// (never 0) last, with a release store. The consumer checks the header at its offset: 0 is
// "claimed but not yet written" (or nothing claimed).
//
// Recycling (issue 14, defect 0: a sender that allocates can sleep in the kernel — malloc →
// mprotect waits on the process's memory-map lock — for milliseconds while other threads fault
// pages in): a block the consumer has read to the end goes onto the queue's free list, a stack
// that only the consumer pushes onto and only the installing producer pops from, so posting
// allocates only when the queue grows past its high-water mark. Installs are serialised by the
// position protocol (the block is taken after the claim that reached the end of the old one, and
// no position of the new block can be claimed before the install's release store of `pos`), so
// there is one popper at a time, and a stack with one popper has no ABA: the top it read cannot
// be popped and pushed back before its CAS. The list keeps at most kMaxFreeBytes of blocks; the
// rest are freed. Only the consumer frees a block, and never one on the list, so a block the
// popper reads through `free` is alive even if the consumer has pushed over it meanwhile (the
// CAS then fails). While a block is on the list its first data word holds the list's depth from
// it down (blocks and bytes); the installer zeroes the block after popping it. A block popped
// from the list is used whatever its size class. A producer whose claim will reach the end of the
// block allocates the next block before that claim unless the list has one (issue 14: a failed
// allocation then leaves nothing claimed, and the push reports it); the list cannot empty
// between that look and the pop, the installer being its only popper.
//
// The consumer (one thread at a time; the caller guarantees it) reads records in order. A record
// whose words were claimed but whose header is not yet written is reported as `pending`.
//
// The tail and the head are separate structs so that an owner can place them on different
// cache lines: producers write the tail, the consumer writes the head.
#pragma once

#include <evh/message.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/message_access.h"

namespace evh::detail {

// Blocks come in size classes: class c is 2 KB << c, its 16-byte header (the link, its size)
// included. A queue starts with 2 KB blocks (a ping-pong, an idle mailbox); a producer that must
// allocate the next block while the consumer is more than twice a block behind allocates one of
// the class whose block holds about half that backlog, up to 16 KB (issue 19: a flood that
// outruns its consumer paid a malloc — 20 % of port_flood_batch's samples — and an install every
// 2 KB). Why not larger: a block is cleared before it is reused, and a 16 KB block's clear and
// the writes after it stay in the producer's L1; 64 KB blocks measured a larger share of time in
// the clear (BENCHMARKS.md, issue 19's fifth round).
inline constexpr unsigned kBlockClasses = 4;
inline constexpr unsigned kOffsetBits = 13;
inline constexpr std::uint64_t kOffsetMask = (std::uint64_t{1} << kOffsetBits) - 1;

struct QueueBlock {
  std::atomic<QueueBlock*> next{nullptr};
  std::uint32_t end = 0;         // data words: block_words(size_class)
  std::uint32_t size_class = 0;  // < kBlockClasses
  // The data words follow the header (a block is allocated as one piece of block_bytes()).
  std::uint64_t* words() noexcept {
    return reinterpret_cast<std::uint64_t*>(reinterpret_cast<std::byte*>(this) + sizeof *this);
  }
};
static_assert(sizeof(QueueBlock) == 16);

inline constexpr std::size_t block_bytes(unsigned size_class) noexcept {
  return std::size_t{2048} << size_class;
}
inline constexpr std::uint32_t block_words(unsigned size_class) noexcept {
  return static_cast<std::uint32_t>((block_bytes(size_class) - sizeof(QueueBlock)) / 8);
}
// Data words of the smallest block, the one every queue starts with.
inline constexpr std::uint32_t kBlockWords = block_words(0);
// A position's offset that means "the next block is being installed": above every block's end.
inline constexpr std::uint32_t kInstallingOffset = static_cast<std::uint32_t>(kOffsetMask);
static_assert(block_words(kBlockClasses - 1) < kInstallingOffset);
// What a queue's free list keeps for reuse (a queue that once held more frees the excess as it
// drains): 512 KiB, e.g. 21,000 one-word messages with their ports in flight, 65,000 in runs.
inline constexpr std::size_t kMaxFreeBytes = 512 * 1024;

struct QueueTail {
  std::atomic<std::uint64_t> pos{0};  // claimed messages << kOffsetBits | offset
  // The tail block, tagged with its size class in the low bits (blocks are 16-byte aligned): a
  // producer learns where the block ends without reading the block, which another producer's
  // install and the consumer may have retired (and freed) since this producer loaded it.
  std::atomic<std::uintptr_t> block{0};
  // One word, two uses in turn (the tail is 24 bytes: it shares an isolate's producer line).
  // Until the consumer's first look it holds the first block ever installed, tagged
  // kFirstBlockTag: where the consumer starts. The consumer's first look turns it into the free
  // list (kFreeListTag, with the top block or none): recycled blocks, consumer → the installing
  // producer, linked through `next`. 0 only before the first install.
  std::atomic<std::uintptr_t> free{0};
};
inline constexpr std::uintptr_t kFirstBlockTag = 1;
inline constexpr std::uintptr_t kFreeListTag = 2;
inline constexpr std::uintptr_t kQueueTagMask = 3;
inline constexpr std::uintptr_t kBlockClassMask = 15;
static_assert(kBlockClasses <= kBlockClassMask + 1);

// The tail block (null before the first install); for tests and the consumer's own checks.
inline QueueBlock* queue_tail_block(const QueueTail& tail) noexcept {
  return reinterpret_cast<QueueBlock*>(tail.block.load(std::memory_order_acquire) &
                                       ~kBlockClassMask);
}

struct QueueHead {
  std::uint64_t pos = 0;  // as QueueTail::pos, at the next record to read
  QueueBlock* block = nullptr;
  // The last value of tail.pos the consumer read. A record before it is claimed, so a header
  // there that is still 0 is "pending" without another look at the producers' line.
  std::uint64_t known_tail = 0;
};

// Messages ever claimed / read, from a position.
inline std::uint64_t queue_count(std::uint64_t pos) noexcept {
  return pos >> kOffsetBits;
}

// The consumer stores `head.pos` with relaxed atomic stores (a plain store on x86), so that any
// thread may read how far it got: queue_depth().
inline void set_head_pos(QueueHead& head, std::uint64_t pos) noexcept {
  std::atomic_ref<std::uint64_t>(head.pos).store(pos, std::memory_order_relaxed);
}

// Any thread: messages claimed and not yet read, at an instant between the two loads. The head
// is read first: the tail's count can only have grown since, so the difference is never
// negative.
inline std::uint64_t queue_depth(const QueueTail& tail, const QueueHead& head) noexcept {
  const std::uint64_t read =
      queue_count(std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(head.pos))
                      .load(std::memory_order_relaxed));
  return queue_count(tail.pos.load(std::memory_order_relaxed)) - read;
}

enum class PopResult { item, empty, pending };

// A record's header word: the tag (kind + 1, never 0) in bits 0-7, kRecordPortWord when the port
// word follows, kRecordHomePort when the message is to the queue's home port (no port word), the
// run's further messages in bits 16-31 (below), the byte size in bits 32-63. Neither port bit:
// the port is none. A skip record (the rest of the block is unused) is the tag alone.
//
// Runs (issue 19): consecutive messages of one batch with the same header and no port word —
// the same kind, byte size and port (home or none), a flood's common case — are one record: the
// header, then each message's payload words in order (a batch of 64 u64 messages to an isolate is
// 65 words, not 128). The header counts the messages after the first. The consumer takes one
// message at a time: it copies out the first message's payload and writes the run's header,
// counting one fewer, over that payload's last word (or over the header itself for an empty
// payload), which it has read and no producer touches again; its position then points there. So
// the head needs no state of its own for a run, and a turn may stop anywhere in one.
inline constexpr std::uint64_t kRecordTagMask = 0xFF;
inline constexpr std::uint64_t kRecordSkip = 0xFF;
inline constexpr std::uint64_t kRecordPortWord = 0x100;
inline constexpr std::uint64_t kRecordHomePort = 0x200;
inline constexpr unsigned kRecordRunShift = 16;
inline constexpr std::uint64_t kRecordRunMask = std::uint64_t{0xFFFF} << kRecordRunShift;
inline constexpr std::uint64_t kRecordRunOne = std::uint64_t{1} << kRecordRunShift;
inline constexpr std::uint32_t kMaxRunExtra = 0xFFFF;

// Where the head goes after taking one message of the record (or run) at `offset`: past the
// record, or, inside a run, to the last payload word of the message taken.
inline std::uint32_t record_next(std::uint64_t header, std::uint32_t offset,
                                 std::uint32_t payload) noexcept {
  if ((header & kRecordRunMask) != 0) return offset + payload;
  return offset + 1 + ((header & kRecordPortWord) != 0 ? 1 : 0) + payload;
}

// Consumer side: takes the message of the written record (or the next of the run) whose header
// is `header`, at the head's offset, into `out`; moves the head to `next` (record_next()).
inline void take_record(QueueHead& head, std::uint64_t header, std::uint32_t next, Message& out,
                        PortId home) noexcept {
  const auto offset = static_cast<std::uint32_t>(head.pos & kOffsetMask);
  std::uint64_t* w = head.block->words() + offset;
  const auto kind = static_cast<Message::Kind>((header & kRecordTagMask) - 1);
  const auto size = static_cast<std::uint32_t>(header >> 32);
  const std::uint32_t port_words = (header & kRecordPortWord) != 0 ? 1 : 0;
  const PortId port = port_words != 0                   ? static_cast<PortId>(w[1])
                      : (header & kRecordHomePort) != 0 ? home
                                                        : PortId::none;
  MessageAccess::assemble(out, port, kind, size, w + 1 + port_words,
                          MessageAccess::payload_words(kind, size));
  if ((header & kRecordRunMask) != 0) {
    // The rest of the run, after the payload just read (relaxed: only this consumer reads it).
    std::atomic_ref<std::uint64_t>(head.block->words()[next])
        .store(header - kRecordRunOne, std::memory_order_relaxed);
  }
  set_head_pos(head, ((queue_count(head.pos) + 1) << kOffsetBits) | next);
}

// Producer side; any thread; never blocks for longer than another producer's block install.
// False when a new block was needed and could not be allocated: then nothing was claimed and
// `message` is untouched (the caller releases it). The block is allocated before the claim that
// needs it, so a producer never fails half-way with others waiting for its install.
// `home`: a port whose messages are stored without their port word (none: no such port); the
// consumer passes the same to queue_pop. `head`: the queue's consumer end, read (how far behind
// the consumer is) only to size a block that must be allocated; null: every block is the
// smallest. An isolate's mailbox passes its head (a flood that outruns its consumer gets larger
// blocks); MpscQueue — the event handler's command channel, the OOB and Receiver queues — passes
// null, so that a burst of the depth of an earlier one finds exactly the blocks that one left
// on the free list and allocates nothing (RuntimeEventHandler.SendersDoNotSleepInSteadyState:
// with sized blocks a second burst could need one more, large, block and its senders slept).
[[nodiscard]] bool queue_push(QueueTail& tail, const QueueHead* head, Message&& message,
                              PortId home = PortId::none) noexcept;
// Pushes the messages of `messages` (leaving each empty), in order, claiming space for as many as
// fit in the current block with one CAS. Returns how many were pushed: all of them, or those
// before the one that needed a block that could not be allocated (the rest are untouched).
[[nodiscard]] std::size_t queue_push_batch(QueueTail& tail, const QueueHead* head,
                                           std::span<Message> messages,
                                           PortId home = PortId::none) noexcept;

// Pushes `count` byte messages of `each` bytes (1..Message::kInlineBytes), copied from `data`
// (message i is data[i*each, (i+1)*each)), to `port`, in order — what queue_push_batch does with
// `count` `Message::bytes` of those slices, without the Messages: the bytes go straight into the
// claimed records (a run when `port` is `home` or none; else a record with its port word each).
// Returns how many were pushed: all, or those before the one that needed a block that could not
// be allocated.
[[nodiscard]] std::size_t queue_push_packed(QueueTail& tail, const QueueHead* head, PortId port,
                                            const std::byte* data, std::uint32_t each,
                                            std::size_t count, PortId home = PortId::none) noexcept;

// Consumer side: takes up to `max` messages to `home` that are written one after another from the
// head, across records, runs and block ends, and returns how many (0 when the next record is not
// written, not to `home`, or the consumer has not looked at the queue yet: queue_pop then says
// which). A run may be taken in part: the rest stays at the head as queue_pop leaves it. `out` is
// raw storage for `max` Messages: the n taken are constructed in out[0..n) (their port `home`); the
// caller destroys them (which releases what they still own).
// `leave_inline`: stop at an inline-bytes record (a packed handler takes those by
// queue_peek_packed).
std::uint32_t queue_pop_batch(QueueTail& tail, QueueHead& head, Message* out, std::uint32_t max,
                              PortId home, bool leave_inline = false) noexcept;

// Consumer side. On `item`, `out` holds the message (its port `home` when stored as home's).
// Inline for the common case — a written record that does not end its block — which is most of
// a flood's pops (issue 19: an out-of-line pop was a call and a variable-length memcpy per
// message); the first look, a skip, a block's end and "nothing written" go to queue_pop_slow.
inline PopResult queue_pop(QueueTail& tail, QueueHead& head, Message& out,
                           PortId home = PortId::none) noexcept;
PopResult queue_pop_slow(QueueTail& tail, QueueHead& head, Message& out, PortId home) noexcept;

// Consumer side, for a packed handler (IsolateHandler::on_packed): the inline-bytes messages to
// `home` of the written record (or run) at the head, read where they are. A peek reports up to
// `max` of them and moves nothing; queue_take_packed() then takes exactly those. The words stay
// valid until the take (only the consumer retires a block).
struct PackedPeek {
  const std::uint64_t* payload = nullptr;  // the first message's payload words
  std::uint64_t header = 0;                // the record's header as read
  std::uint32_t count = 0;                 // messages reported
  std::uint32_t size = 0;                  // bytes a message (1..Message::kInlineBytes)
  std::uint32_t words = 0;                 // payload words a message
};
// How many messages the peek reports (0: nothing written at the head, not inline bytes to `home`,
// or the consumer's first look, which is queue_pop's). A skip record at the head is passed.
std::uint32_t queue_peek_packed(QueueTail& tail, QueueHead& head, std::uint32_t max,
                                PackedPeek& out) noexcept;
// Takes the messages `peek` reported (queue_peek_packed() on this head, nothing taken since):
// the rest of a run stays at the head as queue_pop leaves it.
void queue_take_packed(QueueTail& tail, QueueHead& head, const PackedPeek& peek) noexcept;

inline PopResult queue_pop(QueueTail& tail, QueueHead& head, Message& out, PortId home) noexcept {
  if (QueueBlock* block = head.block; block != nullptr) [[likely]] {
    const auto offset = static_cast<std::uint32_t>(head.pos & kOffsetMask);
    // acquire: pairs with the producer's release store of the header (queue_push).
    const std::uint64_t header =
        std::atomic_ref<std::uint64_t>(block->words()[offset]).load(std::memory_order_acquire);
    if (header != 0 && (header & kRecordTagMask) != kRecordSkip) [[likely]] {
      const auto kind = static_cast<Message::Kind>((header & kRecordTagMask) - 1);
      const std::uint32_t next =
          record_next(header, offset,
                      MessageAccess::payload_words(kind, static_cast<std::uint32_t>(header >> 32)));
      if (next != block->end) [[likely]] {
        take_record(head, header, next, out, home);
        return PopResult::item;
      }
    }
  }
  return queue_pop_slow(tail, head, out, home);
}

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

// When no producer can reach the queue any more: releases what is left and frees the blocks.
std::uint64_t queue_destroy(QueueTail& tail, QueueHead& head) noexcept;

// How many blocks, and how many bytes of blocks, the free list holds (a snapshot; for tests and
// stats).
std::uint32_t queue_free_blocks(const QueueTail& tail) noexcept;
std::size_t queue_free_bytes(const QueueTail& tail) noexcept;

// A queue with both ends together, for owners that do not need to split them.
struct MpscQueue {
  QueueTail tail;
  QueueHead head;

  MpscQueue() = default;
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;
  ~MpscQueue() { queue_destroy(tail, head); }

  // As queue_push / queue_push_batch (not [[nodiscard]] here: tests of the queue alone push
  // without a failure seam armed).
  bool push(Message&& m) noexcept { return queue_push(tail, nullptr, std::move(m)); }
  std::size_t push_batch(std::span<Message> ms) noexcept {
    return queue_push_batch(tail, nullptr, ms);
  }
  std::size_t push_packed(PortId port, const std::byte* data, std::uint32_t each,
                          std::size_t count) noexcept {
    return queue_push_packed(tail, nullptr, port, data, each, count);
  }
  PopResult pop(Message& out) noexcept { return queue_pop(tail, head, out); }
  bool has_claimed() noexcept { return queue_has_claimed(tail, head); }
  std::uint64_t drain() noexcept { return queue_drain(tail, head); }
  std::uint32_t free_blocks() const noexcept { return queue_free_blocks(tail); }
  std::size_t free_bytes() const noexcept { return queue_free_bytes(tail); }
};

}  // namespace evh::detail
