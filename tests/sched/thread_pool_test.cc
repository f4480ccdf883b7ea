#include "sched/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
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

}  // namespace
}  // namespace evh::detail
