#include <sched.h>

#include <optional>

#include "base/mono_time.h"
#include "isolate/receiver_impl.h"
#include "sync/futex.h"
#include "sync/spin.h"

namespace evh {
namespace detail {

ReceiverImpl::ReceiverImpl(PortDirectory& ports, RuntimeClock clock, std::chrono::nanoseconds spin)
    : ports_(ports), clock_(clock), spin_(spin) {
  PortState* port = ports_.open(*this);  // retains this
  id_ = port->id();
  port->release();  // the directory owns the port
}

bool ReceiverImpl::enqueue(Message&& message, Priority priority) noexcept {
  if (!(priority == Priority::oob ? oob_ : normal_).push(std::move(message))) return false;
  wake_sleeper();
  return true;
}

std::size_t ReceiverImpl::enqueue_batch(std::span<Message> messages, Priority priority) noexcept {
  if (messages.empty()) return 0;
  const std::size_t queued = (priority == Priority::oob ? oob_ : normal_).push_batch(messages);
  if (queued != 0) wake_sleeper();
  return queued;
}

void ReceiverImpl::wake_sleeper() noexcept {
  // seq_cst: pairs with the consumer's seq_cst store of sleeping_ (see the header).
  if (sleeping_.load(std::memory_order_seq_cst) != 0 &&
      sleeping_.exchange(0, std::memory_order_seq_cst) != 0) {
    futex_wake(sleeping_, 1);
  }
}

void ReceiverImpl::wait_for_writer() noexcept {
  // A writer mid-slot is a few instructions from done, unless it lost its CPU: then spinning
  // would keep it off a shared core, so every 64th look gives the CPU away.
  if ((++pending_spins_ & 63) == 0) {
    sched_yield();
  } else {
    cpu_relax();
  }
}

PopResult ReceiverImpl::pop(Message& out) noexcept {
  PopResult r = oob_.pop(out);
  if (r == PopResult::item) return r;
  PopResult n = normal_.pop(out);
  return n == PopResult::empty ? r : n;
}

Result<Message> ReceiverImpl::receive(std::chrono::nanoseconds timeout) {
  using Clock = std::chrono::steady_clock;
  if (timeout.count() < 0) return Errc::invalid_argument;
  if (clock_.manual()) return receive_on_manual_clock(timeout);
  const auto deadline = mono_after(Clock::now(), timeout);  // huge: no limit
  for (;;) {
    if (closed_) return Errc::port_closed;
    Message m;
    switch (pop(m)) {
      case PopResult::item:
        return m;
      case PopResult::pending:
        // A producer claimed the next slot and is writing it; it may have been preempted
        // there for as long as the scheduler likes, so the deadline still holds.
        if (Clock::now() >= deadline) return Errc::timed_out;
        wait_for_writer();
        continue;
      case PopResult::empty:
        break;
    }
    // Poll briefly: a reply that comes within the spin window costs no futex round trip.
    const auto window = spin_.window();
    if (window.count() > 0) {
      if (poll_until(std::min(deadline, mono_after(Clock::now(), window)),
                     [this] { return has_claimed(); })) {
        spin_.hit();
        continue;
      }
      spin_.miss();
    }
    const auto now = Clock::now();
    if (now >= deadline) return Errc::timed_out;
    sleeping_.store(1, std::memory_order_seq_cst);
    if (has_claimed()) {
      sleeping_.store(0, std::memory_order_relaxed);
      continue;
    }
    futex_wait(sleeping_, 1, deadline - now);
    sleeping_.store(0, std::memory_order_relaxed);
  }
}

Result<Message> ReceiverImpl::receive_on_manual_clock(std::chrono::nanoseconds timeout) {
  const std::int64_t now0 = clock_.now_ns();
  const std::int64_t deadline = saturating_add(now0, timeout.count());
  std::optional<ClockWaiterScope> registered;  // from the first sleep until this returns
  for (;;) {
    if (closed_) return Errc::port_closed;
    Message m;
    switch (pop(m)) {
      case PopResult::item:
        return m;
      case PopResult::pending:
        if (clock_.now_ns() >= deadline) return Errc::timed_out;  // as above
        wait_for_writer();
        continue;
      case PopResult::empty:
        break;
    }
    // The spin window is real time (it is about the CPU); the deadline is the clock's.
    const auto window = spin_.window();
    if (window.count() > 0 && clock_.now_ns() < deadline) {
      if (poll_until(mono_after(std::chrono::steady_clock::now(), window),
                     [this] { return has_claimed(); })) {
        spin_.hit();
        continue;
      }
      spin_.miss();
    }
    // Registered before the last look at the clock: a move after that look wakes the sleep.
    if (!registered) registered.emplace(clock_, static_cast<ClockWaiter&>(*this));
    // seq_cst store, then the clock's seq_cst load (ManualClock::now): with the mover's seq_cst
    // store of the time and its exchange of sleeping_ (clock_moved), either this look sees the
    // new time, or the mover sees that this sleeps and wakes it.
    sleeping_.store(1, std::memory_order_seq_cst);
    if (has_claimed() || clock_.now_ns() >= deadline) {
      sleeping_.store(0, std::memory_order_relaxed);
      if (has_claimed()) continue;
      return Errc::timed_out;
    }
    futex_wait(sleeping_, 1, std::chrono::nanoseconds(-1));
    sleeping_.store(0, std::memory_order_relaxed);
  }
}

void ReceiverImpl::close() noexcept {
  if (closed_) return;
  closed_ = true;
  ports_.close(id_);
  // Producers that passed the port check before the close may still push; what they push after
  // this drain is released by the queues' destructors when the last reference goes.
  normal_.drain();
  oob_.drain();
}

}  // namespace detail

Receiver& Receiver::operator=(Receiver&& o) noexcept {
  Receiver old(std::move(o));
  std::swap(impl_, old.impl_);
  return *this;  // `old` closes what this held
}

Receiver::~Receiver() {
  if (impl_ != nullptr) {
    impl_->close();
    impl_->release();
  }
}

PortId Receiver::id() const noexcept {
  return impl_ != nullptr ? impl_->id() : PortId::none;
}

Result<Message> Receiver::receive(std::chrono::nanoseconds timeout) {
  if (impl_ == nullptr) return Errc::port_closed;
  return impl_->receive(timeout);
}

Result<Message> Receiver::try_receive() {
  return receive(std::chrono::nanoseconds(0));
}

void Receiver::close() noexcept {
  if (impl_ != nullptr) impl_->close();
}

}  // namespace evh
