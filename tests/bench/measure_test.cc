#include "measure.h"

#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

namespace evh::bench {
namespace {

std::int64_t own_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Burns at least `ns` of the calling thread's own CPU; returns its CPU clock at the end.
std::int64_t burn(std::int64_t ns) {
  const std::int64_t start = own_cpu_ns();
  std::int64_t now = start;
  while (now - start < ns) now = own_cpu_ns();
  return now;
}

const ThreadCpuMeter::Sample* find(const ThreadCpuMeter& m, int tid) {
  const auto& v = m.per_thread();
  auto it = std::find_if(v.begin(), v.end(), [tid](const auto& s) { return s.tid == tid; });
  return it == v.end() ? nullptr : &*it;
}

// A thread that lives through the phase: the meter gives it at least what its own clock says it
// used after restart(), and leaves out an excluded thread entirely.
TEST(ThreadCpuMeter, CountsEachThreadsOwnClockAndLeavesOutTheExcluded) {
  std::atomic<int> stage{0};
  std::atomic<int> counted_tid{0};
  std::atomic<int> excluded_tid{0};
  std::atomic<std::int64_t> counted_used{0};
  auto worker = [&stage](std::atomic<int>& tid, std::atomic<std::int64_t>* used) {
    tid.store(current_tid());
    while (stage.load() < 1) std::this_thread::yield();
    const std::int64_t start = own_cpu_ns();
    const std::int64_t end = burn(20'000'000);
    if (used != nullptr) used->store(end - start);
    while (stage.load() < 2) std::this_thread::yield();
  };
  std::thread counted(worker, std::ref(counted_tid), &counted_used);
  std::thread excluded(worker, std::ref(excluded_tid), nullptr);
  while (counted_tid.load() == 0 || excluded_tid.load() == 0) std::this_thread::yield();
  ThreadCpuMeter meter({excluded_tid.load()});
  stage.store(1);
  while (counted_used == 0) std::this_thread::yield();  // the burn is over (read below stage 2)
  const double total_ms = meter.cpu_ms();
  stage.store(2);
  counted.join();
  excluded.join();
  const ThreadCpuMeter::Sample* c = find(meter, counted_tid.load());
  ASSERT_NE(c, nullptr);
  EXPECT_GE(c->cpu_ns, counted_used.load());
  EXPECT_EQ(find(meter, excluded_tid.load()), nullptr);
  EXPECT_NE(find(meter, current_tid()), nullptr);  // the calling thread counts too
  EXPECT_GE(total_ms * 1e6, static_cast<double>(counted_used.load()));
  EXPECT_EQ(meter.exited(), 0u);
}

// A thread started after restart() counts from zero: all of its CPU is the phase's.
TEST(ThreadCpuMeter, AThreadStartedInThePhaseCountsFromZero) {
  ThreadCpuMeter meter;
  std::atomic<int> tid{0};
  std::atomic<std::int64_t> used{0};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    tid.store(current_tid());
    used.store(burn(10'000'000));
    while (!stop.load()) std::this_thread::yield();
  });
  while (used.load() == 0) std::this_thread::yield();
  (void)meter.cpu_ms();
  stop.store(true);
  t.join();
  const ThreadCpuMeter::Sample* s = find(meter, tid.load());
  ASSERT_NE(s, nullptr);
  EXPECT_GE(s->cpu_ns, used.load());
}

// A thread that exits during the phase is reported as gone, not silently dropped.
TEST(ThreadCpuMeter, AThreadThatExitsInThePhaseIsCounted) {
  std::atomic<bool> go{false};
  std::atomic<int> tid{0};
  std::thread t([&] {
    tid.store(current_tid());
    while (!go.load()) std::this_thread::yield();
  });
  while (tid.load() == 0) std::this_thread::yield();
  ThreadCpuMeter meter;
  go.store(true);
  t.join();
  (void)meter.cpu_ms();
  EXPECT_EQ(meter.exited(), 1u);
  EXPECT_EQ(find(meter, tid.load()), nullptr);
}

}  // namespace
}  // namespace evh::bench
