// Delivery: how the event handler's parts hand IoEvents to ports, and the count of readiness
// notices handed over. The ports are the runtime's, reached through its PortDirectory.
//
// Threads: the I/O thread posts; `notifications()` may be read from any thread.
#pragma once

#include <evh/event_handler.h>

#include <atomic>
#include <cstdint>
#include <span>

#include "port/port.h"
#include "port/port_directory.h"

namespace evh::detail {

class Delivery {
 public:
  explicit Delivery(PortDirectory& ports) noexcept : ports_(ports) {}

  // What became of a posted event. `gone`: the port is gone for good (closed or unknown); a
  // runtime that is shutting down does not count as gone — it shuts the handler down, which
  // ends the registration then. `dropped`: the port's queue could not grow (out of memory); the
  // notice is lost and nobody can be told (README, "Guarantees and limits").
  enum class Posted : std::uint8_t { delivered, gone, dropped };
  Posted post(PortId port, const IoEvent& event) noexcept {
    const Status s = ports_.post(port, to_message(event));
    if (s && event.notice == IoNotice::ready) {
      notifications_.fetch_add(1, std::memory_order_relaxed);
    }
    return outcome(s);
  }
  // Notices for one port as one batch (a teardown's final notices): the port's isolate is
  // scheduled once for all of them, not woken once each. The messages are consumed.
  Posted post_batch(PortId port, std::span<Message> messages) noexcept {
    return outcome(ports_.post_batch(port, messages));
  }
  // A readiness handed to a reader (FdReader) rather than posted: counted all the same.
  void count_ready() noexcept { notifications_.fetch_add(1, std::memory_order_relaxed); }
  // A command on `fd` failed on the I/O thread: tell `port` the errno.
  void post_error(PortId port, int fd, int error) noexcept {
    IoEvent ev;
    ev.notice = IoNotice::error;
    ev.fd = fd;
    ev.error = error;
    (void)post(port, ev);
  }
  // The final notice of a registration (`closed` or `unregistered`).
  void post_final(PortId port, int fd, IoNotice notice) noexcept {
    IoEvent ev;
    ev.notice = notice;
    ev.fd = fd;
    (void)post(port, ev);
  }
  // True while `port` is open (a registration for a closed port would never end).
  bool port_open(PortId port) noexcept {
    PortState* p = ports_.acquire(port);
    if (p == nullptr) return false;
    p->release();
    return true;
  }

  PortDirectory& ports() noexcept { return ports_; }
  std::uint64_t notifications() const noexcept {
    return notifications_.load(std::memory_order_relaxed);
  }

 private:
  static Posted outcome(const Status& s) noexcept {
    if (s) return Posted::delivered;
    if (s.error() == std::errc::not_enough_memory) return Posted::dropped;
    // Shutting down: counted as delivered, as ever (the handler ends every registration next).
    return s.error() == Errc::shutting_down ? Posted::delivered : Posted::gone;
  }

  PortDirectory& ports_;
  std::atomic<std::uint64_t> notifications_{0};
};

}  // namespace evh::detail
