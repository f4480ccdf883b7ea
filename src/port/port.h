// PortState: the shared record of one port, and PortTarget: what a port delivers into.
//
// A PortState is reference counted. References are held by the port map (while the port is
// open), by the owner of the port (an isolate or a Receiver, while open; an isolate keeps its
// main port until it is freed), and by every SendPort. A PortState holds a reference to its
// target, so a SendPort keeps the target's memory (not its life) alive.
#pragma once

#include <evh/error.h>
#include <evh/message.h>

#include <atomic>
#include <cstdint>
#include <new>
#include <span>

#include "base/alloc_fault.h"
#include "base/message_access.h"
#include "base/slab.h"

namespace evh::detail {

// What a port delivers into: an isolate's mailbox or a Receiver.
class PortTarget {
 public:
  virtual void retain() noexcept = 0;
  virtual void release() noexcept = 0;
  // Queues a message whose port has been checked open. Never blocks. False when the queue needed
  // a block it could not allocate: the message is untouched, for the caller to release.
  [[nodiscard]] virtual bool enqueue(Message&& message, Priority priority) noexcept = 0;
  // Queues the messages of `messages` in order (each left empty), as one claim of queue space
  // where they fit together. Returns how many: all, or those before the one that needed a block
  // that could not be allocated (the rest untouched).
  [[nodiscard]] virtual std::size_t enqueue_batch(std::span<Message> messages,
                                                  Priority priority) noexcept = 0;
  // Queues `count` byte messages of `each` bytes (1..Message::kInlineBytes) copied from `data`,
  // to the open port `port`, in order: as enqueue_batch() of `count` `Message::bytes`, which is
  // what this default does (in chunks of 64 on the stack); an isolate's mailbox copies the bytes
  // straight into its records. Returns how many were queued: all, or those before the one that
  // needed a block that could not be allocated.
  [[nodiscard]] virtual std::size_t enqueue_packed(PortId port, const std::byte* data,
                                                   std::uint32_t each, std::size_t count,
                                                   Priority priority) noexcept;
  // enqueue() for a caller inside a lock (the port map's shard lock): queues the message, but
  // leaves handing the target to its runner — which may be an embedder's `TaskRunner::post()`,
  // free to call back into the runtime — to finish_enqueue(), which the caller must call once
  // it has let go of its lock (`Enqueued::finish`); the target then stays alive until
  // finish_enqueue() returns (an isolate: by the reference its turn holds). The default does the
  // whole enqueue here, for targets whose wake-up runs no code but evh's (a Receiver's futex).
  enum class Enqueued : std::uint8_t { failed, done, finish };
  [[nodiscard]] virtual Enqueued enqueue_under_lock(Message&& message, Priority priority) noexcept {
    return enqueue(std::move(message), priority) ? Enqueued::done : Enqueued::failed;
  }
  virtual void finish_enqueue() noexcept {}

 protected:
  ~PortTarget() = default;
};

// The shape post_bytes_batch accepts: `each` of 1..Message::kInlineBytes dividing `bytes`.
bool packed_shape_ok(std::size_t bytes, std::size_t each) noexcept;

class PortState;
// Port records are small and numerous (one per idle isolate at least): a runtime keeps them in
// a slab, without malloc's per-block header.
using PortSlab = Slab<32, 8>;

class PortState {
 public:
  // Starts with one reference, owned by the caller. Retains `target`. From `slab` when given,
  // else from the heap.
  // Throws std::bad_alloc when out of memory.
  static PortState* make(PortId id, PortTarget* target, PortSlab* slab) {
    if (slab == nullptr) alloc_site();
    void* mem = slab != nullptr ? slab->allocate() : ::operator new(sizeof(PortState));
    return new (mem) PortState(id, target, slab);
  }

  PortId id() const noexcept { return id_; }
  PortTarget* target() const noexcept { return target_; }

  // acquire: pairs with the release in mark_closed; a post that sees "open" may still race
  // with the close, and then its message is dropped (released) at delivery instead.
  bool is_closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  // Returns true for the caller that closed it. seq_cst, with has_io(): see note_io().
  bool mark_closed() noexcept { return !closed_.exchange(true, std::memory_order_seq_cst); }

  // The event handler was asked to watch an fd for this port: whoever closes the port must tell
  // it (drop_port). A registrar stores the mark and then checks is_closed(); a closer marks
  // closed and then reads the mark (all seq_cst): either the closer sees the mark, or the
  // registrar sees the port closed and refuses.
  void note_io() noexcept { has_io_.store(true, std::memory_order_seq_cst); }
  bool has_io() const noexcept { return has_io_.load(std::memory_order_seq_cst); }
  bool is_closed_seq_cst() const noexcept { return closed_.load(std::memory_order_seq_cst); }

  // ENOMEM (the queue could not grow): the message is untouched, for the caller to release.
  Status post(Message&& message, Priority priority) noexcept {
    if (is_closed()) return Errc::port_closed;
    MessageAccess::set_port(message, id_);
    if (!target_->enqueue(std::move(message), priority)) return out_of_memory();
    return {};
  }

  // post() for the port map, under its shard lock: when `finish` is set (to the target), the
  // caller calls finish->finish_enqueue() once it has let go of the lock (PortMap::post).
  Status post_under_lock(Message&& message, Priority priority, PortTarget*& finish) noexcept {
    if (is_closed()) return Errc::port_closed;
    MessageAccess::set_port(message, id_);
    switch (target_->enqueue_under_lock(std::move(message), priority)) {
      case PortTarget::Enqueued::failed:
        return out_of_memory();
      case PortTarget::Enqueued::finish:
        finish = target_;
        break;
      case PortTarget::Enqueued::done:
        break;
    }
    return {};
  }

  // On port_closed every message is released here; on ENOMEM those that were not queued (the
  // queued ones, a prefix, are delivered).
  Status post_batch(std::span<Message> messages, Priority priority) noexcept {
    if (is_closed()) {
      for (Message& m : messages) m = Message{};
      return Errc::port_closed;
    }
    for (Message& m : messages) MessageAccess::set_port(m, id_);
    const std::size_t queued = target_->enqueue_batch(messages, priority);
    if (queued == messages.size()) return {};
    for (Message& m : messages.subspan(queued)) m = Message{};
    return out_of_memory();
  }

  // `count` byte messages of `each` bytes (checked by the caller: 1..Message::kInlineBytes)
  // from `data`, as post_batch() of their Message::bytes. On ENOMEM those queued (a prefix) are
  // delivered; nothing else is owned, so nothing is released.
  Status post_packed(const std::byte* data, std::uint32_t each, std::size_t count,
                     Priority priority) noexcept {
    if (is_closed()) return Errc::port_closed;
    if (target_->enqueue_packed(id_, data, each, count, priority) == count) return {};
    return out_of_memory();
  }

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acq_rel: the last releaser must see every other holder's writes before freeing.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      target_->release();
      PortSlab* slab = slab_;
      this->~PortState();
      if (slab != nullptr) {
        slab->deallocate(this);
      } else {
        ::operator delete(this);
      }
    }
  }

 private:
  PortState(PortId id, PortTarget* target, PortSlab* slab) noexcept
      : id_(id), target_(target), slab_(slab) {
    target_->retain();
  }
  ~PortState() = default;
  static std::error_code out_of_memory() noexcept {
    return std::make_error_code(std::errc::not_enough_memory);
  }

  std::atomic<std::uint32_t> refs_{1};
  std::atomic<bool> closed_{false};
  std::atomic<bool> has_io_{false};
  PortId id_;
  PortTarget* target_;
  PortSlab* slab_;
};
static_assert(sizeof(PortState) <= 32);

}  // namespace evh::detail
