// bench/timer_bench.cc — the timer workloads: timer_batch, timer_batch_100k and timer_churn
// (BENCHMARKS.md), for evh (default slack class), evh-exact (exact class) and the raw floor (a
// binary heap driving one absolute timerfd, on one thread).

#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/receiver.h>
#include <evh/runtime.h>
#include <evh/timer.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "evh_support.h"
#include "measure.h"
#include "peers.h"
#include "timer_common.h"
#include "workloads.h"

namespace evh::bench {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kSeed = kTimerSeed;
constexpr auto kPhaseTimeout = 120s;

BatchSize batch_size(bool big, Size size) {
  if (size == Size::quick) return {big ? 100'000u : 20'000u, 150'000'000, 300'000'000};
  if (big) return {1'000'000, 400'000'000, 1'000'000'000};
  return {100'000, 150'000'000, 1'000'000'000};
}

// ---- evh ----------------------------------------------------------------------------------

constexpr std::uint64_t kArmed = 1;
constexpr std::uint64_t kDone = 2;

struct EvhBatch {
  const std::vector<std::int64_t>* delays = nullptr;
  std::vector<Timer> timers;
  Slack slack = Slack::coarse();
  SendPort report;
  BatchOutcome out;
  std::uint64_t fired = 0;
};

void evh_batch_fire(Isolate&, Timer& t, std::uint64_t) {
  auto& s = *static_cast<EvhBatch*>(t.user);
  const std::int64_t now = now_ns();
  const std::int64_t late = now - t.deadline_ns();
  if (late < 0) ++s.out.early;
  s.out.late_ns.push_back(late);
  if (t.deadline_ns() >= s.out.last_deadline_ns) s.out.last_deadline_ns = t.deadline_ns();
  s.out.last_fire_ns = now;
  if (++s.fired == s.timers.size()) (void)s.report.post(Message::u64(kDone));
}

RunResult evh_timer_batch(const BatchSize& b, Slack slack) {
  const std::vector<std::int64_t> delays = make_delays(b);
  Runtime rt(evh_options());
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  EvhBatch s;
  s.delays = &delays;
  s.slack = slack;
  s.report = take(rt.send_port(rx.id()), "send_port(receiver)");
  s.out.late_ns.reserve(b.count);
  ShutdownAtExit stop_first(rt);  // the handler borrows `s`
  auto iso = take(rt.spawn(make_handler([&s](Isolate& self, Message&) {
    const std::int64_t t0 = now_ns();
    for (std::size_t i = 0; i < s.timers.size(); ++i) {
      s.timers[i].user = &s;
      check(self.start_timer(s.timers[i], std::chrono::nanoseconds((*s.delays)[i]), &evh_batch_fire,
                             s.slack),
            "start_timer");
    }
    s.out.arm_ns_total = static_cast<double>(now_ns() - t0);
    (void)s.report.post(Message::u64(kArmed));
  })),
                  "spawn");
  // Start the event handler and a worker before measuring: set-up, not timers.
  take(rt.event_handler(), "event_handler");
  // The timer nodes are part of the phase (their memory and the faults of touching it), as the
  // peers' and raw's own timer storage is.
  const BatchMeter meter;
  s.timers = std::vector<Timer>(b.count);
  check(rt.post(iso->main_port(), Message::u64(0)), "post start");
  if (take(rx.receive(kPhaseTimeout), "receive armed").as_u64() != kArmed) {
    throw BenchError("unexpected report");
  }
  meter.memory(s.out);  // arming time is taken inside the isolate, around its start_timer loop
  if (take(rx.receive(kPhaseTimeout), "receive done").as_u64() != kDone) {
    throw BenchError("unexpected report");
  }
  meter.done(s.out);
  // Wakeups: deadlines that woke a thread for the isolate's timers (its pool's keeper; the event
  // handler's timerfd for an embedder runner). Batches can be more: what falls due while a batch
  // runs is fired in further batches of the same wakeup.
  const std::uint64_t eh_timeouts = (*rt.event_handler())->stats().timeouts;
  s.out.wakeups = rt.stats().timer_deadlines + eh_timeouts;
  iso->destroy();
  rt.shutdown();
  return batch_metrics(s.out, b.count);
}

// ---- raw: a binary heap driving one absolute timerfd ----------------------------------------

struct HeapEntry {
  std::int64_t deadline;
  std::uint64_t seq;
  bool operator>(const HeapEntry& o) const {
    return deadline != o.deadline ? deadline > o.deadline : seq > o.seq;
  }
};

void arm_timerfd(int fd, std::int64_t deadline_ns) {
  itimerspec its{};
  its.it_value.tv_sec = deadline_ns / 1'000'000'000;
  its.it_value.tv_nsec = deadline_ns % 1'000'000'000;
  if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
    throw BenchError(std::string("timerfd_settime: ") + std::strerror(errno));
  }
}

RunResult raw_timer_batch(const BatchSize& b) {
  const std::vector<std::int64_t> delays = make_delays(b);
  const int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (fd < 0) throw BenchError(std::string("timerfd_create: ") + std::strerror(errno));
  BatchOutcome o;
  o.late_ns.reserve(b.count);
  const BatchMeter meter;
  std::vector<HeapEntry> storage;
  storage.reserve(b.count);
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<>> heap(std::greater<>{},
                                                                              std::move(storage));
  for (std::uint64_t i = 0; i < b.count; ++i) heap.push({now_ns() + delays[i], i});
  meter.armed(o);
  std::int64_t armed = -1;
  while (!heap.empty()) {
    if (heap.top().deadline != armed) {
      armed = heap.top().deadline;
      arm_timerfd(fd, armed);
    }
    std::uint64_t expirations = 0;
    if (read(fd, &expirations, sizeof expirations) < 0 && errno != EINTR) {
      throw BenchError(std::string("read(timerfd): ") + std::strerror(errno));
    }
    ++o.wakeups;
    for (std::int64_t now = now_ns(); !heap.empty() && heap.top().deadline <= now; now = now_ns()) {
      const HeapEntry e = heap.top();
      heap.pop();
      o.late_ns.push_back(now - e.deadline);
      o.last_fire_ns = now;
      o.last_deadline_ns = std::max(o.last_deadline_ns, e.deadline);
    }
    armed = -1;  // the timerfd fired: whatever is on top needs arming
  }
  meter.done(o);
  close(fd);
  return batch_metrics(o, b.count);
}

RunResult timer_batch(std::string_view impl, const BatchSize& b) {
  if (impl == "evh") return evh_timer_batch(b, Slack::coarse());
  if (impl == "evh-exact") return evh_timer_batch(b, Slack::exact());
  if (auto backend = forced_backend(impl)) {
    BackendScope scope(*backend);
    return evh_timer_batch(b, Slack::coarse());
  }
  if (find_peer(impl) != nullptr) {
    BatchOutcome o = peer(impl).timer_batch(make_delays(b));
    return batch_metrics(o, b.count);
  }
  return raw_timer_batch(b);
}

// ---- timer_churn ----------------------------------------------------------------------------

std::uint64_t churn_size(Size size) {
  return size == Size::quick ? 100'000 : 1'000'000;
}

std::vector<std::uint32_t> shuffled(std::uint64_t n) {
  std::vector<std::uint32_t> order(n);
  for (std::uint32_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(kSeed));
  return order;
}

void never(Isolate&, Timer&, std::uint64_t) {}

ChurnTimes evh_churn(std::uint64_t n, bool bulk, bool immediate) {
  const std::vector<std::uint32_t> order = shuffled(n);
  std::vector<Timer> timers(bulk ? n : 1);
  ChurnTimes t;
  Runtime rt;
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  SendPort done = take(rt.send_port(rx.id()), "send_port(receiver)");
  take(rt.event_handler(), "event_handler");
  ShutdownAtExit stop_first(rt);
  auto iso = take(rt.spawn(make_handler([&](Isolate& self, Message&) {
    if (bulk) {
      std::int64_t t0 = now_ns();
      for (auto& timer : timers) (void)self.start_timer(timer, 10s, &never);
      t.start_ns = static_cast<double>(now_ns() - t0);
      t0 = now_ns();
      for (std::uint32_t i : order) self.cancel_timer(timers[i]);
      t.cancel_ns = static_cast<double>(now_ns() - t0);
    }
    if (immediate) {
      Timer& one = timers[0];
      const std::int64_t t0 = now_ns();
      for (std::uint64_t i = 0; i < n; ++i) {
        (void)self.start_timer(one, 10s, &never);
        self.cancel_timer(one);
      }
      t.immediate_ns = static_cast<double>(now_ns() - t0);
    }
    (void)done.post(Message::u64(1));
  })),
                  "spawn");
  check(rt.post(iso->main_port(), Message::u64(0)), "post start");
  take(rx.receive(kPhaseTimeout), "receive done");
  iso->destroy();
  rt.shutdown();
  return t;
}

// An indexed binary heap: the raw floor needs O(log n) cancel.
class IndexedHeap {
 public:
  explicit IndexedHeap(std::size_t n) : pos_(n, kNone) { heap_.reserve(n); }
  void push(std::uint32_t id, std::int64_t deadline) {
    heap_.push_back({deadline, id});
    pos_[id] = static_cast<std::uint32_t>(heap_.size() - 1);
    up(heap_.size() - 1);
  }
  void remove(std::uint32_t id) {
    const std::size_t i = pos_[id];
    if (i == kNone) return;
    pos_[id] = kNone;
    const Item last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    heap_[i] = last;
    pos_[last.id] = static_cast<std::uint32_t>(i);
    up(i);
    down(pos_[last.id]);
  }
  std::size_t size() const { return heap_.size(); }

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  struct Item {
    std::int64_t deadline;
    std::uint32_t id;
  };
  void swap_items(std::size_t a, std::size_t b) {
    std::swap(heap_[a], heap_[b]);
    pos_[heap_[a].id] = static_cast<std::uint32_t>(a);
    pos_[heap_[b].id] = static_cast<std::uint32_t>(b);
  }
  void up(std::size_t i) {
    while (i > 0 && heap_[(i - 1) / 2].deadline > heap_[i].deadline) {
      swap_items(i, (i - 1) / 2);
      i = (i - 1) / 2;
    }
  }
  void down(std::size_t i) {
    for (;;) {
      std::size_t m = i;
      for (std::size_t c = 2 * i + 1; c <= 2 * i + 2 && c < heap_.size(); ++c) {
        if (heap_[c].deadline < heap_[m].deadline) m = c;
      }
      if (m == i) return;
      swap_items(i, m);
      i = m;
    }
  }
  std::vector<Item> heap_;
  std::vector<std::uint32_t> pos_;
};

ChurnTimes raw_churn(std::uint64_t n, bool bulk, bool immediate) {
  const std::vector<std::uint32_t> order = shuffled(n);
  ChurnTimes t;
  IndexedHeap heap(n);
  const std::int64_t later = now_ns() + 10'000'000'000;
  if (bulk) {
    std::int64_t t0 = now_ns();
    for (std::uint32_t i = 0; i < n; ++i) heap.push(i, later + i);
    t.start_ns = static_cast<double>(now_ns() - t0);
    t0 = now_ns();
    for (std::uint32_t i : order) heap.remove(i);
    t.cancel_ns = static_cast<double>(now_ns() - t0);
  }
  if (immediate) {
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      heap.push(0, later);
      heap.remove(0);
    }
    t.immediate_ns = static_cast<double>(now_ns() - t0);
  }
  if (heap.size() != 0) throw BenchError("the raw heap was not emptied");
  return t;
}

RunResult timer_churn(std::string_view impl, Size size) {
  const std::uint64_t n = churn_size(size);
  if (find_peer(impl) != nullptr) {
    return churn_metrics(peer(impl).timer_churn(n, shuffled(n), ChurnPhases{}), n);
  }
  return churn_metrics(impl == "raw" ? raw_churn(n, true, true) : evh_churn(n, true, true), n);
}

}  // namespace

std::vector<Workload> timer_workloads() {
  std::vector<Workload> all;
  for (bool big : {true, false}) {
    all.push_back(
        {big ? "timer_batch" : "timer_batch_100k",
         with_peers({"evh", "evh-exact", "evh-epoll", "evh-uring", "raw"}), Threading::multi,
         big ? [](std::string_view impl,
                  Size size) { return timer_batch(impl, batch_size(true, size)); }
             : [](std::string_view impl,
                  Size size) { return timer_batch(impl, batch_size(false, size)); },
         SyscallProbe{"syscalls_per_timer", [](Size) -> std::uint64_t { return 20'000; },
                      [](std::string_view impl, std::uint64_t units) {
                        (void)timer_batch(impl, BatchSize{units, 50'000'000, 200'000'000});
                      }}});
  }
  all.push_back({"timer_churn", with_peers({"evh", "raw"}), Threading::single, &timer_churn,
                 SyscallProbe{"syscalls_per_pair", [](Size) -> std::uint64_t { return 200'000; },
                              [](std::string_view impl, std::uint64_t units) {
                                if (find_peer(impl) != nullptr) {
                                  (void)peer(impl).timer_churn(units, {}, {false, true});
                                } else if (impl == "raw") {
                                  (void)raw_churn(units, false, true);
                                } else {
                                  (void)evh_churn(units, false, true);
                                }
                              }}});
  return all;
}

}  // namespace evh::bench
