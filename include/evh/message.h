// evh/message.h — a message: its destination port and its payload.
//
// A `Message` owns its payload, and releasing a payload happens exactly once: when the last
// owner of the `Message` destroys it without having taken the payload out. The payload is one of
//   - nothing,
//   - bytes: up to `kInlineBytes` are stored inside the message (no allocation), longer byte
//     strings are copied to the heap,
//   - a native object: a pointer plus a finalizer that evh calls once, unless the receiver takes
//     the object out with `take_native()` (then the receiver owns it).
//
// Who releases a payload, and on which thread (SEMANTICS 3):
//   - `post()` fails (closed or unknown port, runtime shut down): the message passed by value
//     is destroyed before `post()` returns, so the finalizer runs on the posting thread.
//   - delivered: the receiver's callback gets `Message&`; whatever it leaves in it is released
//     on the isolate's thread when the callback returns.
//   - accepted but dropped later (its port closed before delivery, its isolate destroyed, the
//     runtime shut down): released on the thread that drops it — the isolate's runner thread,
//     or the thread calling `destroy()`/`shutdown()`.
//
// Threads: a Message is a plain move-only value; it may be moved to and destroyed on any thread.
// A finalizer must not throw and must not post to the port it was dropped from.
#pragma once

#include <evh/export.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace evh {

namespace detail {
struct MessageAccess;
}

// A port id: random, never 0, never reused within a runtime (SEMANTICS 1).
enum class PortId : std::uint64_t { none = 0 };

// Out-of-band messages overtake every normal message already queued (SEMANTICS 2), and are
// handled while the isolate is paused (SEMANTICS 8).
enum class Priority : std::uint8_t { normal, oob };

// Called exactly once for a native payload nobody took.
using Finalizer = void (*)(void* object) noexcept;

class EVH_API Message {
 public:
  static constexpr std::size_t kInlineBytes = 40;
  // The largest byte payload: a message's size is 32 bits, so that a message and its queue
  // slot stay one cache line. Larger data travels as a native object.
  static constexpr std::size_t kMaxBytes = UINT32_MAX;

  enum class Kind : std::uint8_t { empty, inline_bytes, heap_bytes, native };

  Message() noexcept = default;

  // Copies `bytes`; inline when they fit, else one heap allocation. Throws std::length_error for
  // more than kMaxBytes (nothing is copied), std::bad_alloc when the copy cannot be made.
  static Message bytes(std::span<const std::byte> bytes);
  static Message bytes(std::string_view text) {
    return bytes(std::as_bytes(std::span<const char>(text.data(), text.size())));
  }
  // An 8-byte integer payload, stored inline. Read back with `as_u64()`.
  static Message u64(std::uint64_t value) noexcept {
    Message m;
    m.kind_ = Kind::inline_bytes;
    m.size_ = sizeof value;
    std::memcpy(m.u_.inline_, &value, sizeof value);
    return m;
  }
  // Takes ownership of `object`; `finalizer` (may be null) runs once if nobody takes it.
  static Message native(void* object, Finalizer finalizer) noexcept {
    Message m;
    m.kind_ = Kind::native;
    m.u_.native_.object = object;
    m.u_.native_.finalizer = finalizer;
    return m;
  }

  Message(Message&& other) noexcept { steal(other); }
  Message& operator=(Message&& other) noexcept {
    if (this != &other) {
      release_if_owning();
      steal(other);
    }
    return *this;
  }
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  ~Message() { release_if_owning(); }

  Kind kind() const noexcept { return kind_; }
  // The port it was posted to; set by evh when the message is accepted.
  PortId port() const noexcept { return port_; }

  // The byte payload (empty for other kinds). Valid while the message owns it.
  std::span<const std::byte> data() const noexcept {
    switch (kind_) {
      case Kind::inline_bytes:
        return {u_.inline_, size_};
      case Kind::heap_bytes:
        return {u_.heap_, size_};
      default:
        return {};
    }
  }
  std::string_view text() const noexcept {
    auto d = data();
    return {reinterpret_cast<const char*>(d.data()), d.size()};
  }
  // The value of a `u64()` message; 0 when the payload is not 8 bytes.
  std::uint64_t as_u64() const noexcept {
    std::uint64_t v = 0;
    if (kind_ == Kind::inline_bytes && size_ == sizeof v) std::memcpy(&v, u_.inline_, sizeof v);
    return v;
  }

  // The native object, still owned by the message (null for other kinds).
  void* native_object() const noexcept {
    return kind_ == Kind::native ? u_.native_.object : nullptr;
  }
  // Takes the native object out: the caller owns it, and the finalizer will not run.
  void* take_native() noexcept {
    if (kind_ != Kind::native) return nullptr;
    void* object = u_.native_.object;
    kind_ = Kind::empty;
    return object;
  }

 private:
  friend struct detail::MessageAccess;
  void release() noexcept;
  // Inline, so that a payload owning nothing (inline bytes, the common case) costs no call.
  void release_if_owning() noexcept {
    if (kind_ == Kind::heap_bytes || kind_ == Kind::native) release();
  }
  void steal(Message& other) noexcept {
    port_ = other.port_;
    size_ = other.size_;
    kind_ = other.kind_;
    std::memcpy(&u_, &other.u_, sizeof u_);
    other.kind_ = Kind::empty;
  }

  PortId port_ = PortId::none;
  std::uint32_t size_ = 0;
  Kind kind_ = Kind::empty;
  union Payload {
    std::byte inline_[kInlineBytes];
    std::byte* heap_;
    struct {
      void* object;
      Finalizer finalizer;
    } native_;
  } u_;
};

// A message fits, with its queue slot's ready word, in one 64-byte cache line.
static_assert(sizeof(Message) == 56);

}  // namespace evh
