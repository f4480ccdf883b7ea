// Registrations: the event handler's fd registrations and what the kernel is told about them.
//
// A registration is identified by (fd, port). An fd has one FdEntry holding one Registration, or
// several for a listening socket shared round-robin; each entry is watched by the poller under a
// token carrying a generation, so readiness collected before a registration ended (or before
// its fd number was reused) never reaches the new one. An index port → fds makes ending every
// registration of a closed port O(its fds).
//
// Flow control (Dart's token scheme): each registration has a window of notifications not yet
// returned; the kernel is asked to watch the union of the interests of the registrations that
// are armed and have room, and the fd is parked (no interest, oneshot) when none has — so a slow
// receiver is neither flooded nor the cause of a busy loop. Any (re)arm reports a condition that
// already holds (SEMANTICS 17).
//
// A registration made with a reader (FdReader, io/commands.h) hands its readiness to the reader
// on the driving thread; its notices (error, the final one) still go to its port.
//
// Each method runs one command (or one event) on the event handler's I/O thread, and reports to
// ports through Delivery; none blocks. `size()` may be read from any thread.
#pragma once

#include <evh/event_handler.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "io/commands.h"
#include "io/delivery.h"
#include "io/poller.h"
#include "io/sys.h"
#include "io/timeouts.h"

namespace evh::detail {

class Registrations {
 public:
  Registrations(Poller& poller, Sys& sys, Delivery& delivery, IoTimeouts& timeouts) noexcept
      : poller_(poller), sys_(sys), delivery_(delivery), timeouts_(timeouts) {}
  Registrations(const Registrations&) = delete;
  Registrations& operator=(const Registrations&) = delete;

  void add(const Command& c) noexcept;
  void modify(const Command& c) noexcept;
  // remove_fd (`unregistered`) or close_fd (`closed`): the registration's final notice.
  void end(const Command& c, IoNotice final_notice) noexcept;
  void return_tokens(const Command& c) noexcept;
  // accept() ran out of fds or memory: park the registration for a back-off.
  void back_off(const Command& c) noexcept;
  // `fd`'s back-off is over: arm it again.
  void end_backoff(int fd) noexcept;
  // The port has closed: end its registrations without notices (owned fds are closed).
  void drop_port(PortId port) noexcept;
  // Readiness from the poller, to the registration(s) the token names.
  void dispatch(const PollEvent& event) noexcept;
  // Shutdown: every registration ends with its final notice.
  void teardown() noexcept;

  std::uint64_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  struct Registration {
    PortId port = PortId::none;
    FdEvents interest = FdEvents::none;
    std::uint32_t window = 0;  // 0: unlimited
    std::uint32_t outstanding = 0;
    bool armed = true;           // false after a oneshot report, until modify
    FdReader* reader = nullptr;  // readiness is handed to it instead of posted to `port`

    bool has_room() const noexcept { return window == 0 || outstanding < window; }
  };
  struct FdEntry {
    int fd = -1;
    std::uint32_t generation = 0;
    FdMode mode = FdMode::level;
    FdSharing sharing = FdSharing::exclusive;
    FdOwnership ownership = FdOwnership::borrowed;  // owned: closed when the entry ends
    std::vector<Registration> regs;
    std::size_t next = 0;  // round-robin cursor (shared fds)
    // What the kernel was last told: armed for `kernel_interest`, or parked.
    bool kernel_armed = true;
    FdEvents kernel_interest = FdEvents::none;
    bool backing_off = false;
    std::chrono::nanoseconds backoff{0};
    std::int64_t backoff_until_ns = 0;  // CLOCK_MONOTONIC

    std::uint64_t token() const noexcept {
      return (std::uint64_t{generation} << 32) | static_cast<std::uint32_t>(fd);
    }
  };
  // When sync_kernel() tells the kernel: only on a change, or always (modify_fd's re-check of
  // conditions that already hold).
  enum class Rearm : std::uint8_t { if_changed, always };

  Registration* find(FdEntry& e, PortId port) noexcept;
  void sync_kernel(FdEntry& e, Rearm rearm = Rearm::if_changed) noexcept;
  void drop_entry(int fd) noexcept;
  // Removes the registration at `index` of `e` without a notice; ends the entry (closing an
  // owned fd) when it was the last. False when the entry is gone.
  bool remove_registration(FdEntry& e, std::size_t index) noexcept;
  void index_add(PortId port, int fd);
  void index_remove(PortId port, int fd) noexcept;
  // Closes an fd the handler owns. Once only, whatever it returns: on Linux the fd is released
  // even when close() fails with EINTR, and a second close could close another file.
  void close_owned(int fd) noexcept { (void)sys_.close(fd); }
  void update_size() noexcept { size_.store(fds_.size(), std::memory_order_relaxed); }

  Poller& poller_;
  Sys& sys_;
  Delivery& delivery_;
  IoTimeouts& timeouts_;
  std::unordered_map<int, FdEntry> fds_;
  // Which fds each port has registrations on: what drop_port ends.
  std::unordered_map<PortId, std::vector<int>> port_fds_;
  std::uint32_t next_generation_ = 1;
  std::atomic<std::uint64_t> size_{0};
};

}  // namespace evh::detail
