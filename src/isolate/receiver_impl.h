// ReceiverImpl: a port whose consumer is a plain thread blocking in receive().
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

namespace evh::detail {

class ReceiverImpl final : public PortTarget {
 public:
  // Opens the receiver's port in `ports` (which must outlive it); `spin`: how long receive()
  // polls before sleeping (RuntimeOptions::spin_before_park).
  ReceiverImpl(PortDirectory& ports, std::chrono::nanoseconds spin);

  void retain() noexcept override { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept override {
    // acq_rel: the last releaser sees every other holder's writes before destroying.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  void enqueue(Message&& message, Priority priority) noexcept override;

  PortId id() const noexcept { return id_; }
  Result<Message> receive(std::chrono::nanoseconds timeout);
  void close() noexcept;

 private:
  ~ReceiverImpl() = default;
  PopResult pop(Message& out) noexcept;
  bool has_claimed() noexcept { return normal_.has_claimed() || oob_.has_claimed(); }

  PortDirectory& ports_;
  PortId id_;
  AdaptiveSpin spin_;
  std::atomic<std::uint32_t> refs_{1};  // the Receiver handle's
  std::atomic<std::uint32_t> sleeping_{0};
  bool closed_ = false;  // owner thread only
  MpscQueue normal_;
  MpscQueue oob_;
};

}  // namespace evh::detail
