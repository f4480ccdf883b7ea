// IsolateTimers: one isolate's timers and their wakeup bookkeeping, created on its first timer.
#pragma once

#include <evh/message.h>
#include <evh/timer.h>

#include <cstdint>
#include <optional>

#include "timer/timer_set.h"

namespace evh::detail {

class ThreadPool;

// An isolate's timers: the set, the internal port their wakeups arrive on (an extra port of the
// isolate, never delivered to the handler), the deadline handed to the event handler, and
// whether a self-post for zero-delay timers is queued.
struct IsolateTimers {
  explicit IsolateTimers(std::int64_t now_ns) : set(now_ns) {}
  TimerSet set;
  PortId port = PortId::none;
  // Who keeps the next deadline: the isolate's pool (the shared one or a dedicated runner),
  // whose idle worker waits for it itself; else (an embedder's runner) the event handler.
  ThreadPool* pool = nullptr;
  std::optional<std::int64_t> registered;
  bool self_post_pending = false;
  TimerStats reported;  // counters already added to the runtime's
  // The isolate's cached "now" (Isolate::cached_now): read at most once per message (or per
  // timer callback), like libuv's loop time, for callers who arm many timers at absolute
  // deadlines and accept a reading that may be a little old.
  std::int64_t now_ns = 0;
  std::uint64_t now_stamp = ~std::uint64_t{0};
};

}  // namespace evh::detail
