// bench/messaging_bench.cc — message round trips and throughput: thread_pingpong, port_flood and
// isolate_pingpong (BENCHMARKS.md), for evh and for the raw floor (raw_floor.h).

#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/receiver.h>
#include <evh/runtime.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "peers.h"
#include "raw_floor.h"
#include "workloads.h"

namespace evh::bench {
namespace {

using namespace std::chrono_literals;

// A reply slower than this is a lost message, not a latency: the cell fails.
constexpr auto kReplyTimeout = 10s;
// Bound on a whole measured phase that reports only at its end (flood, isolate ping-pong).
constexpr auto kPhaseTimeout = 120s;

// Values that never occur as a sequence number.
constexpr std::uint64_t kStop = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kPing = kStop - 1;
constexpr std::uint64_t kStart = kStop - 2;
constexpr std::uint64_t kFailed = kStop - 3;

struct PingpongSize {
  std::uint64_t warmup;
  std::uint64_t count;
};

PingpongSize pingpong_size(Size size) {
  if (size == Size::quick) return {200, 10'000};
  return {2'000, 100'000};
}

std::uint64_t flood_size(Size size) {
  return size == Size::quick ? 100'000 : 1'000'000;
}

void rtt_metrics(RunResult& out, std::vector<std::int64_t>& samples) {
  add_latency_metrics(out, "rtt", "", samples, {{50, "p50"}, {99, "p99"}, {99.9, "p999"}});
}

void check_echo(std::uint64_t got, std::uint64_t want) {
  if (got != want) {
    throw BenchError("reply " + std::to_string(got) + " where " + std::to_string(want) +
                     " was expected");
  }
}

// ---- raw: two plain threads, one EventfdQueue per direction -------------------------------

// Echoes every value from `in` to `out` on its own thread until it sees kStop. Joined on
// destruction, also when the measuring side throws.
class RawEchoThread {
 public:
  RawEchoThread(EventfdQueue& in, EventfdQueue& out)
      : in_(in), thread_([&in, &out] {
          for (;;) {
            const std::uint64_t v = in.pop();
            if (v == kStop) return;
            out.push(v);
          }
        }) {}
  ~RawEchoThread() {
    in_.push(kStop);
    thread_.join();
  }

 private:
  EventfdQueue& in_;
  std::thread thread_;
};

// The measuring side of a raw ping-pong: RTT samples of `size.count` round trips.
std::vector<std::int64_t> raw_pingpong_loop(EventfdQueue& to_echo, EventfdQueue& from_echo,
                                            PingpongSize size) {
  std::vector<std::int64_t> samples;
  samples.reserve(size.count);
  for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
    const std::int64_t sent = now_ns();
    to_echo.push(i);
    const std::uint64_t back = from_echo.pop();
    const std::int64_t received = now_ns();
    check_echo(back, i);
    if (i >= size.warmup) samples.push_back(received - sent);
  }
  return samples;
}

RunResult raw_thread_pingpong(PingpongSize size) {
  EventfdQueue to_echo;
  EventfdQueue from_echo;
  std::vector<std::int64_t> samples;
  {
    RawEchoThread echo(to_echo, from_echo);
    samples = raw_pingpong_loop(to_echo, from_echo, size);
  }
  RunResult out;
  rtt_metrics(out, samples);
  return out;
}

// The raw counterpart of two isolates is two threads; the RTT is taken inside thread A, as evh's
// is taken inside isolate A, so that the main thread's wakeup is not part of it.
RunResult raw_isolate_pingpong(PingpongSize size) {
  EventfdQueue to_b;
  EventfdQueue to_a;
  std::vector<std::int64_t> samples;
  std::exception_ptr error;
  {
    RawEchoThread b(to_b, to_a);
    std::thread a([&] {
      try {
        samples = raw_pingpong_loop(to_b, to_a, size);
      } catch (...) {
        error = std::current_exception();
      }
    });
    a.join();
  }
  if (error) std::rethrow_exception(error);
  RunResult out;
  rtt_metrics(out, samples);
  return out;
}

RunResult raw_port_flood(std::uint64_t n) {
  EventfdQueue inbox;
  EventfdQueue done;
  std::thread consumer([&] {
    // The ping proves the consumer is up and blocked before the clock starts, as evh's warm-up
    // does for its pool worker.
    inbox.pop();
    inbox.reset_wakeups();
    done.push(kPing);
    std::deque<std::uint64_t> batch;
    std::uint64_t count = 0;
    while (count < n) {
      inbox.pop_all(batch);
      count += batch.size();
      batch.clear();
    }
    done.push(count);
  });
  inbox.push(kPing);
  done.pop();
  const std::int64_t start = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) inbox.push(i);
  const std::uint64_t counted = done.pop();
  const std::int64_t end = now_ns();
  consumer.join();
  check_echo(counted, n);
  RunResult out;
  out.metrics.push_back({"msgs_per_s", "msgs/s", static_cast<double>(n) * 1e9 / (end - start)});
  out.metrics.push_back({"consumer_wakeups", "count", static_cast<double>(inbox.wakeups())});
  return out;
}

// ---- evh ----------------------------------------------------------------------------------

RunResult evh_thread_pingpong(PingpongSize size) {
  Runtime rt;
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  SendPort reply = take(rt.send_port(rx.id()), "send_port(receiver)");
  IsolateRef echo = take(rt.spawn(echo_handler(std::move(reply))), "spawn");
  SendPort to_echo = take(rt.send_port(echo->main_port()), "send_port(isolate)");

  std::vector<std::int64_t> samples;
  samples.reserve(size.count);
  for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
    const std::int64_t sent = now_ns();
    check(to_echo.post(Message::u64(i)), "post to isolate");
    Message back = take(rx.receive(kReplyTimeout), "receive reply");
    const std::int64_t received = now_ns();
    check_echo(back.as_u64(), i);
    if (i >= size.warmup) samples.push_back(received - sent);
  }
  echo->destroy();
  rt.shutdown();

  RunResult out;
  rtt_metrics(out, samples);
  return out;
}

// Isolate A's state. Owned by the benchmark, not by A's handler, so that A and B do not hold
// SendPorts to each other: such a cycle would keep both isolates alive past the Runtime.
struct PingState {
  PingpongSize size{};
  SendPort to_b;
  SendPort done;
  std::int64_t sent_at = 0;
  std::vector<std::int64_t> samples;
};

void ping_on_message(PingState& s, Message& m) {
  const std::uint64_t v = m.as_u64();
  const std::uint64_t total = s.size.warmup + s.size.count;
  std::uint64_t next = 0;
  if (v != kStart) {
    const std::int64_t now = now_ns();
    if (v >= s.size.warmup) s.samples.push_back(now - s.sent_at);
    next = v + 1;
  }
  if (next == total) {
    (void)s.done.post(Message::u64(total));
    return;
  }
  s.sent_at = now_ns();
  if (!s.to_b.post(Message::u64(next))) (void)s.done.post(Message::u64(kFailed));
}

RunResult evh_isolate_pingpong(PingpongSize size) {
  Runtime rt;
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  PingState state;
  state.size = size;
  state.samples.reserve(size.count);
  state.done = take(rt.send_port(rx.id()), "send_port(receiver)");
  ShutdownAtExit stop_first(rt);  // the handler of A borrows `state`
  auto ping = [&state](Isolate&, Message& m) { ping_on_message(state, m); };
  IsolateRef a = take(rt.spawn(make_handler(ping)), "spawn A");
  SendPort to_a = take(rt.send_port(a->main_port()), "send_port(A)");
  IsolateRef b = take(rt.spawn(echo_handler(to_a)), "spawn B");
  state.to_b = take(rt.send_port(b->main_port()), "send_port(B)");

  check(to_a.post(Message::u64(kStart)), "post start");
  Message done = take(rx.receive(kPhaseTimeout), "receive completion");
  if (done.as_u64() == kFailed) throw BenchError("isolate A could not post to isolate B");
  check_echo(done.as_u64(), size.warmup + size.count);
  a->destroy();
  b->destroy();
  // Joins the pool: after this no handler can touch `state`.
  rt.shutdown();

  RunResult out;
  rtt_metrics(out, state.samples);
  return out;
}

// The flood's isolate: counts the messages and reports once all of them have arrived. A ping
// is answered at once (the warm-up) and not counted.
struct FloodSink {
  std::uint64_t expected;
  SendPort done;
  std::uint64_t count = 0;

  void operator()(Isolate&, Message& m) {
    if (m.as_u64() == kPing) {
      (void)done.post(Message::u64(kPing));
    } else if (++count == expected) {
      (void)done.post(Message::u64(count));
    }
  }
};

RunResult evh_port_flood(std::uint64_t n) {
  Runtime rt;
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  SendPort done = take(rt.send_port(rx.id()), "send_port(receiver)");
  IsolateRef sink = take(rt.spawn(make_handler(FloodSink{n, std::move(done)})), "spawn");
  SendPort to_sink = take(rt.send_port(sink->main_port()), "send_port(isolate)");

  // Warm-up: the first message makes the pool start a worker; thread creation is set-up, not
  // throughput.
  check(to_sink.post(Message::u64(kPing)), "post ping");
  check_echo(take(rx.receive(kReplyTimeout), "receive ping").as_u64(), kPing);
  const std::uint64_t wakeups_before = sink->stats().wakeups;

  const std::int64_t start = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) check(to_sink.post(Message::u64(i)), "post");
  Message counted = take(rx.receive(kPhaseTimeout), "receive count");
  const std::int64_t end = now_ns();
  check_echo(counted.as_u64(), n);

  sink->destroy();
  // Read the stats once no turn can still be in flight: the reply is posted from inside the
  // last turn, which may not have been counted yet when it arrives.
  rt.shutdown();
  const IsolateStats stats = sink->stats();
  if (stats.handled < n) {
    throw BenchError("isolate stats count " + std::to_string(stats.handled) +
                     " messages handled of " + std::to_string(n));
  }

  RunResult out;
  out.metrics.push_back({"msgs_per_s", "msgs/s", static_cast<double>(n) * 1e9 / (end - start)});
  // Wakeups: times the idle isolate had to be scheduled (mailbox empty → non-empty), the
  // counterpart of raw's returns from a blocking read. Turns that ended on the budget and went
  // on without sleeping are not wakeups.
  out.metrics.push_back(
      {"consumer_wakeups", "count", static_cast<double>(stats.wakeups - wakeups_before)});
  return out;
}

// ---- peers: the peer's loop on its own thread; replies come back through an EventfdQueue ---

// The plain thread posts into the peer's loop (peers.h) and blocks for the echo on the same
// eventfd queue raw uses, so the two impls differ only in the loop under test.
RunResult peer_thread_pingpong(const PeerImpl& p, PingpongSize size) {
  EventfdQueue from_echo;
  std::vector<std::int64_t> samples;
  samples.reserve(size.count);
  {
    auto loop = p.start_message_loop([&from_echo](std::uint64_t v) { from_echo.push(v); });
    for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
      const std::int64_t sent = now_ns();
      loop->post(i);
      const std::uint64_t back = from_echo.pop();
      const std::int64_t received = now_ns();
      check_echo(back, i);
      if (i >= size.warmup) samples.push_back(received - sent);
    }
  }
  RunResult out;
  rtt_metrics(out, samples);
  return out;
}

RunResult peer_port_flood(const PeerImpl& p, std::uint64_t n) {
  EventfdQueue done;
  std::uint64_t count = 0;  // owned by the loop's thread
  auto loop = p.start_message_loop([&](std::uint64_t v) {
    if (v == kPing) {
      done.push(kPing);
    } else if (++count == n) {
      done.push(count);
    }
  });
  // The ping proves the loop is up and idle before the clock starts, as for raw and evh.
  loop->post(kPing);
  check_echo(done.pop(), kPing);
  loop->reset_wakeups();
  const std::int64_t start = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) loop->post(i);
  const std::uint64_t counted = done.pop();
  const std::int64_t end = now_ns();
  const std::optional<std::uint64_t> wakeups = loop->wakeups();
  loop.reset();
  check_echo(counted, n);
  RunResult out;
  out.metrics.push_back({"msgs_per_s", "msgs/s", static_cast<double>(n) * 1e9 / (end - start)});
  if (wakeups) {
    out.metrics.push_back({"consumer_wakeups", "count", static_cast<double>(*wakeups)});
  }
  return out;
}

// ---- dispatch -------------------------------------------------------------------------------

[[noreturn]] void no_such_impl(std::string_view workload, std::string_view impl) {
  throw BenchError(std::string(workload) + " has no impl " + std::string(impl));
}

RunResult thread_pingpong(std::string_view impl, PingpongSize size) {
  if (impl == "evh") return evh_thread_pingpong(size);
  if (impl == "raw") return raw_thread_pingpong(size);
  if (const PeerImpl* p = find_peer(impl)) return peer_thread_pingpong(*p, size);
  no_such_impl("thread_pingpong", impl);
}

RunResult isolate_pingpong(std::string_view impl, PingpongSize size) {
  if (impl == "evh") return evh_isolate_pingpong(size);
  if (impl == "raw") return raw_isolate_pingpong(size);
  no_such_impl("isolate_pingpong", impl);
}

RunResult port_flood(std::string_view impl, std::uint64_t n) {
  if (impl == "evh") return evh_port_flood(n);
  if (impl == "raw") return raw_port_flood(n);
  if (const PeerImpl* p = find_peer(impl)) return peer_port_flood(*p, n);
  no_such_impl("port_flood", impl);
}

}  // namespace

std::vector<Workload> messaging_workloads() {
  std::vector<Workload> all;
  all.push_back(
      {"thread_pingpong", with_peers({"evh", "raw"}), Threading::multi,
       [](std::string_view impl, Size size) { return thread_pingpong(impl, pingpong_size(size)); },
       SyscallProbe{"syscalls_per_rtt",
                    [](Size size) -> std::uint64_t { return size == Size::quick ? 500 : 2'000; },
                    [](std::string_view impl, std::uint64_t units) {
                      (void)thread_pingpong(impl, {200, units});
                    }}});
  all.push_back(
      {"port_flood", with_peers({"evh", "raw"}), Threading::multi,
       [](std::string_view impl, Size size) { return port_flood(impl, flood_size(size)); },
       SyscallProbe{
           "syscalls_per_msg",
           [](Size size) -> std::uint64_t { return size == Size::quick ? 20'000 : 100'000; },
           [](std::string_view impl, std::uint64_t units) { (void)port_flood(impl, units); }}});
  all.push_back(
      {"isolate_pingpong",
       {"evh", "raw"},
       Threading::multi,
       [](std::string_view impl, Size size) { return isolate_pingpong(impl, pingpong_size(size)); },
       std::nullopt});
  return all;
}

}  // namespace evh::bench
