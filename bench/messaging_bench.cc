// bench/messaging_bench.cc — message round trips and throughput: thread_pingpong(_block),
// port_flood, port_flood_batch and isolate_pingpong(_dedicated) (BENCHMARKS.md), for evh, the raw
// floors (raw_floor.h: raw blocks, raw-spin spins for evh's window first) and the peers. Every
// figure comes with the process CPU of its measured phase.

#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/port.h>
#include <evh/runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
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

// Replies are waited for without a timeout, on the same EventfdQueue for every impl: a lost
// message hangs the cell until the suite's watchdog ends the run and names it (suite.h).

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

// The RTT percentiles and the process CPU per round trip over the measured round trips.
void rtt_metrics(RunResult& out, std::vector<std::int64_t>& samples, double cpu_ms) {
  const std::size_t n = samples.size();
  add_latency_metrics(out, "rtt", "", samples, {{50, "p50"}, {99, "p99"}, {99.9, "p999"}});
  out.metrics.push_back({"cpu_us_per_rtt", "us", cpu_ms * 1e3 / static_cast<double>(n)});
}

void flood_metrics(RunResult& out, std::uint64_t n, std::int64_t wall_ns, double cpu_ms) {
  out.metrics.push_back({"msgs_per_s", "msgs/s", static_cast<double>(n) * 1e9 / wall_ns});
  out.metrics.push_back({"cpu_ns_per_msg", "ns", cpu_ms * 1e6 / static_cast<double>(n)});
}

void check_echo(std::uint64_t got, std::uint64_t want) {
  if (got != want) {
    throw BenchError("reply " + std::to_string(got) + " where " + std::to_string(want) +
                     " was expected");
  }
}

// ---- thread_pingpong: a plain thread and the impl's echo, the same receiver for every impl --

// The measuring side: sends i through `post`, waits for the echo on `replies` (the same
// EventfdQueue for every impl), and takes the RTT samples and the CPU of the measured round
// trips (the warm-up excluded).
template <class Post>
std::vector<std::int64_t> pingpong_loop(Post&& post, EventfdQueue& replies, PingpongSize size,
                                        double& cpu_ms) {
  std::vector<std::int64_t> samples;
  samples.reserve(size.count);
  PhaseMeter phase;
  for (std::uint64_t i = 0; i < size.warmup + size.count; ++i) {
    if (i == size.warmup) phase.restart();
    const std::int64_t sent = now_ns();
    post(i);
    const std::uint64_t back = replies.pop();
    const std::int64_t received = now_ns();
    check_echo(back, i);
    if (i >= size.warmup) samples.push_back(received - sent);
  }
  cpu_ms = phase.cpu_ms();
  return samples;
}

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

// Thread placement (--pin-threads, measure.h), the same for every impl of the cross-thread
// workloads: the echo or consumer side is set up from the loop's CPU (every thread it starts
// inherits it; evh's pool starts its worker at a ping sent from there), then the measuring
// thread moves to the sender's CPU for the measured exchange.
RunResult thread_pingpong(std::string_view impl, PingpongSize size, Wait receiver) {
  const ScopedPlacement at_loop(ThreadRole::loop);
  EventfdQueue replies(receiver);
  std::vector<std::int64_t> samples;
  double cpu_ms = 0;
  if (impl == "evh") {
    Runtime rt;
    ShutdownAtExit stop_first(rt);  // the handler borrows `replies`
    IsolateRef echo =
        take(rt.spawn(make_handler([&replies](Isolate&, Message& m) { replies.push(m.as_u64()); })),
             "spawn");
    SendPort to_echo = take(rt.send_port(echo->main_port()), "send_port(isolate)");
    // One round trip from here starts the pool's worker (on the loop's CPU when pinned).
    check(to_echo.post(Message::u64(kPing)), "post ping");
    check_echo(replies.pop(), kPing);
    {
      const ScopedPlacement at_sender(ThreadRole::sender);
      samples = pingpong_loop(
          [&](std::uint64_t v) { check(to_echo.post(Message::u64(v)), "post to isolate"); },
          replies, size, cpu_ms);
    }
    echo->destroy();
  } else if (impl == "raw" || impl == "raw-spin") {
    EventfdQueue to_echo(raw_wait(impl));
    RawEchoThread echo(to_echo, replies);
    const ScopedPlacement at_sender(ThreadRole::sender);
    samples = pingpong_loop([&](std::uint64_t v) { to_echo.push(v); }, replies, size, cpu_ms);
  } else if (const PeerImpl* p = find_peer(impl)) {
    auto loop = p->start_message_loop([&replies](std::uint64_t v) { replies.push(v); });
    const ScopedPlacement at_sender(ThreadRole::sender);
    samples = pingpong_loop([&](std::uint64_t v) { loop->post(v); }, replies, size, cpu_ms);
  } else {
    throw BenchError("thread_pingpong has no impl " + std::string(impl));
  }
  RunResult out;
  rtt_metrics(out, samples, cpu_ms);
  return out;
}

// ---- port_flood and port_flood_batch --------------------------------------------------------
//
// One runner per kind of impl, shared by the two workloads: `send(target, n)` is the timed
// flood of values 0..n-1 (one post each, or batches of kFloodBatch), everything around it —
// the consumer, the ping before the clock, the end of the window — is the same for both.

constexpr std::size_t kFloodBatch = 64;

// Calls `send(values)` with consecutive values 0..n-1 in batches of kFloodBatch (the last one
// shorter when n is not a multiple).
template <class Send>
void send_batches(std::uint64_t n, Send&& send) {
  std::uint64_t values[kFloodBatch];
  for (std::uint64_t i = 0; i < n;) {
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(kFloodBatch, n - i));
    for (std::size_t j = 0; j < k; ++j) values[j] = i + j;
    send(std::span<const std::uint64_t>(values, k));
    i += k;
  }
}

// raw: a consumer thread that swaps the producer's vector for its own empty one (both keep their
// capacity: nothing is allocated once warm). `send(inbox, n)` floods it.
template <class Send>
RunResult raw_flood(std::uint64_t n, Wait wait, Send&& send) {
  const ScopedPlacement at_loop(ThreadRole::loop);  // the consumer thread inherits it
  EventfdQueue inbox(wait);
  EventfdQueue done;
  std::thread consumer([&] {
    // The ping proves the consumer is up and waiting before the clock starts, as evh's warm-up
    // does for its pool worker.
    (void)inbox.pop();
    inbox.reset_wakeups();
    done.push(kPing);
    std::vector<std::uint64_t> batch;
    std::uint64_t count = 0;
    while (count < n) {
      inbox.pop_all(batch);
      // Every value is read, as every other impl's consumer reads each message (the peers'
      // callbacks and evh's handler compare it with the ping, then count): a consumer that
      // only adds the batch's size never pulls the values' cache lines to its core.
      for (const std::uint64_t v : batch) count += v != kPing ? 1 : 0;
      batch.clear();
    }
    done.push(count);
  });
  inbox.push(kPing);
  (void)done.pop();
  const ScopedPlacement at_sender(ThreadRole::sender);
  const PhaseMeter phase;
  send(inbox, n);
  const std::uint64_t counted = done.pop();
  const std::int64_t wall = phase.wall_ns();
  const double cpu = phase.cpu_ms();
  consumer.join();
  check_echo(counted, n);
  RunResult out;
  flood_metrics(out, n, wall, cpu);
  out.metrics.push_back({"consumer_wakeups", "count", static_cast<double>(inbox.wakeups())});
  return out;
}

// The flood's isolate: counts the messages and reports once all of them have arrived. A ping
// is answered at once (the warm-up) and not counted.
struct FloodSink {
  std::uint64_t expected;
  EventfdQueue* done;
  std::uint64_t count = 0;

  void operator()(Isolate&, Message& m) {
    if (m.as_u64() == kPing) {
      done->push(kPing);
    } else if (++count == expected) {
      done->push(count);
    }
  }
};

// The same sink as a batch handler (IsolateHandler::on_batch): the messages already in the
// mailbox, up to kMaxBatch, in one call; each one is read and counted as FloodSink does. As a
// packed handler (on_packed) it also takes the values of a run in place, each read and counted
// the same way.
struct FloodBatchSink {
  FloodSink sink;

  void operator()(Isolate& self, std::span<Message> messages) {
    for (Message& m : messages) sink(self, m);
  }
  void operator()(Isolate&, PackedMessages messages) {
    for (std::uint32_t i = 0; i < messages.size(); ++i) {
      if (messages.u64(i) == kPing) {
        sink.done->push(kPing);
      } else if (++sink.count == sink.expected) {
        sink.done->push(sink.count);
      }
    }
  }
};

// How evh's flood consumer takes its messages: one handler call per message, per batch of
// Messages, or per run of values read in place (a packed handler).
enum class Receive : std::uint8_t { each, batch, packed };

// evh: `send(to_sink, n)` floods the sink isolate through a SendPort.
template <class Send>
RunResult evh_flood(std::uint64_t n, Receive receive, Send&& send) {
  const ScopedPlacement at_loop(ThreadRole::loop);  // the pool's threads, started below, inherit it
  EventfdQueue done;
  Runtime rt;
  ShutdownAtExit stop_first(rt);  // the sink borrows `done`
  IsolateRef sink = take(
      rt.spawn(receive == Receive::packed ? make_packed_handler(FloodBatchSink{FloodSink{n, &done}})
               : receive == Receive::batch ? make_batch_handler(FloodBatchSink{FloodSink{n, &done}})
                                           : make_handler(FloodSink{n, &done})),
      "spawn");
  SendPort to_sink = take(rt.send_port(sink->main_port()), "send_port(isolate)");

  // Warm-up: the first message makes the pool start a worker; thread creation is set-up, not
  // throughput.
  check(to_sink.post(Message::u64(kPing)), "post ping");
  check_echo(done.pop(), kPing);
  const std::uint64_t wakeups_before = sink->stats().wakeups;

  std::optional<ScopedPlacement> at_sender(std::in_place, ThreadRole::sender);
  const PhaseMeter phase;
  send(to_sink, n);
  const std::uint64_t counted = done.pop();
  const std::int64_t wall = phase.wall_ns();
  const double cpu = phase.cpu_ms();
  at_sender.reset();
  check_echo(counted, n);

  sink->destroy();
  // Read the stats once no turn can still be in flight: the count is pushed from inside the
  // last turn, which may not have been counted yet when it arrives.
  rt.shutdown();
  const IsolateStats stats = sink->stats();
  if (stats.handled < n) {
    throw BenchError("isolate stats count " + std::to_string(stats.handled) +
                     " messages handled of " + std::to_string(n));
  }

  RunResult out;
  flood_metrics(out, n, wall, cpu);
  // Wakeups: times the idle isolate had to be scheduled (mailbox empty → non-empty), the
  // counterpart of raw's sleeps in read(). Turns that ended on the budget and went on without
  // sleeping are not wakeups.
  out.metrics.push_back(
      {"consumer_wakeups", "count", static_cast<double>(stats.wakeups - wakeups_before)});
  return out;
}

// A peer: `send(loop, n)` floods the peer's message loop.
template <class Send>
RunResult peer_flood(const PeerImpl& p, std::uint64_t n, Send&& send) {
  const ScopedPlacement at_loop(ThreadRole::loop);  // the loop's thread inherits it
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
  std::optional<ScopedPlacement> at_sender(std::in_place, ThreadRole::sender);
  const PhaseMeter phase;
  send(*loop, n);
  const std::uint64_t counted = done.pop();
  const std::int64_t wall = phase.wall_ns();
  const double cpu = phase.cpu_ms();
  const std::optional<std::uint64_t> wakeups = loop->wakeups();
  at_sender.reset();
  loop.reset();
  check_echo(counted, n);
  RunResult out;
  flood_metrics(out, n, wall, cpu);
  if (wakeups) {
    out.metrics.push_back({"consumer_wakeups", "count", static_cast<double>(*wakeups)});
  }
  return out;
}

// port_flood: one post per value.
RunResult port_flood(std::string_view impl, std::uint64_t n) {
  if (impl == "evh") {
    return evh_flood(n, Receive::each, [](SendPort& to, std::uint64_t count) {
      for (std::uint64_t i = 0; i < count; ++i) check(to.post(Message::u64(i)), "post");
    });
  }
  if (impl == "raw" || impl == "raw-spin") {
    return raw_flood(n, raw_wait(impl), [](EventfdQueue& inbox, std::uint64_t count) {
      for (std::uint64_t i = 0; i < count; ++i) inbox.push(i);
    });
  }
  if (const PeerImpl* p = find_peer(impl)) {
    return peer_flood(*p, n, [](PeerMessageLoop& loop, std::uint64_t count) {
      for (std::uint64_t i = 0; i < count; ++i) loop.post(i);
    });
  }
  throw BenchError("port_flood has no impl " + std::string(impl));
}

// port_flood_batch: the flood sent in batches of kFloodBatch, each impl its best batched send
// and receive. raw: EventfdQueue::push_batch (one lock, at most one eventfd write per batch), the
// consumer swapping vectors. evh: SendPort::post_u64_batch, one claim of mailbox space per batch,
// the values copied straight into the mailbox (each arrives as a Message::u64), to a packed
// handler that reads each run's values in place; evh-messages: the same posts to a batch handler
// (a Message built per value). A peer: its own post_batch.
RunResult port_flood_batch(std::string_view impl, std::uint64_t n) {
  if (impl == "evh" || impl == "evh-messages") {
    return evh_flood(n, impl == "evh" ? Receive::packed : Receive::batch,
                     [](SendPort& to, std::uint64_t count) {
                       send_batches(count, [&](std::span<const std::uint64_t> v) {
                         check(to.post_u64_batch(v), "post_u64_batch");
                       });
                     });
  }
  if (impl == "raw" || impl == "raw-spin") {
    return raw_flood(n, raw_wait(impl), [](EventfdQueue& inbox, std::uint64_t count) {
      send_batches(count, [&](std::span<const std::uint64_t> v) { inbox.push_batch(v); });
    });
  }
  if (const PeerImpl* p = find_peer(impl)) {
    return peer_flood(*p, n, [](PeerMessageLoop& loop, std::uint64_t count) {
      send_batches(count, [&](std::span<const std::uint64_t> v) { loop.post_batch(v); });
    });
  }
  throw BenchError("port_flood_batch has no impl " + std::string(impl));
}

// ---- isolate_pingpong: two actors, on a shared pool or on two threads of their own ----------

enum class Placement {
  pool,       // isolate_pingpong: the runtime's pool (evh runs both on one worker)
  dedicated,  // isolate_pingpong_dedicated: one thread each
};

// What actor A measures: RTT samples of its own sends, and the process CPU over the measured
// round trips (read on A's thread at the warm-up's end and at the last reply).
struct PingRecord {
  PingpongSize size{};
  std::vector<std::int64_t> samples;
  std::int64_t sent_at = 0;
  double cpu_start_ms = 0;
  double cpu_ms = 0;

  // A's handling of reply `v` (or of the start, kStart). Returns the next value to send, or
  // kStop when the exchange is over.
  std::uint64_t on_reply(std::uint64_t v) {
    const std::uint64_t total = size.warmup + size.count;
    std::uint64_t next = 0;
    if (v != kStart) {
      const std::int64_t now = now_ns();
      if (v >= size.warmup) samples.push_back(now - sent_at);
      next = v + 1;
    }
    if (next == size.warmup) cpu_start_ms = process_cpu_ms();
    if (next == total) {
      cpu_ms = process_cpu_ms() - cpu_start_ms;
      return kStop;
    }
    sent_at = now_ns();
    return next;
  }
};

RunResult pingpong_result(PingRecord& rec, std::uint64_t done_value) {
  if (done_value == kFailed) throw BenchError("isolate A could not post to isolate B");
  check_echo(done_value, rec.size.warmup + rec.size.count);
  RunResult out;
  rtt_metrics(out, rec.samples, rec.cpu_ms);
  return out;
}

// Isolate A's state. Owned by the benchmark, not by A's handler, so that A and B do not hold
// SendPorts to each other: such a cycle would keep both isolates alive past the Runtime.
struct EvhPing {
  PingRecord rec;
  SendPort to_b;
  EventfdQueue* done = nullptr;
};

RunResult evh_isolate_pingpong(PingpongSize size, Placement placement) {
  EventfdQueue done;
  EvhPing a_state;
  a_state.rec.size = size;
  a_state.rec.samples.reserve(size.count);
  a_state.done = &done;
  Runtime rt;
  // The Runtime must outlive every SendPort (runtime.h): A's port to B is dropped after the
  // shutdown below and before `rt` goes, on every path out of here.
  struct DropAtExit {
    SendPort& port;
    ~DropAtExit() { port = SendPort(); }
  } drop_to_b{a_state.to_b};
  ShutdownAtExit stop_first(rt);  // A's handler borrows `a_state`
  IsolateOptions a_options;
  IsolateOptions b_options;
  if (placement == Placement::dedicated) {
    a_options.runner = &rt.create_dedicated_runner("ping-a");
    b_options.runner = &rt.create_dedicated_runner("ping-b");
  }
  auto ping = [&a_state](Isolate&, Message& m) {
    const std::uint64_t next = a_state.rec.on_reply(m.as_u64());
    if (next == kStop) {
      a_state.done->push(a_state.rec.size.warmup + a_state.rec.size.count);
    } else if (!a_state.to_b.post(Message::u64(next))) {
      a_state.done->push(kFailed);
    }
  };
  IsolateRef a = take(rt.spawn(make_handler(ping), a_options), "spawn A");
  SendPort to_a = take(rt.send_port(a->main_port()), "send_port(A)");
  IsolateRef b = take(rt.spawn(echo_handler(to_a), b_options), "spawn B");
  a_state.to_b = take(rt.send_port(b->main_port()), "send_port(B)");

  check(to_a.post(Message::u64(kStart)), "post start");
  const std::uint64_t finished = done.pop();
  a->destroy();
  b->destroy();
  // Joins the pool: after this no handler can touch `a_state`.
  rt.shutdown();
  return pingpong_result(a_state.rec, finished);
}

// raw, dedicated: two threads, one EventfdQueue each, waiting as `wait` says. The RTT is taken
// inside thread A, as evh's is taken inside isolate A.
RunResult raw_pingpong_threads(PingpongSize size, Wait wait) {
  EventfdQueue to_b(wait);
  EventfdQueue to_a(wait);
  PingRecord rec;
  rec.size = size;
  rec.samples.reserve(size.count);
  std::uint64_t finished = kFailed;
  {
    RawEchoThread b(to_b, to_a);
    std::thread a([&] {
      for (std::uint64_t v = kStart;;) {
        const std::uint64_t next = rec.on_reply(v);
        if (next == kStop) break;
        to_b.push(next);
        v = to_a.pop();
      }
      finished = size.warmup + size.count;
    });
    a.join();
  }
  return pingpong_result(rec, finished);
}

// raw, pool: two actors on a one-worker pool, the floor of two isolates sharing a worker. Only
// one message is ever in flight, so an actor's task carries it; posting the other actor is
// the send.
class RawActor final : public RawTask {
 public:
  RawActor(RawPool& pool, PingRecord* rec, EventfdQueue& done)
      : pool_(pool), rec_(rec), done_(done) {}
  void connect(RawActor& peer) noexcept { peer_ = &peer; }
  void deliver(std::uint64_t v) {
    value_ = v;
    pool_.post(*this);
  }
  void run() noexcept override {
    if (rec_ == nullptr) {  // B: the echo
      peer_->deliver(value_);
      return;
    }
    const std::uint64_t next = rec_->on_reply(value_);
    if (next == kStop) {
      done_.push(rec_->size.warmup + rec_->size.count);
    } else {
      peer_->deliver(next);
    }
  }

 private:
  RawPool& pool_;
  PingRecord* rec_;  // null for B
  EventfdQueue& done_;
  RawActor* peer_ = nullptr;
  std::uint64_t value_ = 0;
};

RunResult raw_pingpong_pool(PingpongSize size) {
  EventfdQueue done;
  PingRecord rec;
  rec.size = size;
  rec.samples.reserve(size.count);
  std::optional<RawPool> pool(std::in_place, 1);  // joined below, before the actors go
  RawActor a(*pool, &rec, done);
  RawActor b(*pool, nullptr, done);
  a.connect(b);
  b.connect(a);
  a.deliver(kStart);
  const std::uint64_t finished = done.pop();
  pool.reset();  // joins the worker: no task of A or B runs after this
  return pingpong_result(rec, finished);
}

RunResult isolate_pingpong(std::string_view impl, PingpongSize size, Placement placement) {
  if (impl == "evh") return evh_isolate_pingpong(size, placement);
  if (placement == Placement::dedicated && (impl == "raw" || impl == "raw-spin")) {
    return raw_pingpong_threads(size, raw_wait(impl));
  }
  if (placement == Placement::pool && impl == "raw") return raw_pingpong_pool(size);
  throw BenchError("isolate_pingpong has no impl " + std::string(impl));
}

}  // namespace

std::vector<Workload> messaging_workloads() {
  std::vector<Workload> all;
  // The measuring thread waits for each echo on the same EventfdQueue for every impl: spinning
  // for evh's window then parking (thread_pingpong, the way evh's own Receiver waits), or
  // blocking at once (thread_pingpong_block, the way the peer harness's loops wait).
  for (const Wait receiver : {Wait::spin, Wait::block}) {
    const bool spin = receiver == Wait::spin;
    all.push_back(
        {spin ? "thread_pingpong" : "thread_pingpong_block", with_peers({"evh", "raw", "raw-spin"}),
         Threading::multi,
         spin ? [](std::string_view impl,
                   Size size) { return thread_pingpong(impl, pingpong_size(size), Wait::spin); }
              : [](std::string_view impl,
                   Size size) { return thread_pingpong(impl, pingpong_size(size), Wait::block); },
         SyscallProbe{
             "syscalls_per_rtt",
             [](Size size) -> std::uint64_t { return size == Size::quick ? 500 : 2'000; },
             spin ? [](std::string_view impl,
                       std::uint64_t
                           units) { (void)thread_pingpong(impl, {200, units}, Wait::spin); }
                  : [](std::string_view impl,
                       std::uint64_t
                           units) { (void)thread_pingpong(impl, {200, units}, Wait::block); }}});
  }
  all.push_back(
      {"port_flood", with_peers({"evh", "raw", "raw-spin"}), Threading::multi,
       [](std::string_view impl, Size size) { return port_flood(impl, flood_size(size)); },
       SyscallProbe{
           "syscalls_per_msg",
           [](Size size) -> std::uint64_t { return size == Size::quick ? 20'000 : 100'000; },
           [](std::string_view impl, std::uint64_t units) { (void)port_flood(impl, units); }}});
  all.push_back(
      {"port_flood_batch", with_peers({"evh", "raw", "raw-spin", "evh-messages"}), Threading::multi,
       [](std::string_view impl, Size size) { return port_flood_batch(impl, flood_size(size)); },
       SyscallProbe{
           "syscalls_per_msg",
           [](Size size) -> std::uint64_t { return size == Size::quick ? 20'000 : 100'000; },
           [](std::string_view impl, std::uint64_t units) {
             (void)port_flood_batch(impl, units);
           }}});
  // As the two isolates are placed by default (evh's pool runs both on one worker; raw: two
  // actors on a one-worker pool), and forced onto two threads (evh: two dedicated runners; raw:
  // two threads).
  all.push_back({"isolate_pingpong",
                 {"evh", "raw"},
                 Threading::multi,
                 [](std::string_view impl, Size size) {
                   return isolate_pingpong(impl, pingpong_size(size), Placement::pool);
                 },
                 std::nullopt});
  all.push_back({"isolate_pingpong_dedicated",
                 {"evh", "raw", "raw-spin"},
                 Threading::multi,
                 [](std::string_view impl, Size size) {
                   return isolate_pingpong(impl, pingpong_size(size), Placement::dedicated);
                 },
                 std::nullopt});
  return all;
}

}  // namespace evh::bench
