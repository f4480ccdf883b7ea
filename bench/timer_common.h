// bench/timer_common.h — what every impl of the timer workloads shares, so that a metric means the
// same for evh, raw and each peer: the fixed-seed deadlines, the benchmark's own book of what it
// asked for and what happened, the measured phase, and how those become metrics.
//
// The timer_batch protocol, identical for every impl (docs/BENCHMARKS.md has the table):
//   1. Before the phase: the benchmark's book (offsets, requested deadlines, fire times) is
//      allocated and touched. The phase's CPU and resident memory are taken (BatchMeter, after a
//      heap trim), then each impl allocates its timer storage *without touching it* — after the
//      trim, so that the storage's pages are not ones an earlier cell left resident.
//   2. The arm window: T0 = one clock read; for each timer i the deadline the benchmark asks for
//      is T0 + lead + offset[i], written to the book, and the impl's timer node is constructed
//      (its first touch) and armed for it — with that absolute deadline where the API takes one
//      (evh `start_timer_at`, Asio `expires_at`, raw's heap), else with a delay computed from the
//      reference the API adds it to (libuv: its loop time `uv_now`; libevent: a clock read just
//      before `event_add`), rounded up to the API's resolution.
//   3. The loop runs until every timer fired; each callback writes only its fire time (one clock
//      read) into the book.
//   4. After the phase, lateness = fire − requested deadline, for every impl alike: never a
//      deadline an impl reports.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "measure.h"
#include "workloads.h"

namespace evh::bench {

constexpr std::uint64_t kTimerSeed = 20261121;

struct BatchSize {
  std::uint64_t count;
  std::int64_t lead_ns;    // every deadline is at least this far after T0
  std::int64_t spread_ns;  // plus U[0, spread)
};

// The benchmark's record of one batch, for one impl. Everything in it is allocated and touched
// by the constructor, before the phase: it is the benchmark's memory, not the impl's.
class BatchBook {
 public:
  explicit BatchBook(const BatchSize& b)
      : size_(b), offset_(b.count), deadline_(b.count, 0), fire_(b.count, 0) {
    std::mt19937_64 rng(kTimerSeed);
    for (auto& x : offset_) x = static_cast<std::int64_t>(rng() % b.spread_ns);
  }
  std::uint64_t count() const noexcept { return size_.count; }

  // The arm window. Every impl calls begin_arming() right before its arm loop and end_arming()
  // right after it, on the arming thread.
  void begin_arming() noexcept { t0_ = now_ns(); }
  // The absolute deadline (CLOCK_MONOTONIC ns) the benchmark asks timer i for, recorded.
  std::int64_t deadline(std::size_t i) noexcept {
    return deadline_[i] = t0_ + size_.lead_ns + offset_[i];
  }
  void end_arming() noexcept { t1_ = now_ns(); }

  // Timer i fired now. Its callback's only work.
  void fired(std::size_t i) noexcept { fire_[i] = now_ns(); }

  std::int64_t t0() const noexcept { return t0_; }
  double arm_ns_total() const noexcept { return static_cast<double>(t1_ - t0_); }
  const std::vector<std::int64_t>& deadlines() const noexcept { return deadline_; }
  const std::vector<std::int64_t>& fires() const noexcept { return fire_; }

 private:
  BatchSize size_;
  std::vector<std::int64_t> offset_;
  std::vector<std::int64_t> deadline_;
  std::vector<std::int64_t> fire_;  // 0: not fired
  std::int64_t t0_ = 0;
  std::int64_t t1_ = 0;
};

// Storage for n timer nodes, allocated but neither constructed nor touched (the kernel maps the
// pages on first touch, inside the arm window). The impl constructs node i in its arm loop and
// the storage destroys what was constructed.
template <class T>
class UntouchedArray {
 public:
  explicit UntouchedArray(std::size_t n)
      : p_(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(alignof(T))))) {}
  ~UntouchedArray() {
    for (std::size_t i = 0; i < constructed_; ++i) p_[i].~T();
    ::operator delete(p_, std::align_val_t(alignof(T)));
  }
  UntouchedArray(const UntouchedArray&) = delete;
  UntouchedArray& operator=(const UntouchedArray&) = delete;

  // Constructs element i (in order: i == the number constructed so far). Without arguments it
  // is default-initialised, not value-initialised: a C struct (uv_timer_t) is left for the
  // library's init function to fill, as its users and the peer harness do, rather than zeroed
  // first (a 152-byte memset per libuv timer that the harness's arm window does not have).
  template <class... Args>
  T& construct(std::size_t i, Args&&... args) {
    T* t;
    if constexpr (sizeof...(Args) == 0) {
      t = new (p_ + i) T;
    } else {
      t = new (p_ + i) T(std::forward<Args>(args)...);
    }
    constructed_ = i + 1;
    return *t;
  }
  T& operator[](std::size_t i) noexcept { return p_[i]; }
  T* data() noexcept { return p_; }

 private:
  T* p_;
  std::size_t constructed_ = 0;
};

// What every impl reports for a batch beside its book.
struct BatchOutcome {
  std::int64_t end_ns = 0;  // when the measuring thread saw the last fire (the run returned)
  double cpu_ms = 0;
  double bytes = 0;
  std::uint64_t wakeups = 0;
  bool wakeups_known = true;  // false: the impl cannot observe its loop's wakeups
  std::string backend;        // evh: the event handler's backend, when it started one
};

// The measured phase of a timer batch, the same for every impl: resident memory and CPU are
// taken at construction (after a heap trim, so that earlier repetitions' freed memory does not
// hide this one's growth), right before the impl allocates its timer storage; `armed` records the
// resident growth once the batch is armed, `done` the CPU of the whole phase.
class BatchMeter {
 public:
  BatchMeter() {
    trim_heap();
    rss0_ = resident_bytes();
    cpu0_ = process_cpu_ms();
  }
  void armed(BatchOutcome& o) const { o.bytes = static_cast<double>(resident_bytes() - rss0_); }
  void done(BatchOutcome& o) const {
    o.end_ns = now_ns();
    o.cpu_ms = process_cpu_ms() - cpu0_;
  }

 private:
  std::int64_t rss0_ = 0;
  double cpu0_ = 0;
};

// The metrics of a batch from its book: lateness against the requested deadlines.
RunResult batch_metrics(const BatchBook& book, const BatchOutcome& o);

struct ChurnTimes {
  double start_ns = 0;
  double cancel_ns = 0;
  double immediate_ns = 0;
  double cpu_ms = 0;    // process CPU over all the phases run
  std::string backend;  // evh: its event handler's backend
};

// Which phases of timer_churn a run does (the syscall probe runs only the immediate one).
struct ChurnPhases {
  bool bulk = true;
  bool immediate = true;
};

// "now + 10 s" for the churn, as a loop would compute it: the benchmark reads the clock once per
// kChurnTick operations (a loop refreshes its time once per iteration), and an impl whose API
// takes an absolute deadline gets `deadline()`; one with a relative API gets 10 s from its own
// clock. Nothing fires, so the deadline only has to be far and to advance as a loop's time does.
class ChurnClock {
 public:
  static constexpr std::int64_t kAhead = 10'000'000'000;
  static constexpr std::uint64_t kTick = 256;
  ChurnClock() noexcept : now_(now_ns()) {}
  // Call after every operation; refreshes the time every kTick of them.
  void tick(std::uint64_t op) noexcept {
    if ((op + 1) % kTick == 0) now_ = now_ns();
  }
  std::int64_t deadline() const noexcept { return now_ + kAhead; }

 private:
  std::int64_t now_;
};

RunResult churn_metrics(const ChurnTimes& t, std::uint64_t n);

}  // namespace evh::bench
