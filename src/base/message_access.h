// MessageAccess: what evh's own queues and ports may do to a Message that its users may not —
// stamp it with the port it is delivered to, and move it out of a queue slot.
//
// Threads: as for Message (a plain value).
#pragma once

#include <evh/message.h>

#include <cstdint>
#include <cstring>
#include <new>

namespace evh::detail {

struct MessageAccess {
  // The port the message is delivered to; `Message::port()` reads it back.
  static void set_port(Message& message, PortId port) noexcept { message.port_ = port; }
  // Moves a Message between a queue slot and a Message object without writing the source: a
  // slot is raw storage that the consumer abandons after reading (no destructor runs on it).
  static void relocate(Message& to, const Message& from) noexcept {
    to.release_if_owning();
    to.port_ = from.port_;
    to.size_ = from.size_;
    to.kind_ = from.kind_;
    std::memcpy(&to.u_, &from.u_, sizeof to.u_);
  }

  // The parts a queue record stores (mpsc_queue.h): the kind, the byte size, and the payload as
  // whole 8-byte words — the inline bytes rounded up, the heap pointer, or the native object and
  // its finalizer.
  static Message::Kind kind(const Message& m) noexcept { return m.kind_; }
  static std::uint32_t size(const Message& m) noexcept { return m.size_; }
  static PortId port(const Message& m) noexcept { return m.port_; }
  static std::uint32_t payload_words(Message::Kind kind, std::uint32_t size) noexcept {
    switch (kind) {
      case Message::Kind::inline_bytes:
        return (size + 7) / 8;
      case Message::Kind::heap_bytes:
        return 1;
      case Message::Kind::native:
        return 2;
      default:
        return 0;
    }
  }
  static void write_payload(const Message& m, std::uint64_t* words, std::uint32_t n) noexcept {
    copy_words(words, &m.u_, n);
  }
  // Gives up the payload without releasing it: it now belongs to a queue record.
  static void forget(Message& m) noexcept { m.kind_ = Message::Kind::empty; }
  // `to` (empty) takes the payload of a record.
  static void assemble(Message& to, PortId port, Message::Kind kind, std::uint32_t size,
                       const std::uint64_t* words, std::uint32_t n) noexcept {
    to.release_if_owning();
    to.port_ = port;
    to.size_ = size;
    copy_words(&to.u_, words, n);
    to.kind_ = kind;
  }

  // Makes a Message in raw storage `at` holding a record's payload: assemble() into a fresh one,
  // without first constructing it empty (a batch of them is taken this way; the caller destroys
  // each).
  static Message* construct(void* at, PortId port, Message::Kind kind, std::uint32_t size,
                            const std::uint64_t* words, std::uint32_t n) noexcept {
    Message* m = ::new (at) Message;
    m->port_ = port;
    m->size_ = size;
    copy_words(&m->u_, words, n);
    m->kind_ = kind;
    return m;
  }

  // Copies `n` (at most 5: kInlineBytes) whole words. Fixed-size copies, so that the one word of
  // a u64 message is a move, not a call to memcpy with a length known only at run time (the
  // flood's records are one payload word each; measured in port_flood_batch, issue 19).
  static void copy_words(void* to, const void* from, std::uint32_t n) noexcept {
    static_assert(Message::kInlineBytes == 5 * 8, "copy_words copies at most five words");
    auto* d = static_cast<std::byte*>(to);
    const auto* s = static_cast<const std::byte*>(from);
    if (n == 1) [[likely]] {  // a u64, a heap pointer: no jump through the switch's table
      std::memcpy(d, s, 8);
      return;
    }
    switch (n) {
      case 5:
        std::memcpy(d + 32, s + 32, 8);
        [[fallthrough]];
      case 4:
        std::memcpy(d + 24, s + 24, 8);
        [[fallthrough]];
      case 3:
        std::memcpy(d + 16, s + 16, 8);
        [[fallthrough]];
      case 2:
        std::memcpy(d + 8, s + 8, 8);
        [[fallthrough]];
      case 1:
        std::memcpy(d, s, 8);
        [[fallthrough]];
      default:
        break;
    }
  }

  // A native payload's finalizer (null for other kinds): tells evh's own native payloads apart.
  static Finalizer finalizer(const Message& message) noexcept {
    return message.kind_ == Message::Kind::native ? message.u_.native_.finalizer : nullptr;
  }
};

}  // namespace evh::detail
