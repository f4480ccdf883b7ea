// bench/peer_libevent.cc — the libevent 2.1 peer (peers.h): one event_base per run, made after
// evthread_use_pthreads() so that other threads may activate its events and break its loop.
//   - messages: a mutex-protected queue and a user event (no fd); the producer calls
//     event_active() only on the queue's empty-to-non-empty transition, and libevent wakes its
//     loop through its own notification fd;
//   - timers: events embedded in one block with event_assign(), on a base made with
//     EVENT_BASE_FLAG_NOLOCK (used by one thread only), otherwise default flags (libevent's own
//     choice of monotonic clock), microsecond timeouts; libevent cannot tell its loop's wakeups;
//   - fds: one event_new(fd, EV_READ | EV_PERSIST) per fd (level-triggered; the callback reads
//     it empty). Stopping goes through a user event whose callback calls
//     event_base_loopbreak() on the loop's thread, since a break sent before the loop starts
//     would be forgotten when it does.

#include <event2/event.h>
#include <event2/thread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "measure.h"
#include "peers.h"
#include "timer_common.h"

namespace evh::bench {
namespace {

// How a base is used: from other threads too (messages, fds: locked, as libevent requires), or
// by its own thread only (timers: EVENT_BASE_FLAG_NOLOCK, what a single-threaded user gets by
// not calling evthread_use_pthreads(), which this process must call for the other workloads).
enum class Threads { many, one };

event_base* new_base(Threads threads = Threads::many) {
  static const int locking = evthread_use_pthreads();
  if (locking != 0) throw BenchError("evthread_use_pthreads failed");
  event_config* config = event_config_new();
  if (config == nullptr) throw BenchError("event_config_new failed");
  if (threads == Threads::one) event_config_set_flag(config, EVENT_BASE_FLAG_NOLOCK);
  event_base* base = event_base_new_with_config(config);
  event_config_free(config);
  if (base == nullptr) throw BenchError("event_base_new_with_config failed");
  return base;
}

struct BaseDeleter {
  void operator()(event_base* b) const noexcept { event_base_free(b); }
};
struct EventDeleter {
  void operator()(event* e) const noexcept { event_free(e); }
};
using BasePtr = std::unique_ptr<event_base, BaseDeleter>;
using EventPtr = std::unique_ptr<event, EventDeleter>;

EventPtr new_event(event_base* base, evutil_socket_t fd, short what, event_callback_fn cb,
                   void* arg) {
  EventPtr ev(event_new(base, fd, what, cb, arg));
  if (!ev) throw BenchError("event_new failed");
  return ev;
}

// A user event whose callback breaks the loop, activated from any thread.
EventPtr new_stop_event(event_base* base) {
  return new_event(
      base, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        event_base_loopbreak(static_cast<event_base*>(arg));
      },
      base);
}

// ---- messages --------------------------------------------------------------------------------

class EvMessageLoop final : public PeerMessageLoop {
 public:
  explicit EvMessageLoop(std::function<void(std::uint64_t)> on_message)
      : on_message_(std::move(on_message)),
        base_(new_base()),
        ready_(new_event(base_.get(), -1, 0, &EvMessageLoop::on_ready, this)),
        stop_(new_stop_event(base_.get())),
        thread_([this] { event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY); }) {}
  ~EvMessageLoop() override {
    event_active(stop_.get(), 0, 0);
    thread_.join();
  }

  void post(std::uint64_t value) override {
    bool was_empty;
    {
      std::lock_guard lock(mu_);
      was_empty = queue_.empty();
      queue_.push_back(value);
    }
    // The callback takes the whole queue under the lock, so only the push that ends an empty
    // spell needs to activate it; later ones find it active or running.
    if (was_empty) event_active(ready_.get(), 0, 0);
  }
  std::optional<std::uint64_t> wakeups() const override {
    return wakeups_.load(std::memory_order_relaxed);
  }
  void reset_wakeups() override { wakeups_.store(0, std::memory_order_relaxed); }

 private:
  static void on_ready(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<EvMessageLoop*>(arg);
    self.wakeups_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(self.mu_);
      self.batch_.swap(self.queue_);
    }
    for (const std::uint64_t v : self.batch_) self.on_message_(v);
    self.batch_.clear();
  }

  std::function<void(std::uint64_t)> on_message_;
  BasePtr base_;
  EventPtr ready_;
  EventPtr stop_;
  std::mutex mu_;
  std::vector<std::uint64_t> queue_;  // guarded by mu_
  std::vector<std::uint64_t> batch_;  // loop thread only: swapped with queue_, capacity kept
  std::atomic<std::uint64_t> wakeups_{0};
  std::thread thread_;
};

std::unique_ptr<PeerMessageLoop> start_message_loop(std::function<void(std::uint64_t)> f) {
  return std::make_unique<EvMessageLoop>(std::move(f));
}

// ---- timers ----------------------------------------------------------------------------------

timeval ceil_tv(std::int64_t ns) {
  const std::int64_t us = ns <= 0 ? 0 : (ns + 999) / 1000;
  return {static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

// Events embedded in one caller-owned block with event_assign() (libevent's API for embedding,
// what a program with a million timers uses) rather than a malloc per event_new().
class EventBlock {
 public:
  explicit EventBlock(std::size_t n)
      : size_(event_get_struct_event_size()),
        mem_(static_cast<char*>(std::malloc(size_ * n))),  // not touched until assigned
        assigned_(0) {
    if (mem_ == nullptr) throw BenchError("out of memory");
  }
  ~EventBlock() {
    for (std::size_t i = 0; i < assigned_; ++i) event_del(at(i));
    std::free(mem_);
  }
  EventBlock(const EventBlock&) = delete;
  EventBlock& operator=(const EventBlock&) = delete;

  event* at(std::size_t i) noexcept { return reinterpret_cast<event*>(mem_ + size_ * i); }
  // Assigns event i (in order) as a pure timer.
  event* assign(std::size_t i, event_base* base, event_callback_fn cb, void* arg) {
    if (event_assign(at(i), base, -1, 0, cb, arg) != 0) throw BenchError("event_assign failed");
    assigned_ = i + 1;
    return at(i);
  }

 private:
  std::size_t size_;
  char* mem_;
  std::size_t assigned_;
};

// The batch being run. libevent's callback receives one pointer; it carries the timer's index,
// as the peer harness does, so that no per-timer record beside the event is needed. One batch
// runs at a time, on the suite's thread.
BatchBook* g_batch_book = nullptr;

void batch_fired(evutil_socket_t, short, void* arg) {
  g_batch_book->fired(reinterpret_cast<std::uintptr_t>(arg));
}

// libevent's API is relative: it adds the timeval to its own reading of the time at event_add
// (CLOCK_MONOTONIC_COARSE with the default flags). The delay is the requested deadline minus a
// clock read right before the call, rounded up to libevent's microsecond.
BatchOutcome timer_batch(BatchBook& book) {
  const std::size_t n = book.count();
  BasePtr base(new_base(Threads::one));
  BatchOutcome o;
  o.wakeups_known = false;
  g_batch_book = &book;
  {
    const BatchMeter meter;
    EventBlock events(n);
    book.begin_arming();
    for (std::size_t i = 0; i < n; ++i) {
      event* ev = events.assign(i, base.get(), &batch_fired, reinterpret_cast<void*>(i));
      const std::int64_t deadline = book.deadline(i);
      const timeval tv = ceil_tv(deadline - now_ns());
      if (evtimer_add(ev, &tv) != 0) throw BenchError("evtimer_add failed");
    }
    book.end_arming();
    meter.armed(o);
    event_base_dispatch(base.get());  // returns once no event is pending: every timer fired
    meter.done(o);
  }
  g_batch_book = nullptr;
  return o;
}

void never_fires(evutil_socket_t, short, void*) {}

ChurnTimes timer_churn(std::uint64_t n, const std::vector<std::uint32_t>& order,
                       ChurnPhases phases) {
  BasePtr base(new_base(Threads::one));
  const std::size_t count = phases.bulk ? n : 1;
  EventBlock timers(count);
  for (std::size_t i = 0; i < count; ++i) timers.assign(i, base.get(), &never_fires, nullptr);
  // "10 s from now": libevent reads its own clock at each event_add.
  const timeval later{10, 0};
  ChurnTimes t;
  const PhaseMeter phase;
  if (phases.bulk) {
    std::int64_t t0 = now_ns();
    for (std::size_t i = 0; i < count; ++i) evtimer_add(timers.at(i), &later);
    t.start_ns = static_cast<double>(now_ns() - t0);
    t0 = now_ns();
    for (const std::uint32_t i : order) evtimer_del(timers.at(i));
    t.cancel_ns = static_cast<double>(now_ns() - t0);
  }
  if (phases.immediate) {
    event* one = timers.at(0);
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
      evtimer_add(one, &later);
      evtimer_del(one);
    }
    t.immediate_ns = static_cast<double>(now_ns() - t0);
  }
  t.cpu_ms = phase.cpu_ms();
  return t;
}

// ---- fds -------------------------------------------------------------------------------------

void serve_fds(std::span<const int> fds, const std::function<void(int)>& on_readable,
               const std::function<void()>& client) {
  BasePtr base(new_base());
  std::vector<EventPtr> events;
  events.reserve(fds.size());
  for (const int fd : fds) {
    events.push_back(new_event(
        base.get(), fd, EV_READ | EV_PERSIST,
        [](evutil_socket_t fd, short, void* arg) {
          (*static_cast<const std::function<void(int)>*>(arg))(fd);
        },
        const_cast<std::function<void(int)>*>(&on_readable)));
    if (event_add(events.back().get(), nullptr) != 0) throw BenchError("event_add failed");
  }
  EventPtr stop = new_stop_event(base.get());
  std::thread thread([&base] { event_base_loop(base.get(), EVLOOP_NO_EXIT_ON_EMPTY); });
  std::exception_ptr error;
  try {
    client();
  } catch (...) {
    error = std::current_exception();
  }
  event_active(stop.get(), 0, 0);
  thread.join();
  stop.reset();
  events.clear();
  if (error) std::rethrow_exception(error);
}

}  // namespace

const PeerImpl& libevent_peer() {
  static const PeerImpl impl{"libevent", &start_message_loop, &timer_batch, &timer_churn,
                             &serve_fds};
  return impl;
}

}  // namespace evh::bench
