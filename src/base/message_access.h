// MessageAccess: what evh's own queues and ports may do to a Message that its users may not —
// stamp it with the port it is delivered to, and move it out of a queue slot.
//
// Threads: as for Message (a plain value).
#pragma once

#include <evh/message.h>

#include <cstring>

namespace evh::detail {

struct MessageAccess {
  // The port the message is delivered to; `Message::port()` reads it back.
  static void set_port(Message& message, PortId port) noexcept { message.port_ = port; }
  // Moves a Message between a queue slot and a Message object without writing the source: a
  // slot is raw storage that the consumer abandons after reading (no destructor runs on it).
  static void relocate(Message& to, const Message& from) noexcept {
    to.release();
    to.port_ = from.port_;
    to.size_ = from.size_;
    to.kind_ = from.kind_;
    std::memcpy(&to.u_, &from.u_, sizeof to.u_);
  }
  // A native payload's finalizer (null for other kinds): tells evh's own native payloads apart.
  static Finalizer finalizer(const Message& message) noexcept {
    return message.kind_ == Message::Kind::native ? message.u_.native_.finalizer : nullptr;
  }
};

}  // namespace evh::detail
