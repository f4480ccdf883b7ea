// MessageAccess: what evh's own queues and ports may do to a Message that its users may not —
// stamp it with the port it is delivered to, and move it out of a queue slot.
//
// Threads: as for Message (a plain value).
#pragma once

#include <evh/message.h>

#include <cstdint>
#include <cstring>

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
    std::memcpy(words, &m.u_, std::size_t{n} * 8);
  }
  // Gives up the payload without releasing it: it now belongs to a queue record.
  static void forget(Message& m) noexcept { m.kind_ = Message::Kind::empty; }
  // `to` (empty) takes the payload of a record.
  static void assemble(Message& to, PortId port, Message::Kind kind, std::uint32_t size,
                       const std::uint64_t* words, std::uint32_t n) noexcept {
    to.release_if_owning();
    to.port_ = port;
    to.size_ = size;
    std::memcpy(&to.u_, words, std::size_t{n} * 8);
    to.kind_ = kind;
  }

  // A native payload's finalizer (null for other kinds): tells evh's own native payloads apart.
  static Finalizer finalizer(const Message& message) noexcept {
    return message.kind_ == Message::Kind::native ? message.u_.native_.finalizer : nullptr;
  }
};

}  // namespace evh::detail
