#include <evh/isolate_mutex.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;

void noop_timer(Isolate&, Timer&, std::uint64_t) {}
void noop_microtask(Isolate&, void*) {}

// Every "own turn" call (its contract: only inside the isolate's own callbacks) made from
// elsewhere — the test's thread, or another isolate's turn — returns Errc::wrong_thread and
// changes nothing, in every build. Regression: only debug builds checked (an assertion that
// aborted), release builds went on and corrupted the isolate's timers, ports and queues.
TEST(Isolate, OwnTurnCallsFromElsewhereReturnWrongThread) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  IsolateMutex mu;
  Timer timer;
  auto a = rt.spawn(make_handler([](Isolate&, Message&) {}));
  auto code = [](const Status& s) { return static_cast<std::uint64_t>(s.error().value()); };
  auto calls_on = [&mu, &timer, code](Isolate& target, std::vector<std::uint64_t>& got) {
    got.push_back(code(target.start_timer(timer, std::chrono::seconds(1), &noop_timer)));
    got.push_back(
        code(target.start_timer_at(timer, target.now() + std::chrono::seconds(1), &noop_timer)));
    got.push_back(code(target.cancel_timer(timer)));
    got.push_back(code(target.schedule_microtask(&noop_microtask, nullptr)));
    auto port = target.open_port();
    got.push_back(port.ok() ? 0 : static_cast<std::uint64_t>(port.error().value()));
    got.push_back(code(target.handle_interrupts()));
    got.push_back(code(mu.lock(target)));
    got.push_back(code(mu.try_lock(target)));
    got.push_back(code(mu.try_lock_for(target, std::chrono::milliseconds(1))));
    got.push_back(code(mu.unlock(target)));
    got.push_back(code(mu.mark_consistent(target)));
  };
  const std::vector<std::uint64_t> all_wrong(11, static_cast<std::uint64_t>(Errc::wrong_thread));
  // From a plain thread.
  std::vector<std::uint64_t> from_thread;
  calls_on(**a, from_thread);
  EXPECT_EQ(from_thread, all_wrong);
  // From inside another isolate's turn.
  auto b = rt.spawn(make_handler([&a, calls_on, out](Isolate&, Message&) {
    std::vector<std::uint64_t> got;
    calls_on(**a, got);
    for (std::uint64_t v : got) (void)out.post(Message::u64(v));
  }));
  ASSERT_TRUE(rt.post((*b)->main_port(), Message::u64(0)).ok());
  std::vector<std::uint64_t> from_b;
  for (std::size_t i = 0; i < all_wrong.size(); ++i) from_b.push_back(expect_receive(*rx).as_u64());
  EXPECT_EQ(from_b, all_wrong);
  EXPECT_FALSE(timer.armed());
  EXPECT_FALSE(mu.is_locked());
  EXPECT_EQ((*a)->timer_stats().started, 0u);
  // The same calls inside a's own turn work.
  auto c = rt.spawn(make_handler([&mu, out](Isolate& self, Message&) {
    Timer local;
    std::uint64_t ok = 0;
    ok += self.start_timer(local, std::chrono::seconds(1), &noop_timer).ok();
    ok += self.cancel_timer(local).ok();
    ok += self.schedule_microtask(&noop_microtask, nullptr).ok();
    ok += self.open_port().ok();
    ok += self.handle_interrupts().ok();
    ok += mu.lock(self).ok();
    ok += mu.unlock(self).ok();
    (void)out.post(Message::u64(ok));
  }));
  ASSERT_TRUE(rt.post((*c)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 7u);
}

// Regression: schedule_microtask(nullptr) was queued and crashed the isolate's thread when the
// turn ran it; it is refused, and nothing is queued (its drop function is not called either).
TEST(Isolate, NullMicrotaskIsRefused) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  static std::atomic<int> drops{0};
  auto iso = rt.spawn(make_handler([out](Isolate& self, Message&) {
    Status s = self.schedule_microtask(nullptr, nullptr, [](void*) noexcept { ++drops; });
    (void)out.post(Message::u64(static_cast<std::uint64_t>(s.error().value())));
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), static_cast<std::uint64_t>(Errc::invalid_argument));
  // The isolate is alive and well: a second message is handled the same way.
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), static_cast<std::uint64_t>(Errc::invalid_argument));
  EXPECT_EQ(drops.load(), 0);
}

// Messages from each sender arrive in that sender's order (SEMANTICS 2), with 4 senders.
TEST(Isolate, PerSenderFifo) {
  Runtime rt;
  auto rx = rt.open_receiver();
  ASSERT_TRUE(rx.ok());
  SendPort done = *rt.send_port(rx->id());
  constexpr int kSenders = 4;
  constexpr std::uint64_t kPer = 20'000;
  auto iso = test::spawn_order_checker<kSenders>(rt, done, kSenders * kPer);
  ASSERT_TRUE(iso.ok());
  SendPort to = *rt.send_port((*iso)->main_port());
  std::vector<std::thread> senders;
  for (std::uint64_t s = 0; s < kSenders; ++s) {
    senders.emplace_back([to, s] {
      for (std::uint64_t i = 0; i < kPer; ++i) ASSERT_TRUE(to.post(Message::u64(s << 32 | i)).ok());
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
}

// OOB messages overtake normal ones already queued (SEMANTICS 2): the isolate is held in its
// first message while 100 normal and then one OOB message queue up.
TEST(Isolate, OobOvertakesQueuedNormal) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  std::atomic<bool> release{false};
  auto iso = rt.spawn(make_handler([&, out](Isolate&, Message& m) {
    if (m.as_u64() == 0) {
      (void)out.post(Message::u64(1000));  // "I am inside the first message"
      while (!release.load()) std::this_thread::yield();
      return;
    }
    (void)out.post(Message::u64(m.as_u64()));
  }));
  SendPort to = *rt.send_port((*iso)->main_port());
  ASSERT_TRUE(to.post(Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1000u);
  for (std::uint64_t i = 1; i <= 100; ++i) ASSERT_TRUE(to.post(Message::u64(i)).ok());
  ASSERT_TRUE(to.post(Message::u64(999), Priority::oob).ok());
  release = true;
  EXPECT_EQ(expect_receive(*rx).as_u64(), 999u);
  for (std::uint64_t i = 1; i <= 100; ++i) EXPECT_EQ(expect_receive(*rx).as_u64(), i);
}

// Pause holds normal messages back while OOB ones still run; resume releases them in order
// (SEMANTICS 8). Two capabilities need two resumes; pausing again with a capability already
// held counts once; a resume with a capability that holds nothing is an error.
TEST(Isolate, PauseResume) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto iso = rt.spawn(
      make_handler([out](Isolate&, Message& m) { (void)out.post(Message::u64(m.as_u64())); }));
  SendPort to = *rt.send_port((*iso)->main_port());
  const PauseCapability a = (*iso)->pause();
  const PauseCapability b = (*iso)->pause();
  ASSERT_TRUE(a && b);
  ASSERT_NE(a, b);
  EXPECT_EQ((*iso)->pause(a), a);  // already pausing: no second pause
  for (std::uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(to.post(Message::u64(i)).ok());
  ASSERT_TRUE(to.post(Message::u64(77), Priority::oob).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 77u);  // OOB runs while paused
  ASSERT_TRUE((*iso)->resume(a).ok());
  EXPECT_EQ((*iso)->resume(a).error(), Errc::invalid_argument);
  ASSERT_TRUE(to.post(Message::u64(78), Priority::oob).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 78u);  // still paused by b: only OOB
  ASSERT_TRUE((*iso)->resume(b).ok());
  for (std::uint64_t i = 1; i <= 10; ++i) EXPECT_EQ(expect_receive(*rx).as_u64(), i);
  EXPECT_EQ((*iso)->resume(b).error(), Errc::invalid_argument);
  EXPECT_EQ((*iso)->resume(PauseCapability{}).error(), Errc::invalid_argument);
}

// Never two threads in one isolate (SEMANTICS 5): 8 threads post to 3 isolates on the pool;
// each handler checks that nobody else is inside.
TEST(Isolate, OneThreadAtATimeUnderEightPosters) {
  Runtime rt(RuntimeOptions{.max_workers = 4});
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  constexpr int kIsolates = 3;
  constexpr std::uint64_t kPerThread = 5'000;
  constexpr int kThreads = 8;
  struct Guard {
    std::atomic<int> inside{0};
    std::atomic<bool> overlap{false};
    std::uint64_t count = 0;  // plain on purpose: TSan reports any concurrent access
  };
  std::vector<std::shared_ptr<Guard>> guards;
  std::vector<SendPort> ports;
  std::vector<IsolateRef> isolates;
  for (int i = 0; i < kIsolates; ++i) {
    auto g = std::make_shared<Guard>();
    guards.push_back(g);
    auto iso = rt.spawn(make_handler([g, out](Isolate&, Message&) {
      if (g->inside.fetch_add(1) != 0) g->overlap = true;
      if (++g->count == kThreads * kPerThread) (void)out.post(Message::u64(1));
      g->inside.fetch_sub(1);
    }));
    ports.push_back(*rt.send_port((*iso)->main_port()));
    isolates.push_back(*iso);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&ports] {
      for (std::uint64_t i = 0; i < kPerThread; ++i) {
        for (auto& p : ports) ASSERT_TRUE(p.post(Message::u64(i)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kIsolates; ++i) expect_receive(*rx);
  for (auto& g : guards) {
    EXPECT_FALSE(g->overlap);
    EXPECT_EQ(g->count, kThreads * kPerThread);
  }
}

// A flooded isolate gives way after its budget, so a second isolate on a one-worker pool is
// handled long before the flood is done (SEMANTICS 7). The flood's first message wakes the
// second isolate itself, so the test does not depend on when this thread gets to run.
TEST(Isolate, BudgetYieldLetsAnotherIsolateProgress) {
  Runtime rt(RuntimeOptions{.max_workers = 1, .default_budget = 64});
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  constexpr std::uint64_t kFlood = 10'000;
  auto flood_count = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto other = rt.spawn(make_handler([flood_count, out](Isolate&, Message&) {
    (void)out.post(Message::u64(flood_count->load()));
  }));
  SendPort to_other = *rt.send_port((*other)->main_port());
  auto flooded = rt.spawn(make_handler([flood_count, out, to_other](Isolate&, Message&) {
    const std::uint64_t n = flood_count->fetch_add(1) + 1;
    if (n == 1) (void)to_other.post(Message::u64(0));
    if (n == kFlood) (void)out.post(Message::u64(kFlood));
  }));
  SendPort to_flooded = *rt.send_port((*flooded)->main_port());
  const auto held = (*flooded)->pause();  // queue the whole flood first
  for (std::uint64_t i = 0; i < kFlood; ++i) ASSERT_TRUE(to_flooded.post(Message::u64(i)).ok());
  ASSERT_TRUE((*flooded)->resume(held).ok());
  const auto seen_by_other = expect_receive(*rx).as_u64();
  EXPECT_LT(seen_by_other, kFlood) << "the second isolate waited for the whole flood";
  EXPECT_EQ(expect_receive(*rx).as_u64(), kFlood);
  EXPECT_GT((*flooded)->stats().yields, 0u);
}

// Microtasks run after the message that scheduled them, in order, including ones scheduled by
// microtasks, and before the next message.
TEST(Isolate, MicrotasksDrainAfterEachMessage) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  struct Ctx {
    SendPort out;
    std::vector<int> log;
  };
  auto ctx = std::make_shared<Ctx>(Ctx{out, {}});
  auto iso = rt.spawn(make_handler([ctx](Isolate& self, Message& m) {
    const int v = static_cast<int>(m.as_u64());
    ctx->log.push_back(v);
    (void)self.schedule_microtask(
        [](Isolate& s, void* arg) {
          auto* c = static_cast<Ctx*>(arg);
          c->log.push_back(-1);
          (void)s.schedule_microtask(
              [](Isolate&, void* a) { static_cast<Ctx*>(a)->log.push_back(-2); }, arg);
        },
        ctx.get());
    if (v == 2) {
      (void)self.schedule_microtask(
          [](Isolate&, void* arg) {
            auto* c = static_cast<Ctx*>(arg);
            std::uint64_t packed = 0;
            for (int x : c->log)
              packed = packed * 10 + static_cast<std::uint64_t>(x < 0 ? 9 + x : x);
            (void)c->out.post(Message::u64(packed));
          },
          ctx.get());
    }
  }));
  SendPort to = *rt.send_port((*iso)->main_port());
  ASSERT_TRUE(to.post(Message::u64(1)).ok());
  ASSERT_TRUE(to.post(Message::u64(2)).ok());
  // log: 1, -1, -2, 2, -1, (report runs before the -2 scheduled by the second -1)
  // encoded with -1 → 8, -2 → 7: 1 8 7 2 8
  EXPECT_EQ(expect_receive(*rx).as_u64(), 18728u);
}

// An exception from the handler is caught at the worker boundary, counted, reported, and the
// isolate goes on with its next message.
TEST(Isolate, HandlerExceptionIsCaughtAndCounted) {
  static std::atomic<int> reported{0};  // static: the callback is a plain function pointer
  reported.store(0);                    // so that --gtest_repeat starts each run from zero
  RuntimeOptions opts;
  opts.on_uncaught = [](Isolate&, std::exception_ptr e, void*) {
    try {
      std::rethrow_exception(e);
    } catch (const std::runtime_error&) {
      reported.fetch_add(1);
    }
  };
  Runtime rt(opts);
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto iso = rt.spawn(make_handler([out](Isolate&, Message& m) {
    if (m.as_u64() == 1) throw std::runtime_error("boom");
    (void)out.post(Message::u64(m.as_u64()));
  }));
  SendPort to = *rt.send_port((*iso)->main_port());
  ASSERT_TRUE(to.post(Message::u64(1)).ok());
  ASSERT_TRUE(to.post(Message::u64(2)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 2u);
  EXPECT_EQ((*iso)->stats().exceptions, 1u);
  EXPECT_EQ(rt.stats().exceptions, 1u);
  EXPECT_EQ(reported.load(), 1);
}

// An isolate bound to a dedicated runner is only ever handled on that runner's thread
// (SEMANTICS 10), whoever posts.
TEST(Isolate, DedicatedRunnerAffinity) {
  Runtime rt;
  TaskRunner& ui = rt.create_dedicated_runner("evh-ui");
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  struct Seen {
    std::thread::id first{};
    bool same = true;
    std::uint64_t count = 0;
  };
  auto seen = std::make_shared<Seen>();
  constexpr std::uint64_t kTotal = 4 * 2'000;
  auto iso = rt.spawn(make_handler([seen, out](Isolate&, Message&) {
                        if (seen->count++ == 0) seen->first = std::this_thread::get_id();
                        if (seen->first != std::this_thread::get_id()) seen->same = false;
                        if (seen->count == kTotal) (void)out.post(Message::u64(1));
                      }),
                      IsolateOptions{.runner = &ui});
  SendPort to = *rt.send_port((*iso)->main_port());
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([to] {
      for (int i = 0; i < 2'000; ++i) ASSERT_TRUE(to.post(Message::u64(1)).ok());
    });
  }
  for (auto& t : posters) t.join();
  expect_receive(*rx);
  EXPECT_TRUE(seen->same);
  EXPECT_NE(seen->first, std::this_thread::get_id());
  EXPECT_EQ(rt.stats().workers_started, 0u) << "the shared pool should not have been used";
}

// Extra ports: a message to a port closed before delivery is dropped and released, one to an
// open extra port is delivered with its port id.
TEST(Isolate, ExtraPortsAndDropOnClose) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto iso = rt.spawn(make_handler([out](Isolate& self, Message& m) {
    if (m.port() == self.main_port() && m.as_u64() == 1) {
      auto p = self.open_port();
      (void)out.post(Message::u64(p.ok() ? static_cast<std::uint64_t>(*p) : 0));
      return;
    }
    (void)out.post(Message::u64(static_cast<std::uint64_t>(m.port())));
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(1)).ok());
  const auto extra = static_cast<PortId>(expect_receive(*rx).as_u64());
  ASSERT_NE(extra, PortId::none);
  ASSERT_TRUE(rt.post(extra, Message::u64(2)).ok());
  EXPECT_EQ(static_cast<PortId>(expect_receive(*rx).as_u64()), extra);
  // Queue a message for the extra port while paused, close it, resume: dropped, released.
  test::ReleaseCounter c;
  const auto held = (*iso)->pause();
  ASSERT_TRUE(rt.post(extra, c.make()).ok());
  ASSERT_TRUE((*iso)->close_port(extra).ok());
  EXPECT_EQ((*iso)->close_port(extra).error(), Errc::unknown_port);
  ASSERT_TRUE((*iso)->resume(held).ok());
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(3)).ok());  // a marker behind it
  EXPECT_EQ(static_cast<PortId>(expect_receive(*rx).as_u64()), (*iso)->main_port());
  EXPECT_EQ(c.finalized, 1u);
  EXPECT_EQ((*iso)->stats().dropped, 1u);
  EXPECT_EQ(rt.post(extra, c.make()).error(), Errc::unknown_port);
  EXPECT_EQ(c.finalized, 2u);
}

}  // namespace
}  // namespace evh
