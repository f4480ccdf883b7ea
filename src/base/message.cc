#include <evh/message.h>

#include <new>
#include <stdexcept>

namespace evh {

Message Message::bytes(std::span<const std::byte> bytes) {
  // A size_ cut to 32 bits would make data() a prefix of what was copied (or, past 4 GiB
  // exactly, nothing at all).
  if (bytes.size() > kMaxBytes) throw std::length_error("evh::Message::bytes: more than 4 GiB - 1");
  Message m;
  m.size_ = static_cast<std::uint32_t>(bytes.size());
  if (bytes.size() <= kInlineBytes) {
    m.kind_ = Kind::inline_bytes;
    if (!bytes.empty()) std::memcpy(m.u_.inline_, bytes.data(), bytes.size());
  } else {
    m.kind_ = Kind::heap_bytes;
    m.u_.heap_ = new std::byte[bytes.size()];
    std::memcpy(m.u_.heap_, bytes.data(), bytes.size());
  }
  return m;
}

void Message::release() noexcept {
  switch (kind_) {
    case Kind::heap_bytes:
      delete[] u_.heap_;
      break;
    case Kind::native:
      if (u_.native_.finalizer != nullptr) u_.native_.finalizer(u_.native_.object);
      break;
    default:
      break;
  }
  kind_ = Kind::empty;
}

}  // namespace evh
