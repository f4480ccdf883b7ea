#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;
using test::ReleaseCounter;

// Delivered payloads are released once: by the handler that takes them, or after the handler
// returns for those it leaves in the message.
TEST(Runtime, DeliveredPayloadsReleasedOnce) {
  ReleaseCounter c;
  {
    Runtime rt;
    auto rx = rt.open_receiver();
    SendPort out = *rt.send_port(rx->id());
    auto n = std::make_shared<int>(0);  // the isolate's own state: one thread at a time
    auto iso = rt.spawn(make_handler([&c, out, n](Isolate&, Message& m) {
      if (++*n % 2 == 0) c.take(m);  // take every second one; leave the rest to evh
      if (*n == 1000) (void)out.post(Message::u64(1));
    }));
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(rt.post((*iso)->main_port(), c.make()).ok());
    expect_receive(*rx);
  }
  EXPECT_EQ(c.total(), 1000u);
  EXPECT_EQ(c.taken, 500u);
}

// Shutdown with 100,000 queued messages releases each payload exactly once, joins every
// thread, and later posts fail with shutting_down.
TEST(Runtime, ShutdownReleasesQueuedPayloads) {
  ReleaseCounter c;
  Runtime rt;
  auto iso = rt.spawn(make_handler([&c](Isolate&, Message& m) { c.take(m); }));
  SendPort to = *rt.send_port((*iso)->main_port());
  (*iso)->pause();
  for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(to.post(c.make()).ok());
  rt.shutdown();
  EXPECT_EQ(c.finalized, 100'000u);
  EXPECT_EQ(c.taken, 0u);
  EXPECT_EQ(rt.post((*iso)->main_port(), c.make()).error(), Errc::shutting_down);
  EXPECT_EQ(to.post(c.make()).error(), Errc::port_closed);
  EXPECT_EQ(c.finalized, 100'002u);
  EXPECT_EQ(rt.stats().workers_live, 0u);
  EXPECT_FALSE(rt.spawn(make_handler([](Isolate&, Message&) {})).ok());
}

// Shutdown while isolates are busy: nothing runs after shutdown() returns.
TEST(Runtime, NoTaskRunsAfterShutdown) {
  std::atomic<bool> after{false};
  std::atomic<std::uint64_t> late{0};
  ReleaseCounter c;
  Runtime rt(RuntimeOptions{.max_workers = 2});
  std::vector<SendPort> ports;
  for (int i = 0; i < 8; ++i) {
    auto iso = rt.spawn(make_handler([&](Isolate& self, Message& m) {
      if (after.load()) late.fetch_add(1);
      c.take(m);
      (void)rt.post(self.main_port(), c.make());  // keep itself busy
    }));
    ports.push_back(*rt.send_port((*iso)->main_port()));
    ASSERT_TRUE(ports.back().post(c.make()).ok());
  }
  rt.shutdown();
  after = true;
  for (auto& p : ports) EXPECT_FALSE(p.post(c.make()).ok());
  EXPECT_EQ(late.load(), 0u);
  ports.clear();
  EXPECT_EQ(c.finalized + c.taken, c.total());
}

// Close racing with 8 posting threads: every payload is released exactly once, whether the
// post failed, the message was delivered, or it was dropped at delivery.
TEST(Runtime, CloseRacingWithPostersReleasesEverythingOnce) {
  ReleaseCounter c;
  std::atomic<std::uint64_t> refused{0};
  constexpr int kThreads = 8;
  constexpr int kPer = 5'000;
  {
    Runtime rt;
    auto rx = rt.open_receiver();
    SendPort closed = *rt.send_port(rx->id());
    auto iso = rt.spawn(make_handler([&c, closed](Isolate& self, Message& m) {
      c.take(m);
      if (c.taken.load() == 1000) {
        (void)self.close_port(self.main_port());
        (void)closed.post(Message::u64(1));
      }
    }));
    SendPort to = *rt.send_port((*iso)->main_port());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPer; ++i) {
          if (!to.post(c.make()).ok()) refused.fetch_add(1);
        }
      });
    }
    expect_receive(*rx);  // the isolate has closed its port (more than 1000 were posted)
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(c.total(), std::uint64_t{kThreads} * kPer);
  EXPECT_EQ(c.taken, 1000u);  // nothing is delivered after the close
  EXPECT_LE(refused.load(), c.finalized.load());
}

// Destroying an isolate from another thread while posters race: nothing leaks, nothing is
// released twice (ASan and the counts check it).
TEST(Runtime, DestroyRacingWithPosters) {
  ReleaseCounter c;
  constexpr int kThreads = 4;
  constexpr int kPer = 10'000;
  {
    Runtime rt;
    auto iso = rt.spawn(make_handler([&c](Isolate&, Message& m) { c.take(m); }));
    SendPort to = *rt.send_port((*iso)->main_port());
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        started.fetch_add(1);
        for (int i = 0; i < kPer; ++i) (void)to.post(c.make());
      });
    }
    while (started.load() < kThreads) std::this_thread::yield();
    (*iso)->destroy();
    (*iso)->destroy();  // idempotent
    for (auto& t : threads) t.join();
    EXPECT_TRUE((*iso)->is_dead());
  }
  EXPECT_EQ(c.total(), std::uint64_t{kThreads} * kPer);
}

// 100,000 isolates created and destroyed: none is left alive, no port is left open, and
// LeakSanitizer (asan preset) sees no leak.
TEST(Runtime, HundredThousandIsolatesCreatedAndDestroyed) {
  Runtime rt;
  for (int i = 0; i < 100'000; ++i) {
    auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
    ASSERT_TRUE(iso.ok());
    if (i % 3 == 0) {
      ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(1)).ok());
    }
    (*iso)->destroy();
  }
  // Destroy may leave a queued turn to finish on the pool; shutdown waits for it.
  rt.shutdown();
  EXPECT_EQ(rt.stats().isolates_live, 0u);
  EXPECT_EQ(rt.stats().isolates_spawned, 100'000u);
  EXPECT_EQ(rt.stats().ports_open, 0u);
}

// Two runtimes are independent: ids of one are unknown to the other, and shutting one down
// leaves the other working.
TEST(Runtime, TwoRuntimesAreIndependent) {
  Runtime a;
  Runtime b;
  auto ia = a.spawn(make_handler([](Isolate&, Message&) {}));
  auto rxb = b.open_receiver();
  SendPort outb = *b.send_port(rxb->id());
  auto ib = b.spawn(make_handler([outb](Isolate&, Message& m) { (void)outb.post(std::move(m)); }));
  EXPECT_EQ(b.post((*ia)->main_port(), Message::u64(1)).error(), Errc::unknown_port);
  EXPECT_EQ(a.post((*ib)->main_port(), Message::u64(1)).error(), Errc::unknown_port);
  a.shutdown();
  ASSERT_TRUE(b.post((*ib)->main_port(), Message::u64(42)).ok());
  EXPECT_EQ(expect_receive(*rxb).as_u64(), 42u);
}

// Handlers that hold SendPorts to each other form a cycle through the ports; destroying the
// isolates releases the handlers' state at once, which breaks it (LeakSanitizer checks the rest).
TEST(Runtime, DestroyReleasesHandlerStateHoldingSendPorts) {
  Runtime rt;
  std::atomic<int> released{0};
  struct State {
    std::atomic<int>* released;
    std::shared_ptr<SendPort> peer = std::make_shared<SendPort>();
    ~State() { released->fetch_add(1); }
  };
  auto handler_with = [&](std::shared_ptr<State> st) {
    return make_handler([st](Isolate&, Message& m) { (void)st->peer->post(std::move(m)); });
  };
  auto sa = std::make_shared<State>(State{&released});
  auto sb = std::make_shared<State>(State{&released});
  released = 0;  // the temporaries above were destroyed
  auto a = rt.spawn(handler_with(sa));
  auto b = rt.spawn(handler_with(sb));
  *sa->peer = *rt.send_port((*b)->main_port());
  *sb->peer = *rt.send_port((*a)->main_port());
  sa.reset();
  sb.reset();
  (*a)->destroy();
  (*b)->destroy();
  rt.shutdown();
  EXPECT_EQ(released.load(), 2);
}

// Bad arguments to spawn get clear errors and the handler's user data is still released.
TEST(Runtime, SpawnRejectsBadHandler) {
  Runtime rt;
  static int destroyed = 0;
  IsolateHandler h;
  h.on_message = nullptr;
  h.destroy_user = [](void*) noexcept { ++destroyed; };
  EXPECT_EQ(rt.spawn(h).error(), Errc::invalid_argument);
  EXPECT_EQ(destroyed, 1);
}

// Ping-pong between two isolates on the pool, through the LIFO path, completes.
TEST(Runtime, IsolatePingPong) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  // `a` counts down; `echo` sends every message straight back to `a`.
  std::atomic<PortId> a_id{PortId::none};
  auto echo = rt.spawn(make_handler([&a_id](Isolate& self, Message& m) {
    (void)self.runtime().post(a_id.load(), std::move(m));
  }));
  SendPort to_echo = *rt.send_port((*echo)->main_port());
  auto a = rt.spawn(make_handler([to_echo, out](Isolate&, Message& m) {
    const auto left = m.as_u64();
    if (left == 0) {
      (void)out.post(Message::u64(7));
      return;
    }
    (void)to_echo.post(Message::u64(left - 1));
  }));
  a_id = (*a)->main_port();
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(10'000)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 7u);
}

// Regression: durations in RuntimeOptions too large for nanoseconds (the maximum of their own
// type) overflowed when converted and added to "now" (UBSan: signed overflow). A time slice
// that large means a turn never gives way for time: a paused isolate on a dedicated runner,
// given 200 messages and then resumed, handles them in one turn without yielding (the garbage
// slice of the overflow made it yield after 32). The idle timeout and the spin saturate too.
TEST(Runtime, HugeOptionDurationsSaturate) {
  Runtime rt(RuntimeOptions{.worker_idle_timeout = std::chrono::milliseconds::max(),
                            .spin_before_park = std::chrono::microseconds::max(),
                            .default_budget = 1000,
                            .time_slice = std::chrono::microseconds::max()});
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  TaskRunner& runner = rt.create_dedicated_runner("slice");
  auto iso = rt.spawn(make_handler([out](Isolate&, Message& m) {
                        if (m.as_u64() == 199) (void)out.post(Message::u64(1));
                      }),
                      {.runner = &runner});
  const PauseCapability paused = (*iso)->pause();
  for (std::uint64_t i = 0; i < 200; ++i) {
    ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(i)).ok());
  }
  ASSERT_TRUE((*iso)->resume(paused).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
  EXPECT_EQ((*iso)->stats().yields, 0u);
  // The shared pool (huge idle timeout and spin) still answers and shuts down.
  auto echo = rt.spawn(make_handler([out](Isolate&, Message& m) { (void)out.post(std::move(m)); }));
  ASSERT_TRUE(rt.post((*echo)->main_port(), Message::u64(5)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 5u);
}

}  // namespace
}  // namespace evh
