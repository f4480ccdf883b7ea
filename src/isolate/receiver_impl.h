// ReceiverImpl: a port whose consumer is a plain thread blocking in receive().
//
// Deadlines are on the runtime's clock. On a manual clock a blocked receive() sleeps without a
// kernel timeout, registered as a waiter of the clock: a move wakes it to look at the time again
// (it registers before its last look at the clock, so a move in between is not missed).
//
// Wakeup protocol (the same shape as an isolate's): a producer pushes (seq_cst CAS on the
// queue's tail) and then loads `sleeping_` (seq_cst); the consumer stores sleeping_ = 1
// (seq_cst) and then re-checks the queues (seq_cst load of the tails) before it sleeps on the
// futex. One of the two sees the other, so a message is never left unnoticed while the consumer
// sleeps. Only a producer that finds sleeping_ == 1 and swaps it to 0 makes the wake syscall.
#pragma once

#include <evh/receiver.h>

#include <atomic>
#include <chrono>

#include "base/mpsc_queue.h"
#include "port/port.h"
#include "port/port_directory.h"
#include "sync/spin.h"
#include "timer/runtime_clock.h"

namespace evh::detail {

class ReceiverImpl final : public PortTarget, private ClockWaiter {
 public:
  // Opens the receiver's port in `ports` (which must outlive it); `spin`: how long receive()
  // polls before sleeping (RuntimeOptions::spin_before_park).
  ReceiverImpl(PortDirectory& ports, RuntimeClock clock, std::chrono::nanoseconds spin);

  void retain() noexcept override { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept override {
    // acq_rel: the last releaser sees every other holder's writes before destroying.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  bool enqueue(Message&& message, Priority priority) noexcept override;
  std::size_t enqueue_batch(std::span<Message> messages, Priority priority) noexcept override;

  PortId id() const noexcept { return id_; }
  Result<Message> receive(std::chrono::nanoseconds timeout);
  void close() noexcept;

 private:
  ~ReceiverImpl() = default;
  PopResult pop(Message& out) noexcept;
  Result<Message> receive_on_manual_clock(std::chrono::nanoseconds timeout);
  // Wakes a sleeping receive(), if any (seq_cst exchange: see the header's protocol).
  void wake_sleeper() noexcept;
  // ClockWaiter: a manual clock moved while receive() slept.
  void clock_moved() noexcept override { wake_sleeper(); }
  bool has_claimed() noexcept { return normal_.has_claimed() || oob_.has_claimed(); }
  // One look's pause while a slot is pending (claimed, not yet written).
  void wait_for_writer() noexcept;

  friend struct ReceiverTestAccess;  // tests: a slot claimed and not yet written

  PortDirectory& ports_;
  const RuntimeClock clock_;
  PortId id_;
  AdaptiveSpin spin_;
  std::atomic<std::uint32_t> refs_{1};  // the Receiver handle's
  std::atomic<std::uint32_t> sleeping_{0};
  bool closed_ = false;              // owner thread only
  std::uint32_t pending_spins_ = 0;  // owner thread only
  MpscQueue normal_;
  MpscQueue oob_;
};

}  // namespace evh::detail
