// The queue's producer side (base/mpsc_queue.h): blocks and their install, the free list's pop,
// the claim that every push shares and the pushes; and the free list's size and the queue's
// destruction. The consumer side is mpsc_queue_consumer.cc; what the two share,
// mpsc_queue_internal.h.
#include "base/mpsc_queue.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/alloc_fault.h"
#include "base/assert.h"
#include "base/message_access.h"
#include "base/mpsc_queue_internal.h"
#include "sync/spin.h"

namespace evh::detail {
namespace {

using mpsc::block_of;
using mpsc::depth_blocks;
using mpsc::depth_units;
using mpsc::free_block;
using mpsc::free_depth;
using mpsc::header_at;
using mpsc::kHomePort;
using mpsc::kPortWord;
using mpsc::kSkip;
using mpsc::list_word;
using mpsc::offset_of;

// How a message is stored: its header and how many words it takes.
struct Record {
  std::uint64_t header;
  std::uint32_t words;
  std::uint32_t payload_words;
};

Record encode(const Message& m, PortId home) noexcept {
  const Message::Kind kind = MessageAccess::kind(m);
  const std::uint32_t size = MessageAccess::size(m);
  const PortId port = MessageAccess::port(m);
  const bool port_word = port != PortId::none && port != home;
  const std::uint64_t port_bits = port_word ? kPortWord : port != PortId::none ? kHomePort : 0;
  const std::uint32_t payload = MessageAccess::payload_words(kind, size);
  return {(std::uint64_t{size} << 32) | port_bits | (static_cast<std::uint64_t>(kind) + 1),
          1 + (port_word ? 1u : 0u) + payload, payload};
}

// Whether a message whose record is `r` continues the run of `length` messages with header
// `run_header` (mpsc_queue.h): the same header, no port word, and room in the count.
bool joins_run(const Record& r, std::uint64_t run_header, std::uint32_t length) noexcept {
  return r.header == run_header && (r.header & kPortWord) == 0 && length <= kMaxRunExtra;
}

// Writes `m`'s record at `offset` (its words were claimed, and those of any run after it are
// written) and publishes it; `m` is left empty.
void write_record(QueueBlock* block, std::uint32_t offset, Message& m, const Record& r) noexcept {
  std::uint64_t* w = block->words() + offset;
  std::uint32_t i = 1;
  if ((r.header & kPortWord) != 0) w[i++] = static_cast<std::uint64_t>(MessageAccess::port(m));
  MessageAccess::write_payload(m, w + i, r.payload_words);
  MessageAccess::forget(m);
  // release: pairs with the consumer's acquire load of the header.
  header_at(block, offset).store(r.header, std::memory_order_release);
}

// The tail block's word: the block tagged with its size class (mpsc_queue.h).
std::uintptr_t tail_word(QueueBlock* block) noexcept {
  return reinterpret_cast<std::uintptr_t>(block) | block->size_class;
}
QueueBlock* tail_block_of(std::uintptr_t word) noexcept {
  return reinterpret_cast<QueueBlock*>(word & ~kBlockClassMask);
}
std::uint32_t tail_end_of(std::uintptr_t word) noexcept {
  return block_words(static_cast<unsigned>(word & kBlockClassMask));
}
// The word is the free list (the consumer has looked) with a block on it.
bool list_has_block(std::uintptr_t word) noexcept {
  return (word & kFreeListTag) != 0 && block_of(word) != nullptr;
}

// A zeroed block of `size_class` (every header "not written"), unlinked, that nobody else can
// reach; null when the heap (or the allocation-failure seam) says no. calloc: glibc does not
// clear memory fresh from the kernel again; malloc's 16-byte alignment leaves room for the size
// class in the tail's tag bits (a cache-line-aligned block bought nothing measurable, and glibc's
// memalign path costs more than malloc's).
QueueBlock* new_block(unsigned size_class) noexcept {
  if (alloc_site_fails()) return nullptr;
  void* raw = std::calloc(1, block_bytes(size_class));
  if (raw == nullptr) return nullptr;
  EVH_ASSERT((reinterpret_cast<std::uintptr_t>(raw) & kBlockClassMask) == 0,
             "malloc aligns to 16 bytes");
  auto* block = ::new (raw) QueueBlock;
  block->end = block_words(size_class);
  block->size_class = size_class;
  return block;
}

// The size class of a block a producer must allocate: the one that holds about half the backlog
// (`depth` messages, most of a word each in a flood's runs), so that a consumer far behind meets a
// block end, and the producer an allocation, once per that many messages rather than every 2 KB;
// a consumer keeping up (depth within two small blocks) gets small blocks.
unsigned class_for_depth(std::uint64_t depth) noexcept {
  unsigned c = 0;
  while (c + 1 < kBlockClasses && std::uint64_t{block_words(c)} * 2 < depth) ++c;
  return c;
}

// Before a claim that will reach the end of the block: the installing producer must not fail
// once it has claimed (others wait for its install), so a block is allocated before the claim
// unless the free list has one; its size follows how far behind the consumer is (`pos` is the
// position this producer loaded; the head's count is read, relaxed, once per allocation). Only the
// installer pops the list and the consumer only pushes onto it (its first look turns a first-block
// word, which is no list, into an empty list), so a list seen with a block here still has one when
// this producer, having won the claim, pops it: the claim succeeds only if `pos` did not move since
// this producer loaded it, so no install (no pop) came between, and an earlier install's pop is
// ordered before its release store of `pos`, which that load saw. A claim lost to another producer
// keeps `fresh` for the next try. False when the allocation failed: nothing has been claimed.
bool ready_to_install(QueueTail& tail, const QueueHead* head, std::uint64_t pos,
                      QueueBlock*& fresh) noexcept {
  if (fresh != nullptr || list_has_block(tail.free.load(std::memory_order_acquire))) return true;
  unsigned size_class = 0;  // no head: the smallest (mpsc_queue.h, queue_push)
  if (head != nullptr) {
    const std::uint64_t read =
        queue_count(std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(head->pos))
                        .load(std::memory_order_relaxed));
    const std::uint64_t claimed = queue_count(pos);
    size_class = class_for_depth(claimed > read ? claimed - read : 0);
  }
  fresh = new_block(size_class);
  return fresh != nullptr;
}

// A block for the installing producer (one at a time: see the header), zeroed and unlinked: from
// the free list (which ready_to_install() saw non-empty).
QueueBlock* take_block(QueueTail& tail) noexcept {
  // acquire: pairs with the release CAS in recycle_block (mpsc_queue_consumer.cc), so the
  // block's `next` and the consumer's last reads of it are ordered before we zero it.
  // Only a free list with a block on it is popped: the first block, before the consumer's first
  // look, is not free.
  std::uintptr_t word = tail.free.load(std::memory_order_acquire);
  while (list_has_block(word)) {
    QueueBlock* top = block_of(word);
    QueueBlock* next = top->next.load(std::memory_order_relaxed);
    if (tail.free.compare_exchange_weak(word, list_word(next), std::memory_order_acquire,
                                        std::memory_order_acquire)) {
      top->next.store(nullptr, std::memory_order_relaxed);
      free_depth(top).store(0, std::memory_order_relaxed);
      std::memset(top->words() + 1, 0, (top->end - 1) * sizeof(std::uint64_t));
      return top;
    }
  }
  EVH_ASSERT(false, "the free list emptied between ready_to_install and the install");
  return new_block(0);
}

// The very first push: installs the first block (whoever gets there first) and makes it the
// tail block. `fresh` may be left holding a block that lost the race, for the caller to use.
// False when the block could not be allocated (nothing changed).
bool install_first(QueueTail& tail, QueueBlock*& fresh) noexcept {
  std::uintptr_t word = tail.free.load(std::memory_order_acquire);
  if (word == 0) {
    // Not from the free list: producers racing here would pop it concurrently. Once per queue
    // (or per queue_destroy).
    if (fresh == nullptr) fresh = new_block(0);
    if (fresh == nullptr) return false;
    // acq_rel: publishes the zeroed block (release) or sees the winner's (acquire).
    if (tail.free.compare_exchange_strong(word,
                                          reinterpret_cast<std::uintptr_t>(fresh) | kFirstBlockTag,
                                          std::memory_order_acq_rel)) {
      word = reinterpret_cast<std::uintptr_t>(fresh) | kFirstBlockTag;
      fresh = nullptr;
    }
  }
  // A free list: the consumer has taken the first block already, so its installer is between
  // the two CASes here and `block` is about to be set; the caller looks again.
  if ((word & kFirstBlockTag) == 0) return true;
  std::uintptr_t expected = 0;
  tail.block.compare_exchange_strong(expected, tail_word(block_of(word)),
                                     std::memory_order_acq_rel);
  return true;
}

// The producer whose claim reached the end of `block` links `fresh` after it and makes it the
// tail block, the position moving to its start with `count` messages claimed. Linking comes
// before any record or skip of the old block is published: the consumer follows `next` once it
// reads the last one.
void install_next(QueueTail& tail, QueueBlock* block, QueueBlock* fresh,
                  std::uint64_t count) noexcept {
  block->next.store(fresh, std::memory_order_release);
  tail.block.store(tail_word(fresh), std::memory_order_release);
  tail.pos.store(count << kOffsetBits, std::memory_order_release);
}

// What a push claims with one CAS: `words` words from the position's offset, counting
// `messages` messages; no messages: nothing fits in what is left of the block, and the claim
// takes the rest of it (a skip record) so that the push goes on in the next block.
struct ClaimPlan {
  std::uint32_t words;
  std::uint32_t messages;
};

// The claim loop that every push shares (one message, a batch, packed values): it loads the
// position, waits out another producer's install of the next block, installs the queue's first
// block, asks `plan(offset, room)` what to claim of the `room` words left in the block, and
// claims that with one CAS. A claim that reaches the block's end installs the next block; a claim
// of nothing writes a skip record and tries again in the new block. Once a claim of messages is
// won, `write(block, offset)` writes their records and publishes them (each header last). False
// when a block was needed and could not be allocated: then nothing was claimed (`plan` may have
// been called, `write` was not).
template <class Plan, class Write>
[[gnu::always_inline]] inline bool claim_and_write(QueueTail& tail, const QueueHead* head,
                                                   Plan&& plan, Write&& write) noexcept {
  QueueBlock* fresh = nullptr;
  Backoff backoff;
  for (;;) {
    // acquire: pairs with the release store of `pos` by the producer that installed the block,
    // so the `block` we load next is at least as new as `pos`.
    std::uint64_t pos = tail.pos.load(std::memory_order_acquire);
    const std::uint32_t offset = offset_of(pos);
    if (offset == kInstallingOffset) {  // another producer is installing the next block
      backoff.snooze();
      continue;
    }
    // The block is not read before the claim (it may be retired and freed by then): its end
    // comes with the word.
    const std::uintptr_t word = tail.block.load(std::memory_order_acquire);
    QueueBlock* block = tail_block_of(word);
    if (block == nullptr) {
      if (!install_first(tail, fresh)) return false;  // `fresh` is null: nothing to free
      // Another producer won the first install and is between its two stores: wait as for a
      // block's install rather than spin on the line it is writing.
      if (tail.block.load(std::memory_order_acquire) == 0) backoff.snooze();
      continue;
    }
    const std::uint32_t end = tail_end_of(word);
    // A block installed between the two loads (a larger one before a smaller one) leaves `pos`
    // stale, which the CAS would catch; look again before planning with a negative room.
    if (offset > end) continue;
    const ClaimPlan p = plan(offset, end - offset);
    const bool fits = p.messages != 0;
    const bool ends = !fits || offset + p.words == end;  // the claim reaches the block's end
    if (ends && !ready_to_install(tail, head, pos, fresh)) return false;  // `fresh` is null
    const std::uint64_t count = queue_count(pos) + p.messages;
    // A claim that reaches the end — its messages fill the block, or nothing fits and it skips —
    // leaves "installing" as the offset, so that no other producer claims (or skips, and installs
    // a second next block) before the install. (Before the blocks had sizes the end itself was
    // that mark.)
    const std::uint64_t claimed =
        (count << kOffsetBits) | (ends ? kInstallingOffset : offset + p.words);
    // seq_cst: the mailbox owners' idle protocol pairs this with their seq_cst load of `pos`.
    // A stale `pos` (another producer won, or a block was installed) makes the CAS fail, which
    // also catches a `block` loaded after a concurrent install.
    if (!tail.pos.compare_exchange_weak(pos, claimed, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
      continue;
    }
    if (ends) {
      // The block is popped after the claim, so that one producer at a time pops the free list;
      // one that had to be allocated was allocated before it (ready_to_install), so the install
      // window is a pop and a clear at most, and cannot fail. A block allocated before the
      // claim, or left from a lost install_first race, is used first.
      install_next(tail, block, fresh != nullptr ? fresh : take_block(tail), count);
      fresh = nullptr;
    }
    if (!fits) {
      // The rest of this block stays unused; the messages go into the next one.
      header_at(block, offset).store(kSkip, std::memory_order_release);
      continue;
    }
    write(block, offset);
    // Left from a lost install_first race, or a claim that ended the block lost to another
    // producer; never onto the list (only the consumer pushes there).
    if (fresh != nullptr) free_block(fresh);
    return true;
  }
}

}  // namespace

bool queue_push(QueueTail& tail, const QueueHead* head, Message&& message, PortId home) noexcept {
  const Record r = encode(message, home);
  return claim_and_write(
      tail, head,
      [&](std::uint32_t, std::uint32_t room) {
        return r.words <= room ? ClaimPlan{r.words, 1} : ClaimPlan{0, 0};
      },
      [&](QueueBlock* block, std::uint32_t offset) { write_record(block, offset, message, r); });
}

std::size_t queue_push_batch(QueueTail& tail, const QueueHead* head, std::span<Message> messages,
                             PortId home) noexcept {
  std::size_t done = 0;
  // The runs of one claim, by length, so that the writing need not encode each message again. A
  // claim stops at kMaxClaimRuns runs (a larger block would take more; the next claim goes on in
  // the same block).
  constexpr std::uint32_t kMaxClaimRuns = 256;
  std::uint32_t runs[kMaxClaimRuns];
  std::uint32_t run_count = 0;
  while (done < messages.size()) {
    // As many of the remaining messages as fit in the rest of the block, in one claim; a message
    // that continues a run (mpsc_queue.h) takes only its payload words.
    std::uint32_t n = 0;
    auto plan = [&](std::uint32_t, std::uint32_t room) {
      std::uint32_t words = 0;
      std::uint64_t run_header = 0;
      n = 0;
      run_count = 0;
      while (done + n < messages.size()) {
        const Record r = encode(messages[done + n], home);
        const bool joins = run_count != 0 && joins_run(r, run_header, runs[run_count - 1]);
        const std::uint32_t w = joins ? r.payload_words : r.words;
        if (words + w > room || (!joins && run_count == kMaxClaimRuns)) break;
        words += w;
        ++n;
        if (joins) {
          ++runs[run_count - 1];
        } else {
          run_header = r.header;
          runs[run_count++] = 1;
        }
      }
      return ClaimPlan{words, n};
    };
    // Run by run, each published by its header (written last), in order.
    auto write = [&](QueueBlock* block, std::uint32_t offset) {
      std::uint32_t at = offset;
      Message* m = &messages[done];
      for (std::uint32_t k = 0; k < run_count; ++k) {
        const Record r = encode(*m, home);
        const std::uint32_t length = runs[k];
        std::uint64_t* w = block->words() + at + r.words;
        if (r.payload_words == 1) {  // the common run: one word a message (a u64, a heap pointer)
          for (std::uint32_t j = 1; j < length; ++j, ++w) {
            MessageAccess::write_payload(m[j], w, 1);
            MessageAccess::forget(m[j]);
          }
        } else {
          for (std::uint32_t j = 1; j < length; ++j, w += r.payload_words) {
            MessageAccess::write_payload(m[j], w, r.payload_words);
            MessageAccess::forget(m[j]);
          }
        }
        write_record(block, at, *m,
                     Record{r.header | (std::uint64_t{length - 1} << kRecordRunShift), r.words,
                            r.payload_words});
        at += r.words + (length - 1) * r.payload_words;
        m += length;
      }
    };
    if (!claim_and_write(tail, head, plan, write)) break;  // messages from `done` on untouched
    done += n;
  }
  return done;
}

std::size_t queue_push_packed(QueueTail& tail, const QueueHead* head, PortId port,
                              const std::byte* data, std::uint32_t each, std::size_t count,
                              PortId home) noexcept {
  EVH_ASSERT(each >= 1 && each <= Message::kInlineBytes, "a packed message is inline bytes");
  const std::uint32_t payload = (each + 7) / 8;
  const bool port_word = port != PortId::none && port != home;
  const std::uint64_t header = (std::uint64_t{each} << 32) |
                               (port_word              ? kPortWord
                                : port != PortId::none ? kHomePort
                                                       : 0) |
                               (static_cast<std::uint64_t>(Message::Kind::inline_bytes) + 1);
  std::size_t done = 0;
  while (done < count) {
    // As many as fit in the rest of the block: records of their own (port word), or one run.
    std::uint32_t n = 0;
    auto plan = [&](std::uint32_t, std::uint32_t room) {
      n = 0;
      if (port_word) {
        n = static_cast<std::uint32_t>(std::min<std::size_t>(room / (2 + payload), count - done));
        return ClaimPlan{n * (2 + payload), n};
      }
      if (room >= 1 + payload) {
        n = static_cast<std::uint32_t>(std::min<std::size_t>(
            {1 + (room - 1 - payload) / payload, count - done, std::size_t{kMaxRunExtra} + 1}));
      }
      return ClaimPlan{n == 0 ? 0 : 1 + n * payload, n};
    };
    // The claimed words are zero (a block is zeroed before it is installed), so a payload shorter
    // than its words is padded as Message::bytes's inline copy would leave it.
    auto write = [&](QueueBlock* block, std::uint32_t offset) {
      std::uint64_t* w = block->words() + offset;
      const std::byte* from = data + done * each;
      if (port_word) {
        for (std::uint32_t i = 0; i < n; ++i, w += 2 + payload, from += each) {
          w[1] = static_cast<std::uint64_t>(port);
          std::memcpy(w + 2, from, each);
          // release: pairs with the consumer's acquire load of the header.
          std::atomic_ref<std::uint64_t>(*w).store(header, std::memory_order_release);
        }
        return;
      }
      if (each == payload * 8) {  // whole words: one copy (a flood of u64 values)
        std::memcpy(w + 1, from, std::size_t{n} * each);
      } else {
        for (std::uint32_t i = 0; i < n; ++i) {
          std::memcpy(w + 1 + i * payload, from + i * each, each);
        }
      }
      // release: pairs with the consumer's acquire load of the header.
      header_at(block, offset)
          .store(header | (std::uint64_t{n - 1} << kRecordRunShift), std::memory_order_release);
    };
    if (!claim_and_write(tail, head, plan, write)) break;
    done += n;
  }
  return done;
}

namespace {
// The free list's depth word at its top (0: no list, or an empty one).
std::uint64_t free_list_depth(const QueueTail& tail) noexcept {
  const std::uintptr_t word = tail.free.load(std::memory_order_acquire);
  QueueBlock* top = (word & kFreeListTag) != 0 ? block_of(word) : nullptr;
  return top == nullptr ? 0 : free_depth(top).load(std::memory_order_relaxed);
}
}  // namespace

std::uint32_t queue_free_blocks(const QueueTail& tail) noexcept {
  return static_cast<std::uint32_t>(depth_blocks(free_list_depth(tail)));
}

std::size_t queue_free_bytes(const QueueTail& tail) noexcept {
  return static_cast<std::size_t>(depth_units(free_list_depth(tail))) * block_bytes(0);
}

std::uint64_t queue_destroy(QueueTail& tail, QueueHead& head) noexcept {
  const std::uint64_t released = queue_drain(tail, head);
  std::uintptr_t word = tail.free.exchange(0, std::memory_order_acquire);
  QueueBlock* b = head.block;
  if ((word & kFirstBlockTag) != 0) {
    b = block_of(word);  // never looked at: the chain starts at the first block
    word = 0;
  }
  while (b != nullptr) {
    QueueBlock* next = b->next.load(std::memory_order_acquire);
    free_block(b);
    b = next;
  }
  for (QueueBlock* f = block_of(word); f != nullptr;) {
    QueueBlock* next = f->next.load(std::memory_order_relaxed);
    free_block(f);
    f = next;
  }
  head = QueueHead{};
  tail.block.store(0, std::memory_order_relaxed);
  tail.pos.store(0, std::memory_order_relaxed);
  return released;
}

}  // namespace evh::detail
