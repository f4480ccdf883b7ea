// The public face of the event handler: IoEvent messages and EventHandler's forwarding calls.
#include <evh/event_handler.h>

#include <cstring>

#include "base/mono_time.h"
#include "io/event_handler.h"

namespace evh {

Message to_message(const IoEvent& event) {
  return Message::bytes(std::as_bytes(std::span<const IoEvent, 1>(&event, 1)));
}

std::optional<IoEvent> decode_io_event(const Message& message) noexcept {
  const auto bytes = message.data();
  if (bytes.size() != sizeof(IoEvent)) return std::nullopt;
  IoEvent ev;
  std::memcpy(&ev, bytes.data(), sizeof ev);
  if (ev.magic != IoEvent::kMagic) return std::nullopt;
  return ev;
}

namespace detail {
std::unique_ptr<EventHandler> EventHandlerAccess::wrap(std::unique_ptr<EventHandlerImpl> impl) {
  return std::unique_ptr<EventHandler>(new EventHandler(std::move(impl)));
}
}  // namespace detail

EventHandler::EventHandler(std::unique_ptr<detail::EventHandlerImpl> impl) noexcept
    : impl_(std::move(impl)) {}

EventHandler::~EventHandler() {
  impl_->shutdown();
}

Status EventHandler::add_fd(int fd, PortId port, FdEvents interest, FdOptions options) noexcept {
  return impl_->add_fd(fd, port, interest, options);
}
Status EventHandler::modify_fd(int fd, PortId port, FdEvents interest) noexcept {
  return impl_->command(detail::CommandKind::modify, fd, port, interest, 0);
}
Status EventHandler::remove_fd(int fd, PortId port) noexcept {
  return impl_->command(detail::CommandKind::remove, fd, port, FdEvents::none, 0);
}
Status EventHandler::close_fd(int fd, PortId port) noexcept {
  return impl_->command(detail::CommandKind::close, fd, port, FdEvents::none, 0);
}
Status EventHandler::return_tokens(int fd, PortId port, std::uint32_t count) noexcept {
  return impl_->command(detail::CommandKind::tokens, fd, port, FdEvents::none, count);
}
Result<int> EventHandler::accept(int listen_fd, PortId port) noexcept {
  return impl_->accept(listen_fd, port);
}
Status EventHandler::set_timeout(PortId port, Clock::time_point deadline) noexcept {
  return impl_->set_timeout(port, detail::to_ns(deadline));
}
Status EventHandler::clear_timeout(PortId port) noexcept {
  return impl_->clear_timeout(port);
}
void EventHandler::shutdown() noexcept {
  impl_->shutdown();
}
EventHandlerStats EventHandler::stats() const noexcept {
  return impl_->stats();
}
const char* EventHandler::backend() const noexcept {
  return impl_->backend();
}

}  // namespace evh
