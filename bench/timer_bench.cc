// bench/timer_bench.cc — the timer workloads: timer_batch, timer_batch_100k and timer_churn
// (BENCHMARKS.md), for evh (default slack class), evh-exact (exact class) and the raw floor (a
// binary heap driving one absolute timerfd in an epoll loop, on one thread). Every impl follows
// the protocol of timer_common.h.

#include <evh/clock.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/message.h>
#include <evh/receiver.h>
#include <evh/runtime.h>
#include <evh/timer.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
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
constexpr std::uint64_t kFailed = 3;

struct EvhBatch {
  BatchBook* book = nullptr;
  UntouchedArray<Timer>* timers = nullptr;
  Slack slack = Slack::coarse();
  SendPort report;
  std::uint64_t fired = 0;
};

void evh_batch_fire(Isolate&, Timer& t, std::uint64_t) {
  auto& s = *static_cast<EvhBatch*>(t.user);
  s.book->fired(static_cast<std::size_t>(&t - s.timers->data()));
  if (++s.fired == s.book->count()) (void)s.report.post(Message::u64(kDone));
}

// The isolate arms the batch on its own turn with start_timer_at: the absolute deadlines the
// benchmark asks for, no clock read per timer, as raw and Asio get them.
void evh_arm_batch(Isolate& self, EvhBatch& s) {
  BatchBook& book = *s.book;
  book.begin_arming();
  for (std::size_t i = 0; i < book.count(); ++i) {
    Timer& t = s.timers->construct(i);
    t.user = &s;
    if (!self.start_timer_at(t, TimePoint(book.deadline(i)), &evh_batch_fire, s.slack)) {
      (void)s.report.post(Message::u64(kFailed));
      return;
    }
  }
  book.end_arming();
  (void)s.report.post(Message::u64(kArmed));
}

void expect_report(Receiver& rx, std::uint64_t want, std::string_view what) {
  const std::uint64_t got = take(rx.receive(kPhaseTimeout), what).as_u64();
  if (got == kFailed) throw BenchError("start_timer_at failed");
  if (got != want) throw BenchError("unexpected report");
}

RunResult evh_timer_batch(const BatchSize& b, Slack slack) {
  BatchBook book(b);
  std::optional<UntouchedArray<Timer>> timers;  // destroyed after the runtime below
  BatchOutcome out;
  Runtime rt(evh_options());
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  EvhBatch s;
  s.book = &book;
  s.slack = slack;
  s.report = take(rt.send_port(rx.id()), "send_port(receiver)");
  ShutdownAtExit stop_first(rt);  // the handler borrows `s`
  auto iso = take(rt.spawn(make_handler([&s](Isolate& self, Message&) { evh_arm_batch(self, s); })),
                  "spawn");
  // Start the event handler before measuring: set-up, not timers.
  EventHandler* eh = take(rt.event_handler(), "event_handler");
  out.backend = eh->backend();
  const BatchMeter meter;
  s.timers = &timers.emplace(b.count);
  check(rt.post(iso->main_port(), Message::u64(0)), "post start");
  expect_report(rx, kArmed, "receive armed");
  meter.armed(out);
  expect_report(rx, kDone, "receive done");
  meter.done(out);
  // Wakeups: deadlines that woke a thread for the isolate's timers (its pool's keeper; the event
  // handler's timerfd for an embedder runner). Batches can be more: what falls due while a batch
  // runs is fired in further batches of the same wakeup.
  out.wakeups = rt.stats().timer_deadlines + eh->stats().timeouts;
  iso->destroy();
  rt.shutdown();
  return batch_metrics(book, out);
}

// ---- raw: a binary heap driving one absolute timerfd in an epoll loop ------------------------

struct HeapEntry {
  std::int64_t deadline;
  std::uint64_t index;
  bool operator>(const HeapEntry& o) const {
    return deadline != o.deadline ? deadline > o.deadline : index > o.index;
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

// An fd closed when it goes out of scope.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

RunResult raw_timer_batch(const BatchSize& b) {
  BatchBook book(b);
  const Fd ep{epoll_create1(EPOLL_CLOEXEC)};
  const Fd tfd{timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)};
  if (ep.fd < 0 || tfd.fd < 0)
    throw BenchError(std::string("epoll/timerfd: ") + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (epoll_ctl(ep.fd, EPOLL_CTL_ADD, tfd.fd, &ev) != 0) {
    throw BenchError(std::string("epoll_ctl: ") + std::strerror(errno));
  }
  BatchOutcome o;
  const BatchMeter meter;
  std::vector<HeapEntry> storage;
  storage.reserve(b.count);  // allocated, not touched: the pushes below touch it
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<>> heap(std::greater<>{},
                                                                              std::move(storage));
  book.begin_arming();
  for (std::uint64_t i = 0; i < b.count; ++i) heap.push({book.deadline(i), i});
  book.end_arming();
  meter.armed(o);
  std::int64_t armed = -1;
  while (!heap.empty()) {
    const std::int64_t now = now_ns();
    if (heap.top().deadline <= now) {
      do {
        book.fired(heap.top().index);
        heap.pop();
      } while (!heap.empty() && heap.top().deadline <= now);
      continue;
    }
    // Re-armed only when the earliest deadline changed; a fired timerfd is reset by the re-arm.
    if (heap.top().deadline != armed) {
      armed = heap.top().deadline;
      arm_timerfd(tfd.fd, armed);
    }
    epoll_event events[8];
    if (epoll_wait(ep.fd, events, 8, -1) < 0 && errno != EINTR) {
      throw BenchError(std::string("epoll_wait: ") + std::strerror(errno));
    }
    ++o.wakeups;
  }
  meter.done(o);
  return batch_metrics(book, o);
}

RunResult timer_batch(std::string_view impl, const BatchSize& b) {
  if (impl == "evh") return evh_timer_batch(b, Slack::coarse());
  if (impl == "evh-exact") return evh_timer_batch(b, Slack::exact());
  if (auto backend = forced_backend(impl)) {
    BackendScope scope(*backend);
    return evh_timer_batch(b, Slack::coarse());
  }
  if (find_peer(impl) != nullptr) {
    BatchBook book(b);
    const BatchOutcome o = peer(impl).timer_batch(book);
    return batch_metrics(book, o);
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

// The isolate starts and cancels on its own turn, with start_timer_at and the benchmark's
// "now + 10 s" (ChurnClock), the input raw and Asio get.
ChurnTimes evh_churn(std::uint64_t n, bool bulk, bool immediate) {
  const std::vector<std::uint32_t> order = shuffled(n);
  std::vector<Timer> timers(bulk ? n : 1);
  ChurnTimes t;
  bool ok = true;
  Runtime rt;
  Receiver rx = take(rt.open_receiver(), "open_receiver");
  SendPort done = take(rt.send_port(rx.id()), "send_port(receiver)");
  t.backend = take(rt.event_handler(), "event_handler")->backend();
  ShutdownAtExit stop_first(rt);
  auto iso = take(rt.spawn(make_handler([&](Isolate& self, Message&) {
    ChurnClock clock;
    if (bulk) {
      std::int64_t t0 = now_ns();
      for (std::uint64_t i = 0; i < n; ++i) {
        ok &=
            static_cast<bool>(self.start_timer_at(timers[i], TimePoint(clock.deadline()), &never));
        clock.tick(i);
      }
      t.start_ns = static_cast<double>(now_ns() - t0);
      t0 = now_ns();
      for (std::uint32_t i : order) (void)self.cancel_timer(timers[i]);
      t.cancel_ns = static_cast<double>(now_ns() - t0);
    }
    if (immediate) {
      Timer& one = timers[0];
      const std::int64_t t0 = now_ns();
      for (std::uint64_t i = 0; i < n; ++i) {
        ok &= static_cast<bool>(self.start_timer_at(one, TimePoint(clock.deadline()), &never));
        (void)self.cancel_timer(one);
        clock.tick(i);
      }
      t.immediate_ns = static_cast<double>(now_ns() - t0);
    }
    (void)done.post(Message::u64(1));
  })),
                  "spawn");
  const PhaseMeter phase;
  check(rt.post(iso->main_port(), Message::u64(0)), "post start");
  take(rx.receive(kPhaseTimeout), "receive done");
  t.cpu_ms = phase.cpu_ms();
  iso->destroy();
  rt.shutdown();
  if (!ok) throw BenchError("start_timer_at failed");
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
  const PhaseMeter phase;
  ChurnClock clock;
  if (bulk) {
    std::int64_t t0 = now_ns();
    for (std::uint32_t i = 0; i < n; ++i) {
      heap.push(i, clock.deadline());
      clock.tick(i);
    }
    t.start_ns = static_cast<double>(now_ns() - t0);
    t0 = now_ns();
    for (std::uint32_t i : order) heap.remove(i);
    t.cancel_ns = static_cast<double>(now_ns() - t0);
  }
  if (immediate) {
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      heap.push(0, clock.deadline());
      heap.remove(0);
      clock.tick(i);
    }
    t.immediate_ns = static_cast<double>(now_ns() - t0);
  }
  t.cpu_ms = phase.cpu_ms();
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
    all.push_back({big ? "timer_batch" : "timer_batch_100k",
                   with_peers({"evh", "evh-exact", "evh-epoll", "evh-uring", "raw"}),
                   Threading::multi,
                   big ? [](std::string_view impl,
                            Size size) { return timer_batch(impl, batch_size(true, size)); }
                       : [](std::string_view impl,
                            Size size) { return timer_batch(impl, batch_size(false, size)); },
                   SyscallProbe{"syscalls_per_timer", [](Size) -> std::uint64_t { return 20'000; },
                                // One timer per 10 µs of spread: the smaller run's timers are as
                                // dense as the larger run's, so the wake-ups that the density
                                // causes scale with the units and stay in the difference.
                                [](std::string_view impl, std::uint64_t units) {
                                  const auto spread = static_cast<std::int64_t>(units) * 10'000;
                                  (void)timer_batch(impl, BatchSize{units, 50'000'000, spread});
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
