// evh/port.h — SendPort: a cheap, copyable capability to post to one port.
//
// A `SendPort` is looked up once (`Runtime::send_port(id)`) and then posts without touching the
// runtime's port map. Copying one is an atomic increment. It stays valid (posting then fails with
// `Errc::port_closed`) after the port is closed or its isolate destroyed, and after the runtime
// has shut down — but it must be destroyed before the `Runtime` object itself.
//
// Threads: every method may be called from any thread; `post()` never blocks (SEMANTICS 4).
#pragma once

#include <evh/error.h>
#include <evh/export.h>
#include <evh/message.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace evh {

namespace detail {
class PortState;
}

class Runtime;

class EVH_API SendPort {
 public:
  SendPort() noexcept = default;  // empty: post() says unknown_port; Runtime::send_port()
  SendPort(const SendPort& other) noexcept;
  SendPort(SendPort&& other) noexcept : state_(other.state_) { other.state_ = nullptr; }
  SendPort& operator=(SendPort other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~SendPort();

  PortId id() const noexcept;
  explicit operator bool() const noexcept { return state_ != nullptr; }

  // Queues `message` for the port's isolate. On error the message is released before this
  // returns (its finalizer runs on this thread): `Errc::port_closed` when the port was closed
  // or its isolate destroyed, `Errc::unknown_port` for an empty SendPort, ENOMEM
  // (`std::errc::not_enough_memory`) when the mailbox needed a new block and none could be
  // allocated (the mailbox is as it was: a later post may succeed).
  Status post(Message message, Priority priority = Priority::normal) const noexcept;
  // Queues every message of `messages`, in order, with the guarantees of `post` for each (FIFO
  // behind this thread's earlier posts, finalizer exactly once, never blocks), claiming mailbox
  // space once for as many as fit together. Each message is left empty: queued, or on error
  // released before this returns (the errors of `post`; all or none are queued — except on
  // ENOMEM, where the messages before the one that needed the missing block are queued, in
  // order, and the rest released).
  Status post_batch(std::span<Message> messages,
                    Priority priority = Priority::normal) const noexcept;
  // Posts `packed.size() / each` byte messages of `each` bytes, message i being a copy of
  // `packed[i * each, (i + 1) * each)` — what post_batch() of their `Message::bytes` does, with
  // the same guarantees (FIFO behind this thread's earlier posts, never blocks), but without a
  // `Message` per value: the bytes are copied straight into the mailbox's records (a runtime
  // sending packed small values — numbers, fixed-size records — writes each only once). `each`
  // is 1..`Message::kInlineBytes` and divides `packed.size()`, else `Errc::invalid_argument`
  // (nothing is posted). The other errors of post_batch: all or none are posted, except on
  // ENOMEM, where a prefix of them is. Nothing is owned, so nothing is released on an error.
  Status post_bytes_batch(std::span<const std::byte> packed, std::size_t each,
                          Priority priority = Priority::normal) const noexcept;
  // post_bytes_batch() of `values`' bytes, 8 each: each value arrives as `Message::u64(value)`.
  Status post_u64_batch(std::span<const std::uint64_t> values,
                        Priority priority = Priority::normal) const noexcept {
    return post_bytes_batch(std::as_bytes(values), sizeof(std::uint64_t), priority);
  }

 private:
  friend class Runtime;                                                    // looks them up
  explicit SendPort(detail::PortState* state) noexcept : state_(state) {}  // adopts one reference
  detail::PortState* state_ = nullptr;
};

}  // namespace evh
