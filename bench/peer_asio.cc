// bench/peer_asio.cc — the Boost.Asio peer (peers.h), header-only, one io_context per run with
// a concurrency hint of 1 (one thread runs it), the way Asio's examples use it.
//   - messages: boost::asio::post() of one small handler per message; Asio gives no way to see
//     its scheduler wake up, so port_flood has no consumer_wakeups for asio;
//   - timers: one steady_timer per timer, expires_at() (the benchmark's absolute deadline) +
//     async_wait(); a cancel completes the wait with operation_aborted through the scheduler,
//     so churn times include running those handlers (the io_context is polled inside the
//     measured phase, every 256 operations);
//   - fds: one posix::stream_descriptor per fd, async_wait(wait_read) re-armed from its handler
//     (each re-arm is an epoll_ctl(MOD) inside Asio); descriptors are released, not closed.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "measure.h"
#include "peers.h"
#include "timer_common.h"

namespace evh::bench {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// ---- messages --------------------------------------------------------------------------------

class AsioMessageLoop final : public PeerMessageLoop {
 public:
  explicit AsioMessageLoop(std::function<void(std::uint64_t)> on_message)
      : on_message_(std::move(on_message)), thread_([this] { io_.run(); }) {}
  ~AsioMessageLoop() override {
    io_.stop();
    thread_.join();
  }

  void post(std::uint64_t value) override {
    asio::post(io_, [this, value] { on_message_(value); });
  }
  std::optional<std::uint64_t> wakeups() const override { return std::nullopt; }
  void reset_wakeups() override {}

 private:
  std::function<void(std::uint64_t)> on_message_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread thread_;
};

std::unique_ptr<PeerMessageLoop> start_message_loop(std::function<void(std::uint64_t)> f) {
  return std::make_unique<AsioMessageLoop>(std::move(f));
}

// ---- timers ----------------------------------------------------------------------------------

// steady_timer is std::chrono::steady_clock, i.e. CLOCK_MONOTONIC, as now_ns(): expires_at()
// takes the benchmark's absolute deadline as it is, at nanosecond resolution.
BatchOutcome timer_batch(BatchBook& book) {
  const std::size_t n = book.count();
  asio::io_context io(1);
  BatchOutcome o;
  o.wakeups_known = false;
  const BatchMeter meter;
  UntouchedArray<asio::steady_timer> timers(n);
  book.begin_arming();
  for (std::size_t i = 0; i < n; ++i) {
    asio::steady_timer& t = timers.construct(i, io);
    t.expires_at(asio::steady_timer::time_point(std::chrono::nanoseconds(book.deadline(i))));
    t.async_wait([&book, i](const boost::system::error_code& ec) {
      if (!ec) book.fired(i);
    });
  }
  book.end_arming();
  meter.armed(o);
  io.run();  // returns once every wait has completed
  meter.done(o);
  return o;
}

// Runs every handler that is ready (the cancelled waits) and returns.
void drain(asio::io_context& io) {
  io.restart();
  io.poll();
}

// A cancel completes the wait with operation_aborted through the scheduler. A running loop runs
// those handlers as it goes, so the churn polls every ChurnClock::kTick operations and at the end
// of each phase, inside the timed phase (as the peer harness does).
ChurnTimes timer_churn(std::uint64_t n, const std::vector<std::uint32_t>& order,
                       ChurnPhases phases) {
  asio::io_context io(1);
  std::vector<asio::steady_timer> timers;
  timers.reserve(phases.bulk ? n : 1);
  for (std::uint64_t i = 0; i < (phases.bulk ? n : 1); ++i) timers.emplace_back(io);
  const auto never = [](const boost::system::error_code&) {};
  const auto at = [](std::int64_t ns) {
    return asio::steady_timer::time_point(std::chrono::nanoseconds(ns));
  };
  ChurnTimes t;
  const PhaseMeter phase;
  ChurnClock clock;
  if (phases.bulk) {
    std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      timers[i].expires_at(at(clock.deadline()));
      timers[i].async_wait(never);
      clock.tick(i);
      if ((i + 1) % ChurnClock::kTick == 0) drain(io);
    }
    drain(io);
    t.start_ns = static_cast<double>(now_ns() - t0);
    t0 = now_ns();
    for (std::uint64_t k = 0; k < n; ++k) {
      timers[order[k]].cancel();
      if ((k + 1) % ChurnClock::kTick == 0) drain(io);
    }
    drain(io);
    t.cancel_ns = static_cast<double>(now_ns() - t0);
  }
  if (phases.immediate) {
    asio::steady_timer& one = timers[0];
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      one.expires_at(at(clock.deadline()));
      one.async_wait(never);
      one.cancel();
      clock.tick(i);
      if ((i + 1) % ChurnClock::kTick == 0) drain(io);
    }
    drain(io);
    t.immediate_ns = static_cast<double>(now_ns() - t0);
  }
  t.cpu_ms = phase.cpu_ms();
  return t;
}

// ---- fds -------------------------------------------------------------------------------------

struct Watch {
  asio::posix::stream_descriptor descriptor;
  int fd;
  const std::function<void(int)>* on_readable;
};

void arm(Watch& w) {
  w.descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                          [&w](const boost::system::error_code& ec) {
                            if (ec) return;
                            (*w.on_readable)(w.fd);
                            arm(w);
                          });
}

void serve_fds(std::span<const int> fds, const std::function<void(int)>& on_readable,
               const std::function<void()>& client) {
  asio::io_context io(1);
  std::vector<Watch> watches;
  watches.reserve(fds.size());
  for (const int fd : fds) {
    watches.push_back({asio::posix::stream_descriptor(io, fd), fd, &on_readable});
  }
  for (Watch& w : watches) arm(w);
  std::thread thread([&io] { io.run(); });
  std::exception_ptr error;
  try {
    client();
  } catch (...) {
    error = std::current_exception();
  }
  io.stop();
  thread.join();
  for (Watch& w : watches) (void)w.descriptor.release();  // the caller owns the fds
  if (error) std::rethrow_exception(error);
}

}  // namespace

const PeerImpl& asio_peer() {
  static const PeerImpl impl{"asio", &start_message_loop, &timer_batch, &timer_churn, &serve_fds};
  return impl;
}

}  // namespace evh::bench
