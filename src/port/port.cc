#include "port/port.h"

#include <evh/port.h>

#include <algorithm>

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

namespace detail {

bool packed_shape_ok(std::size_t bytes, std::size_t each) noexcept {
  return each >= 1 && each <= Message::kInlineBytes && bytes % each == 0;
}

std::size_t PortTarget::enqueue_packed(PortId port, const std::byte* data, std::uint32_t each,
                                       std::size_t count, Priority priority) noexcept {
  constexpr std::size_t kChunk = 64;
  Message chunk[kChunk];
  std::size_t done = 0;
  while (done < count) {
    const std::size_t n = std::min(kChunk, count - done);
    for (std::size_t i = 0; i < n; ++i) {
      // Inline bytes (each <= kInlineBytes): no allocation, nothing thrown.
      chunk[i] = Message::bytes(std::span(data + (done + i) * each, each));
      MessageAccess::set_port(chunk[i], port);
    }
    const std::size_t queued = enqueue_batch(std::span(chunk, n), priority);
    done += queued;
    if (queued != n) break;  // the rest own nothing: no release needed
  }
  return done;
}

}  // namespace detail

Status SendPort::post_bytes_batch(std::span<const std::byte> packed, std::size_t each,
                                  Priority priority) const noexcept {
  if (!detail::packed_shape_ok(packed.size(), each)) return Errc::invalid_argument;
  if (state_ == nullptr) return Errc::unknown_port;
  return state_->post_packed(packed.data(), static_cast<std::uint32_t>(each), packed.size() / each,
                             priority);
}

}  // namespace evh
