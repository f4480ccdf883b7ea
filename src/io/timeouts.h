// IoTimeouts: the event handler's deadlines and its one native timer.
//
// Two kinds of deadline share the poller's one timer: one timeout per port (SEMANTICS 16: an
// isolate hands down only its earliest), posted to the port as a `timeout` notice once it has
// passed; and one accept back-off per fd (see Registrations::backoff), ended by the
// registrations. Each lives in a DeadlineHeap: set, replace and clear are O(log n), the earliest
// is O(1), and one expiry serves every due entry — where Dart rescans a list per port. The native
// timer is re-armed only when the earliest deadline changes (at most one timerfd_settime per loop
// pass; none after an expiry that empties both heaps).
//
// Threads: the I/O thread only, except the counters, which any thread may read.
#pragma once

#include <evh/message.h>

#include <atomic>
#include <cstdint>
#include <optional>

#include "base/mono_time.h"
#include "io/delivery.h"
#include "io/poller.h"
#include "timer/deadline_heap.h"

namespace evh::detail {

class IoTimeouts {
 public:
  // `port`'s one deadline (nanoseconds on the runtime's clock), replacing an earlier one.
  void set_timeout(PortId port, std::int64_t deadline_ns) {
    timeouts_.set(static_cast<std::uint64_t>(port), deadline_ns);
  }
  void clear_timeout(PortId port) noexcept { timeouts_.erase(static_cast<std::uint64_t>(port)); }
  // `fd`'s back-off ends at `until_ns` (CLOCK_MONOTONIC).
  void set_backoff(int fd, std::int64_t until_ns) {
    backoffs_.set(static_cast<std::uint64_t>(fd), until_ns);
  }
  void clear_backoff(int fd) noexcept { backoffs_.erase(static_cast<std::uint64_t>(fd)); }

  // Posts a `timeout` to every port whose deadline is not after `now_ns`: never early
  // (SEMANTICS 11), and one pass serves every due port.
  void expire_timeouts(std::int64_t now_ns, Delivery& delivery) noexcept;
  // The next fd whose back-off is over at `now_ns`, removed; nothing when none is.
  std::optional<int> pop_ended_backoff(std::int64_t now_ns) noexcept {
    if (backoffs_.empty() || backoffs_.top().deadline > now_ns) return std::nullopt;
    return static_cast<int>(backoffs_.pop().key);
  }

  // Arms `poller`'s deadline to the earliest entry, or disarms it, when that changed since the
  // native timer was last armed. A failure is reported and retried on the next call. With a
  // manual runtime clock the port timeouts are not on CLOCK_MONOTONIC: only back-offs arm it
  // (`TimeoutClock::manual`), and the timeouts expire when the clock moves.
  enum class TimeoutClock : std::uint8_t { monotonic, manual };
  void arm(Poller& poller, TimeoutClock clock) noexcept;
  // The native timer fired: the poller disarmed it.
  void native_fired() noexcept { armed_.reset(); }
  // Shutdown: pending timeouts are dropped, unposted.
  void clear() noexcept;

  std::uint64_t fired() const noexcept { return fired_.load(std::memory_order_relaxed); }
  std::uint64_t arms() const noexcept { return arms_.load(std::memory_order_relaxed); }

 private:
  DeadlineHeap timeouts_;              // key: PortId
  DeadlineHeap backoffs_;              // key: fd
  std::optional<std::int64_t> armed_;  // what the native timer is armed to
  std::atomic<std::uint64_t> fired_{0};
  std::atomic<std::uint64_t> arms_{0};
};

}  // namespace evh::detail
