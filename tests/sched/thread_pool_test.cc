#include "sched/thread_pool.h"

#include <evh/clock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace evh::detail {
namespace {

using namespace std::chrono_literals;

// A task that counts its runs and, optionally, posts a follow-up from inside (LIFO path).
struct CountingTask final : Task {
  std::atomic<int>* runs = nullptr;
  ThreadPool* pool = nullptr;
  CountingTask* then = nullptr;
  void run() noexcept override {
    runs->fetch_add(1);
    if (then != nullptr) pool->post(*then);
  }
};

// Every posted task runs exactly once, also the ones posted from inside tasks, and shutdown
// waits for all of them.
TEST(ThreadPool, RunsEveryTaskOnce) {
  std::atomic<int> runs{0};
  std::vector<CountingTask> tasks(2000);
  {
    ThreadPool pool(ThreadPoolOptions{.min_threads = 0, .max_threads = 3});
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      tasks[i].runs = &runs;
      tasks[i].pool = &pool;
      if (i % 2 == 0) tasks[i].then = &tasks[i + 1];
    }
    for (std::size_t i = 0; i < tasks.size(); i += 2) pool.post(tasks[i]);
    pool.shutdown();
    EXPECT_LE(pool.stats().started, 3u);
  }
  EXPECT_EQ(runs.load(), 2000);
}

// A task posted from outside while a worker polls for work goes to that worker through the
// hand-off slot (no mu_, no wake) and runs once. The poll window is long, so the worker is still
// polling when the post comes; the round is repeated in case a loaded machine ends a poll between
// the look and the post (then the task is queued instead, and must still run once).
TEST(ThreadPool, PollingWorkerTakesAPostThroughTheHandOffSlot) {
  std::atomic<int> runs{0};
  std::vector<CountingTask> tasks(6);
  ThreadPool pool(ThreadPoolOptions{.min_threads = 0, .max_threads = 1, .spin = 200ms});
  for (CountingTask& t : tasks) t.runs = &runs;
  pool.post(tasks[0]);  // starts the worker
  int posted = 1;
  while (runs.load() != posted) std::this_thread::yield();
  for (std::size_t i = 1; i < tasks.size() && pool.stats().handoffs == 0; ++i) {
    while (!pool.stats().polling) std::this_thread::yield();
    pool.post(tasks[i]);
    ++posted;
    while (runs.load() != posted) std::this_thread::yield();
  }
  EXPECT_GE(pool.stats().handoffs, 1u);
  pool.shutdown();
  EXPECT_EQ(runs.load(), posted);
  EXPECT_FALSE(pool.stats().polling);
}

// Many threads posting one task at a time while workers poll, take hand-offs, park and are
// woken: every task runs exactly once, none is lost between the slot and the queue (TSan checks
// the slot's ordering in the tsan preset).
TEST(ThreadPool, HandOffsAndQueuedPostsLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::vector<std::atomic<int>> runs(kThreads * kEach);
  struct OnceTask final : Task {
    std::atomic<int>* runs = nullptr;
    std::atomic<int>* done = nullptr;
    void run() noexcept override {
      runs->fetch_add(1);
      done->fetch_add(1, std::memory_order_release);
    }
  };
  std::vector<OnceTask> tasks(kThreads * kEach);
  std::vector<std::atomic<int>> done(kThreads);
  {
    ThreadPool pool(ThreadPoolOptions{.min_threads = 0, .max_threads = 2});
    std::vector<std::thread> posters;
    for (int p = 0; p < kThreads; ++p) {
      posters.emplace_back([&, p] {
        for (int i = 0; i < kEach; ++i) {
          OnceTask& t = tasks[p * kEach + i];
          t.runs = &runs[p * kEach + i];
          t.done = &done[p];
          pool.post(t);
          // Every other task waits for its run, so that the workers go idle and poll between.
          if (i % 2 == 1) {
            while (done[p].load(std::memory_order_acquire) != i + 1) std::this_thread::yield();
          }
        }
      });
    }
    for (std::thread& t : posters) t.join();
    pool.shutdown();
  }
  for (std::size_t i = 0; i < runs.size(); ++i) ASSERT_EQ(runs[i].load(), 1) << "task " << i;
}

// A task that gives way (post_yielded) while another task waits in the queue goes behind it:
// giving way from a worker keeps the worker's LIFO slot only when nothing is queued (issue 19),
// so the waiting task runs before the yielding one's second run.
TEST(ThreadPool, YieldingTaskGoesBehindAQueuedTask) {
  struct Yielder final : Task {
    ThreadPool* pool = nullptr;
    std::atomic<int> runs{0};
    std::atomic<bool> running{false};
    std::atomic<bool> other_posted{false};
    void run() noexcept override {
      if (runs.fetch_add(1) == 0) {
        running.store(true);
        // The other task is queued while this one runs (a flag, not a sleep).
        while (!other_posted.load()) std::this_thread::yield();
      }
      if (runs.load() < 10) pool->post_yielded(*this);
    }
  } a;
  struct Other final : Task {
    Yielder* a = nullptr;
    std::atomic<int> a_runs_seen{-1};
    void run() noexcept override { a_runs_seen.store(a->runs.load()); }
  } b;
  b.a = &a;
  ThreadPool pool(ThreadPoolOptions{.max_threads = 1});
  a.pool = &pool;
  pool.post(a);
  while (!a.running.load()) std::this_thread::yield();
  pool.post(b);
  a.other_posted.store(true);
  pool.shutdown();
  EXPECT_EQ(a.runs.load(), 10);
  EXPECT_EQ(b.a_runs_seen.load(), 1);
}

// A task that gives way with nothing else queued runs again, every time, exactly once per
// give-way (through the worker's LIFO slot, and through the queue after kMaxLifoStreak).
TEST(ThreadPool, YieldingTaskAloneRunsOncePerGiveWay) {
  struct Yielder final : Task {
    ThreadPool* pool = nullptr;
    std::atomic<int> runs{0};
    void run() noexcept override {
      if (runs.fetch_add(1) + 1 < 1000) pool->post_yielded(*this);
    }
  } a;
  ThreadPool pool(ThreadPoolOptions{.max_threads = 2});
  a.pool = &pool;
  pool.post(a);
  // Waiting for a condition: 60 s means hung.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (a.runs.load() < 1000 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  pool.shutdown();
  EXPECT_EQ(a.runs.load(), 1000);
}

// Workers idle out after the timeout and the pool grows again on the next post.
TEST(ThreadPool, IdleWorkersExitAndPoolGrowsAgain) {
  std::atomic<int> runs{0};
  ThreadPool pool(
      ThreadPoolOptions{.min_threads = 0, .max_threads = 2, .idle_timeout = 1ms, .spin = 0us});
  CountingTask t;
  t.runs = &runs;
  pool.post(t);
  // Waiting for a condition (not sleeping for a time): the worker runs the task, parks, and
  // exits after its 1 ms idle timeout. 60 s means hung.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while ((runs.load() < 1 || pool.stats().live != 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(runs.load(), 1);
  ASSERT_EQ(pool.stats().live, 0u);
  pool.post(t);
  pool.shutdown();
  EXPECT_EQ(runs.load(), 2);
  EXPECT_GE(pool.stats().started, 2u);
}

// A task posted from outside runs on a pool thread, never on the poster's.
TEST(ThreadPool, RunsOnItsOwnThreads) {
  struct WhereTask final : Task {
    std::atomic<bool> done{false};
    std::thread::id where;
    void run() noexcept override {
      where = std::this_thread::get_id();
      done.store(true, std::memory_order_release);
    }
  } t;
  ThreadPool pool(ThreadPoolOptions{.max_threads = 1});
  pool.post(t);
  pool.shutdown();
  ASSERT_TRUE(t.done.load(std::memory_order_acquire));
  EXPECT_NE(t.where, std::this_thread::get_id());
}

// Pool timeouts on a manual clock (deterministic): each key's deadline is handed to on_due once,
// never before it, in deadline order, on the thread that moved the clock; a cleared key never
// fires; replacing a key's deadline keeps one entry.
TEST(ThreadPool, TimeoutsFireOnceNeverEarlyInOrder) {
  ManualClock clock;
  struct Sink {
    ManualClock* clock;
    std::mutex mu;
    std::vector<std::pair<std::uint64_t, std::int64_t>> fired;  // key, lateness
  } sink{&clock, {}, {}};
  ThreadPoolOptions o;
  o.max_threads = 2;
  o.clock = RuntimeClock(&clock);
  o.on_due = [](void* ctx, std::uint64_t key, std::int64_t deadline) noexcept {
    auto* s = static_cast<Sink*>(ctx);
    std::lock_guard lock(s->mu);
    s->fired.emplace_back(key, s->clock->now().count() - deadline);
  };
  o.on_due_ctx = &sink;
  ThreadPool pool(o);
  const std::int64_t t0 = clock.now().count();
  (void)pool.set_deadline(1, t0 + 40'000'000);
  (void)pool.set_deadline(2, t0 + 5'000'000);
  (void)pool.set_deadline(3, t0 + 10'000'000);
  pool.clear_deadline(3);
  (void)pool.set_deadline(4, t0 + 1'000'000'000);
  (void)pool.set_deadline(4, t0 + 20'000'000);  // replaced, not added
  auto fired = [&] {
    std::lock_guard lock(sink.mu);
    return sink.fired;
  };
  clock.advance(std::chrono::nanoseconds(4'999'999));  // one short of key 2
  EXPECT_TRUE(fired().empty());
  clock.advance(std::chrono::nanoseconds(25'000'001));  // t0 + 30 ms: keys 2 and 4 are due
  auto f = fired();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].first, 2u);
  EXPECT_EQ(f[1].first, 4u);
  clock.advance(std::chrono::seconds(5));  // past key 1 and key 4's replaced deadline
  f = fired();
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[2].first, 1u);
  for (const auto& [key, late] : f) EXPECT_GE(late, 0) << "key " << key << " early";
  pool.shutdown();
  EXPECT_EQ(pool.stats().timeouts, 3u);
}

// On the real clock: an earlier deadline set while the keeper sleeps for a later one is not
// held up by it. If it were, key 1 (ten seconds away) would be handed over first.
TEST(ThreadPool, EarlierDeadlineIsNotHeldUpByTheOneTheKeeperSleepsFor) {
  struct Sink {
    std::mutex mu;
    std::vector<std::pair<std::uint64_t, std::int64_t>> fired;  // key, lateness
    std::atomic<int> count{0};
  } sink;
  ThreadPoolOptions o;
  o.max_threads = 2;
  o.on_due = [](void* ctx, std::uint64_t key, std::int64_t deadline) noexcept {
    auto* s = static_cast<Sink*>(ctx);
    const std::int64_t now = RuntimeClock().now_ns();
    std::lock_guard lock(s->mu);
    s->fired.emplace_back(key, now - deadline);
    s->count.fetch_add(1);
  };
  o.on_due_ctx = &sink;
  ThreadPool pool(o);
  const std::int64_t t0 = RuntimeClock().now_ns();
  (void)pool.set_deadline(1, t0 + 10'000'000'000);  // the keeper sleeps for this one
  (void)pool.set_deadline(2, t0 + 5'000'000);
  while (sink.count.load() < 1) std::this_thread::yield();
  pool.shutdown();
  std::lock_guard lock(sink.mu);
  ASSERT_GE(sink.fired.size(), 1u);
  EXPECT_EQ(sink.fired[0].first, 2u);
  EXPECT_GE(sink.fired[0].second, 0) << "key 2 early";
}

}  // namespace
}  // namespace evh::detail
