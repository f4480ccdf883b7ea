// evh/receiver.h — a port that a plain (non-isolate) thread receives from by blocking.
//
// An embedder thread — a Rust bridge thread, a test driver, a native worker — opens a Receiver
// to get replies from isolates. `receive()` blocks with a timeout; it spins briefly before
// sleeping (`RuntimeOptions::spin_before_park`) so that quick replies cost no futex round trip.
//
// Threads: `id()` may be read anywhere; `receive`, `try_receive` and `close` must be called by one
// thread at a time (the owner). Posting to the receiver's id works from any thread. Destroying
// the Receiver closes it and releases every queued message exactly once, on the calling thread.
// A Receiver must be destroyed before its Runtime.
#pragma once

#include <evh/error.h>
#include <evh/export.h>
#include <evh/message.h>

#include <chrono>

namespace evh {

namespace detail {
class ReceiverImpl;
}

class Runtime;

class EVH_API Receiver {
 public:
  Receiver() noexcept = default;  // empty: receive() says port_closed; Runtime::open_receiver()
  Receiver(Receiver&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
  Receiver& operator=(Receiver&& o) noexcept;
  ~Receiver();

  PortId id() const noexcept;
  // The next message, OOB first. `Errc::timed_out` when none arrived in time,
  // `Errc::port_closed` after `close()`.
  Result<Message> receive(std::chrono::nanoseconds timeout);
  // The next message if one is already queued, else `Errc::timed_out`.
  Result<Message> try_receive();
  // Closes the port: later posts fail; queued messages are released now.
  void close() noexcept;

 private:
  friend class Runtime;  // opens them
  explicit Receiver(detail::ReceiverImpl* impl) noexcept : impl_(impl) {}
  detail::ReceiverImpl* impl_ = nullptr;
};

}  // namespace evh
