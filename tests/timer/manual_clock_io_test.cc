// The other waits on a ManualClock: an isolate on an embedder's runner (its wakeups kept by the
// event handler), a port's timeout, a Receiver's deadline — and which clocks a runtime accepts.
// Each is checked at the exact moment the clock reaches it; no test sleeps.
#include <evh/clock.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using test::expect_receive;

// An embedder's runner (a "UI thread"): tasks wait in a queue until the test runs them, so the
// test sees exactly when a wakeup has been handed to the isolate.
class QueueRunner final : public TaskRunner {
 public:
  void post(Task& task) noexcept override {
    std::lock_guard lock(mu_);
    tasks_.push_back(&task);
    cv_.notify_one();
  }
  std::size_t queued() {
    std::lock_guard lock(mu_);
    return tasks_.size();
  }
  // Runs the next task, waiting for one to be posted.
  void run_one() {
    Task* t = nullptr;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !tasks_.empty(); });
      t = tasks_.front();
      tasks_.pop_front();
    }
    t->run();
  }
  void run_all() {
    while (queued() != 0) run_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task*> tasks_;
};

// An isolate on an embedder's runner hands its wakeups to the event handler; on a manual clock
// the handler expires them when the clock moves, and the move returns once the wakeup is queued
// on the runner — never before the deadline.
TEST(ManualClockIo, EmbedderRunnerTimersFireWhenTheClockMoves) {
  ManualClock clock;
  QueueRunner runner;  // outlives the runtime's isolates: shutdown runs their last turns here
  Runtime rt(RuntimeOptions{.clock = &clock});
  Timer timer;
  int fired = 0;
  std::int64_t late = -1;
  timer.user = &fired;
  auto iso = rt.spawn(make_handler([&](Isolate& self, Message&) {
                        ASSERT_TRUE(self.start_timer(timer, 5ms,
                                                     [](Isolate& s, Timer& t, std::uint64_t) {
                                                       ++*static_cast<int*>(t.user);
                                                       (void)s;
                                                     })
                                        .ok());
                      }),
                      IsolateOptions{.runner = &runner});
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  runner.run_all();  // starts the timer; its wakeup goes to the event handler
  const std::int64_t deadline = timer.deadline_ns();
  clock.advance(5ms - 1ns);
  // The wheel may ask to be woken early, at the start of the slot holding the timer, to move it
  // down a level; that wakeup fires nothing.
  runner.run_all();
  EXPECT_EQ(fired, 0) << "fired before its deadline";
  clock.advance(1ns);
  EXPECT_GE(runner.queued(), 1u) << "the move returned before handing the wakeup over";
  runner.run_all();
  EXPECT_EQ(fired, 1);
  late = clock.now().count() - deadline;
  EXPECT_EQ(late, 0);
  auto eh = rt.event_handler();
  ASSERT_TRUE(eh.ok());
  EXPECT_GE((*eh)->stats().timeouts, 1u);
  (*iso)->destroy();
  runner.run_all();
  rt.shutdown();
}

// A port's timeout on a manual clock: not posted until the clock reaches it, and posted by the
// time the move returns. A timeout at or before the clock's time is posted without a move.
TEST(ManualClockIo, PortTimeoutsFollowTheClock) {
  ManualClock clock;
  Runtime rt(RuntimeOptions{.clock = &clock});
  auto rx = rt.open_receiver();
  auto eh = rt.event_handler();
  ASSERT_TRUE(eh.ok());
  const auto at = EventHandler::Clock::time_point(clock.now() + 5ms);
  ASSERT_TRUE((*eh)->set_timeout(rx->id(), at).ok());
  clock.advance(4ms);
  EXPECT_EQ(rx->try_receive().error(), Errc::timed_out);
  clock.advance(1ms);
  auto m = rx->try_receive();  // no wait: the move returned after the post
  ASSERT_TRUE(m.ok());
  auto ev = decode_io_event(*m);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->notice, IoNotice::timeout);
  EXPECT_EQ(ev->deadline_ns, (clock.now()).count());
  // Already due when set: posted on the handler's next pass, no move needed.
  ASSERT_TRUE((*eh)->set_timeout(rx->id(), EventHandler::Clock::time_point(clock.now())).ok());
  auto due = expect_receive(*rx);
  EXPECT_EQ(decode_io_event(due)->notice, IoNotice::timeout);
}

// A Receiver's deadline is on the clock: receive(10 ms) returns timed_out only once the clock
// has moved 10 ms past the call, however long that takes; a message wakes it at once.
TEST(ManualClockIo, ReceiverDeadlinesFollowTheClock) {
  ManualClock clock;
  Runtime rt(RuntimeOptions{.clock = &clock});
  auto rx = rt.open_receiver();
  std::atomic<bool> done{false};
  std::int64_t before = 0;
  std::int64_t after = 0;
  std::error_code result;
  std::thread waiter([&] {
    before = clock.now().count();
    result = rx->receive(10ms).error();
    after = clock.now().count();
    done.store(true);
  });
  // Drive the clock until the waiter gives up (it may not be waiting yet at the first moves).
  while (!done.load()) {
    clock.advance(1ms);
    std::this_thread::yield();
  }
  waiter.join();
  EXPECT_EQ(result, Errc::timed_out);
  EXPECT_GE(after - before, 10'000'000) << "timed out before its deadline on the clock";

  std::atomic<bool> got{false};
  std::thread reader([&] {
    auto m = rx->receive(1h);  // an hour of the clock: only the message can end it
    got.store(m.ok() && m->as_u64() == 42);
  });
  ASSERT_TRUE(rt.post(rx->id(), Message::u64(42)).ok());
  reader.join();
  EXPECT_TRUE(got.load());
}

// A dedicated runner's isolates keep their wakeups with that runner's pool, on the clock too.
TEST(ManualClockIo, DedicatedRunnerTimersFireWhenTheClockMoves) {
  ManualClock clock;
  Runtime rt(RuntimeOptions{.clock = &clock});
  auto rx = rt.open_receiver();
  TaskRunner& ui = rt.create_dedicated_runner("ui");
  Timer timer;
  SendPort report = *rt.send_port(rx->id());
  timer.user = &report;
  auto iso = rt.spawn(
      make_handler([&](Isolate& self, Message& m) {
        if (m.as_u64() == 1) {
          (void)report.post(Message::u64(1));  // settled
          return;
        }
        ASSERT_TRUE(self.start_timer(timer, 3ms,
                                     [](Isolate&, Timer& t, std::uint64_t) {
                                       (void)static_cast<SendPort*>(t.user)->post(Message::u64(2));
                                     })
                        .ok());
        (void)report.post(Message::u64(0));
      }),
      IsolateOptions{.runner = &ui});
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  // The second message is handled once the first is done, its wakeup handed over included.
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(1)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 0u);
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
  clock.advance(3ms - 1ns);
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(1)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u) << "the timer fired before its deadline";
  clock.advance(1ns);
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(1)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 2u)
      << "the wakeup was not queued before the move returned";
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
  rt.shutdown();
}

// A runtime runs on CLOCK_MONOTONIC (null or a MonotonicClock) or on a ManualClock: evh could
// not tell when any other clock reaches a deadline, so it refuses one. A manual clock never
// goes back.
TEST(ManualClockIo, OnlyClocksEvhCanWaitOn) {
  struct OwnClock final : Clock {
    TimePoint now() const noexcept override { return TimePoint(42); }
  };
  OwnClock own;
  EXPECT_THROW(Runtime(RuntimeOptions{.clock = &own}), std::invalid_argument);
  MonotonicClock mono;
  Runtime ok(RuntimeOptions{.clock = &mono});
  ManualClock manual(TimePoint(5));
  EXPECT_FALSE(manual.set(TimePoint(4)));
  EXPECT_TRUE(manual.set(TimePoint(6)));
  manual.advance(-1ns);
  EXPECT_EQ(manual.now(), TimePoint(6));
}

// Regression (issue 14, defect 6): on an embedder's runner, whose work_is_waiting() keeps the
// TaskRunner default (false), a chain of zero-delay timers — each callback starting the next —
// ran in one turn until the chain ended, and no other isolate on that runner (a UI thread) ran
// meanwhile. The timer loop now gives way by the budget and the time slice whatever the runner
// says: the isolate queued behind it runs long before the chain's end.
TEST(ManualClockIo, ZeroDelayChainOnAnEmbedderRunnerLetsOthersRun) {
  ManualClock clock;
  QueueRunner runner;
  Runtime rt(RuntimeOptions{.clock = &clock});
  constexpr int kChain = 1'000'000;
  struct Chain {
    Timer timer;
    int fired = 0;
  } chain;
  chain.timer.user = &chain;
  int fired_when_b_ran = -1;
  auto a = rt.spawn(make_handler([&chain](Isolate& self, Message&) {
                      static constexpr TimerFn kNext = [](Isolate& s, Timer& t, std::uint64_t) {
                        auto& c = *static_cast<Chain*>(t.user);
                        if (++c.fired < kChain) (void)s.start_timer(t, 0ns, kNext);
                      };
                      ASSERT_TRUE(self.start_timer(chain.timer, 0ns, kNext).ok());
                    }),
                    IsolateOptions{.runner = &runner});
  auto b = rt.spawn(make_handler([&chain, &fired_when_b_ran](Isolate&, Message&) {
                      fired_when_b_ran = chain.fired;
                    }),
                    IsolateOptions{.runner = &runner});
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(0)).ok());
  ASSERT_TRUE(rt.post((*b)->main_port(), Message::u64(0)).ok());
  // The runner runs its queue in order (the test's thread is the "UI thread"): a's turn, then
  // b's, until b has run.
  while (fired_when_b_ran < 0) runner.run_one();
  EXPECT_GT(chain.fired, 0);
  EXPECT_LT(fired_when_b_ran, kChain) << "b ran only after the whole chain";
  (*a)->destroy();
  (*b)->destroy();
  runner.run_all();
  rt.shutdown();
}

}  // namespace
}  // namespace evh
