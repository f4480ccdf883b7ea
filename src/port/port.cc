#include "port/port.h"

#include <evh/port.h>

namespace evh {

SendPort::SendPort(const SendPort& other) noexcept : state_(other.state_) {
  if (state_ != nullptr) state_->retain();
}

SendPort::~SendPort() {
  if (state_ != nullptr) state_->release();
}

PortId SendPort::id() const noexcept {
  return state_ != nullptr ? state_->id() : PortId::none;
}

Status SendPort::post(Message message, Priority priority) const noexcept {
  if (state_ == nullptr) return Errc::unknown_port;
  return state_->post(std::move(message), priority);
}

Status SendPort::post_batch(std::span<Message> messages, Priority priority) const noexcept {
  if (state_ == nullptr) {
    for (Message& m : messages) m = Message{};
    return Errc::unknown_port;
  }
  return state_->post_batch(messages, priority);
}

}  // namespace evh
