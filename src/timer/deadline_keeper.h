// DeadlineKeeper: keeps at most one deadline per key and, once a deadline has passed, hands it
// to the key's owner — the interface an isolate hands its next timer wakeup to. The thread pool
// implements it (an idle worker waits for the earliest deadline itself), and so does the event
// handler (its native timer), which keeps the wakeups of isolates on an embedder's runner.
// Deadlines are nanoseconds on the runtime's clock.
//
// Threads: both methods may be called from any thread and never block.
#pragma once

#include <evh/error.h>

#include <cstdint>

namespace evh::detail {

// How close to its deadline a wakeup must come. `exact`: the deadline is an exact timer's; the
// keeper may wake a little early and poll up to it, so that a late kernel wake-up does not make
// the timer late.
enum class WakeupPrecision : std::uint8_t { slack, exact };

class DeadlineKeeper {
 public:
  // Sets `key`'s deadline, replacing an earlier one. The owner hears of it once it has passed
  // (never before). An error (the keeper is shutting down, no memory) leaves nothing set.
  virtual Status set_deadline(std::uint64_t key, std::int64_t deadline_ns,
                              WakeupPrecision precision) noexcept = 0;
  // Forgets `key`'s deadline, if it has one.
  virtual void clear_deadline(std::uint64_t key) noexcept = 0;

 protected:
  ~DeadlineKeeper() = default;
};

}  // namespace evh::detail
