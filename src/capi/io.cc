// The C API's file descriptors and port timeouts: the runtime's event handler.
#include <evh/event_handler.h>

#include "capi/handles.h"
#include "capi/options.h"

namespace evh::capi {
namespace {

constexpr std::uint32_t kEventBits =
    EVH_READABLE | EVH_WRITABLE | EVH_READ_CLOSED | EVH_ERROR | EVH_HANG_UP;
static_assert(EVH_READABLE == static_cast<int>(FdEvents::readable) &&
              EVH_WRITABLE == static_cast<int>(FdEvents::writable) &&
              EVH_READ_CLOSED == static_cast<int>(FdEvents::read_closed) &&
              EVH_ERROR == static_cast<int>(FdEvents::error) &&
              EVH_HANG_UP == static_cast<int>(FdEvents::hang_up));
static_assert(EVH_IO_READY == static_cast<int>(IoNotice::ready) &&
              EVH_IO_CLOSED == static_cast<int>(IoNotice::closed) &&
              EVH_IO_UNREGISTERED == static_cast<int>(IoNotice::unregistered) &&
              EVH_IO_TIMEOUT == static_cast<int>(IoNotice::timeout) &&
              EVH_IO_ERROR == static_cast<int>(IoNotice::error));

// The runtime's event handler (started on first use), or an error code.
int handler_of(evh_runtime* rt, EventHandler*& out) noexcept {
  if (!valid(rt)) return EVH_EINVAL;
  auto eh = rt->rt->event_handler();
  if (!eh.ok()) return to_c(eh.error());
  out = *eh;
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

int evh_fd_add(evh_runtime* rt, int fd, evh_port_id port, uint32_t events,
               const evh_fd_options* options) {
  evh_fd_options o = EVH_FD_OPTIONS_INIT;
  if (int e = read_options(options, o); e != EVH_OK) return e;
  if ((events & ~kEventBits) != 0 || o.mode < EVH_FD_LEVEL || o.mode > EVH_FD_ONESHOT ||
      (o.flags & ~static_cast<unsigned>(EVH_FD_OWNED | EVH_FD_SHARED_ACCEPT)) != 0) {
    return EVH_EINVAL;
  }
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  evh::FdOptions fo;
  fo.mode = static_cast<evh::FdMode>(o.mode);
  fo.max_outstanding = o.max_outstanding;
  fo.sharing = (o.flags & EVH_FD_SHARED_ACCEPT) != 0 ? evh::FdSharing::accept_round_robin
                                                     : evh::FdSharing::exclusive;
  fo.owned = (o.flags & EVH_FD_OWNED) != 0;
  return to_c(eh->add_fd(fd, port_id(port), static_cast<evh::FdEvents>(events), fo));
}

int evh_fd_modify(evh_runtime* rt, int fd, evh_port_id port, uint32_t events) {
  if ((events & ~kEventBits) != 0) return EVH_EINVAL;
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  return to_c(eh->modify_fd(fd, port_id(port), static_cast<evh::FdEvents>(events)));
}

int evh_fd_remove(evh_runtime* rt, int fd, evh_port_id port) {
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  return to_c(eh->remove_fd(fd, port_id(port)));
}

int evh_fd_close(evh_runtime* rt, int fd, evh_port_id port) {
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  return to_c(eh->close_fd(fd, port_id(port)));
}

int evh_fd_return_tokens(evh_runtime* rt, int fd, evh_port_id port, uint32_t count) {
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  return to_c(eh->return_tokens(fd, port_id(port), count));
}

int evh_fd_accept(evh_runtime* rt, int listen_fd, evh_port_id port) {
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  auto fd = eh->accept(listen_fd, port_id(port));
  return fd.ok() ? *fd : to_c(fd.error());
}

int evh_port_set_timeout(evh_runtime* rt, evh_port_id port, int64_t deadline_ns) {
  if (deadline_ns < 0) return EVH_EINVAL;
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  // EventHandler::Clock is steady_clock: CLOCK_MONOTONIC, evh_now()'s clock.
  const evh::EventHandler::Clock::time_point deadline{std::chrono::nanoseconds(deadline_ns)};
  return to_c(eh->set_timeout(port_id(port), deadline));
}

int evh_port_clear_timeout(evh_runtime* rt, evh_port_id port) {
  evh::EventHandler* eh = nullptr;
  if (int e = handler_of(rt, eh); e != EVH_OK) return e;
  return to_c(eh->clear_timeout(port_id(port)));
}

}  // extern "C"
