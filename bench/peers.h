// bench/peers.h — the peer event loops evh is compared with: libuv, Boost.Asio and libevent.
//
// Each peer lives in its own file (peer_libuv.cc, peer_asio.cc, peer_libevent.cc), built only
// when CMake found the library (EVH_BENCH_HAVE_LIBUV, _ASIO, _LIBEVENT, decided in
// bench/CMakeLists.txt and tested in peers.cc only). A peer offers the few loop mechanics the
// workloads need; the workload files keep the measuring code, so every impl of a workload is
// measured by the same lines (the round-trip loop, the fd writer, the metric names).
//
// Each function here is what a competent user of that library would write for the job; the
// comment at each implementation says which API it uses and why.
//
// Threads: each function is called from the suite's thread, one at a time; a peer starts the
// threads it needs and joins them before it returns.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "timer_common.h"

namespace evh::bench {

// A peer's loop running on a thread of its own, fed from other threads. The destructor stops
// the loop and joins its thread; messages still queued then are dropped.
class PeerMessageLoop {
 public:
  virtual ~PeerMessageLoop() = default;
  // Any thread but the loop's. The loop calls `on_message(value)` for each value, in post order.
  virtual void post(std::uint64_t value) = 0;
  // How many times the loop woke up to take messages, when the peer can tell (the counterpart
  // of raw's blocking read() returns); empty when the library gives no way to observe it.
  virtual std::optional<std::uint64_t> wakeups() const = 0;
  // Zeroes the wakeup count; call only while no message is in flight.
  virtual void reset_wakeups() = 0;
};

struct PeerImpl {
  std::string_view name;  // the impl name of BENCHMARKS.md: "libuv", "asio", "libevent"

  // Starts the loop; `on_message` runs on the loop's thread and must outlive the loop.
  std::unique_ptr<PeerMessageLoop> (*start_message_loop)(
      std::function<void(std::uint64_t)> on_message);

  // timer_batch, on the calling thread, following timer_common.h: allocates (without touching)
  // one timer per entry of `book`, starts a BatchMeter, arms each timer between the book's
  // begin_arming() and end_arming() for book.deadline(i), calls book.fired(i) from its
  // callback, runs the loop until all fired, and fills every field of BatchOutcome the library
  // lets it measure (`wakeups_known` says whether loop wakeups could be counted).
  BatchOutcome (*timer_batch)(BatchBook& book);

  // timer_churn: `bulk` starts n timers at now + 10 s (ChurnClock) and cancels them in
  // `cancel_order`; `immediate` starts and cancels one timer n times. Times in ns over each
  // phase, and the process CPU over all of them.
  ChurnTimes (*timer_churn)(std::uint64_t n, const std::vector<std::uint32_t>& cancel_order,
                            ChurnPhases phases);

  // fd workloads: registers every fd for readability on the peer's loop, runs the loop on a
  // thread of its own, calls `on_readable(fd)` from the loop each time one is readable (the
  // callback reads it empty), and runs `client()` on the calling thread once every fd is
  // registered. When `client` returns (or throws), stops the loop and unregisters every fd.
  void (*serve_fds)(std::span<const int> fds, const std::function<void(int)>& on_readable,
                    const std::function<void()>& client);

  // process_spawn (null for a peer without a process API): `spawn_true` starts `count`
  // /bin/true, `in_flight` at a time (a new one as soon as one is reaped), and returns the ns
  // from the first start to the last reap; `stream_cat` starts /bin/cat with `stdin_fd` as its
  // stdin (the peer dups it; the caller closes its own), reads cat's stdout until end of file,
  // reaps cat and returns the bytes read.
  std::int64_t (*spawn_true)(std::uint64_t count, unsigned in_flight) = nullptr;
  std::uint64_t (*stream_cat)(int stdin_fd) = nullptr;
};

// The peers of this build, in column order: libuv, asio, libevent (those found at build time).
const std::vector<const PeerImpl*>& built_peers();
// Null when `name` is not a peer of this build.
const PeerImpl* find_peer(std::string_view name);
// `base` followed by the names of the peers of this build: a workload's impl list.
std::vector<std::string> with_peers(std::vector<std::string> base);
// The peer named `impl`; throws BenchError when there is none.
const PeerImpl& peer(std::string_view impl);

// Each peer file defines one of these; only those built are referenced (peers.cc).
const PeerImpl& libuv_peer();
const PeerImpl& asio_peer();
const PeerImpl& libevent_peer();

}  // namespace evh::bench
