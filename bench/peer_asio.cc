// bench/peer_asio.cc — the Boost.Asio peer (peers.h), header-only, one io_context per run with
// a concurrency hint of 1 (one thread runs it), the way Asio's examples use it.
//   - messages: boost::asio::post() of one small handler per message; Asio gives no way to see
//     its scheduler wake up, so port_flood has no consumer_wakeups for asio;
//   - timers: one steady_timer per timer, expires_after() + async_wait(); a cancel completes
//     the wait with operation_aborted through the scheduler, so churn times include running
//     those handlers (the io_context is drained inside the measured phase);
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

std::int64_t ns_of(asio::steady_timer::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// steady_timer is std::chrono::steady_clock, i.e. CLOCK_MONOTONIC, as now_ns(): the deadline
// is the timer's own expiry(), now + delay at nanosecond resolution.
BatchOutcome timer_batch(const std::vector<std::int64_t>& delays) {
  const std::size_t n = delays.size();
  asio::io_context io(1);
  BatchOutcome o;
  o.late_ns.reserve(n);
  o.wakeups_known = false;
  const BatchMeter meter;
  std::vector<asio::steady_timer> timers;
  timers.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    asio::steady_timer& t = timers.emplace_back(io);
    t.expires_after(std::chrono::nanoseconds(delays[i]));
    t.async_wait([&o, deadline = ns_of(t.expiry())](const boost::system::error_code& ec) {
      if (!ec) record_fire(o, deadline);
    });
  }
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

// How many start+cancel pairs of the immediate phase run between drains: a running loop would
// run the aborted handlers as it goes rather than let a million pile up.
constexpr std::uint64_t kDrainEvery = 1024;

ChurnTimes timer_churn(std::uint64_t n, const std::vector<std::uint32_t>& order,
                       ChurnPhases phases) {
  asio::io_context io(1);
  std::vector<asio::steady_timer> timers;
  timers.reserve(phases.bulk ? n : 1);
  for (std::uint64_t i = 0; i < (phases.bulk ? n : 1); ++i) timers.emplace_back(io);
  const auto never = [](const boost::system::error_code&) {};
  ChurnTimes t;
  if (phases.bulk) {
    std::int64_t t0 = now_ns();
    for (auto& timer : timers) {
      timer.expires_after(10s);
      timer.async_wait(never);
    }
    t.start_ns = static_cast<double>(now_ns() - t0);
    t0 = now_ns();
    for (const std::uint32_t i : order) timers[i].cancel();
    drain(io);
    t.cancel_ns = static_cast<double>(now_ns() - t0);
  }
  if (phases.immediate) {
    asio::steady_timer& one = timers[0];
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      one.expires_after(10s);
      one.async_wait(never);
      one.cancel();
      if ((i + 1) % kDrainEvery == 0) drain(io);
    }
    drain(io);
    t.immediate_ns = static_cast<double>(now_ns() - t0);
  }
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
