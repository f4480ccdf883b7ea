// Isolate lifecycle (issue 6, SEMANTICS 3, 8, 9): kill and what it releases, the control
// plane, the exit rule, IsolateMutex.
#include <evh/event_handler.h>
#include <evh/isolate_mutex.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "io/io_test_util.h"
#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;
using test::ReleaseCounter;

struct CountingResource final : IsolateResource {
  std::atomic<int> told{0};
  std::atomic<int> reason{-1};
  void on_isolate_exit(Isolate&, ExitReason r) noexcept override {
    reason.store(static_cast<int>(r));
    told.fetch_add(1);
  }
};

IsolateExit expect_exit(Receiver& rx) {
  Message m = expect_receive(rx);
  auto e = decode_isolate_exit(m);
  EXPECT_TRUE(e.has_value()) << "not an exit message";
  return e.value_or(IsolateExit{});
}

// Waits until every command sent to the event handler before this call has run: a timeout
// set now on a fresh receiver is executed after them and fires at once.
void flush_event_handler(Runtime& rt) {
  auto eh = rt.event_handler();
  ASSERT_TRUE(eh.ok());
  auto rx = rt.open_receiver();
  ASSERT_TRUE(rx.ok());
  ASSERT_TRUE((*eh)->set_timeout(rx->id(), EventHandler::Clock::now()).ok());
  auto ev = decode_io_event(expect_receive(*rx));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->notice, IoNotice::timeout);
}

long rss_kib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// Regression: a message posted by a long-running message waited in the poster's LIFO slot, where
// no other worker looks, for as long as the poster ran, with the other workers idle (evh-lua: a
// state in a long loop had just told another state, which was then never run to kill it). The
// poster's safe points (handle_interrupts) now hand it to an idle worker.
TEST(Lifecycle, LongMessageSafePointsLetWhatItPostedRunElsewhere) {
  Runtime rt(RuntimeOptions{.max_workers = 2});
  std::atomic<bool> other_ran{false};
  auto other = rt.spawn(make_handler([&](Isolate&, Message&) { other_ran.store(true); }));
  ASSERT_TRUE(other.ok());
  const PortId other_port = (*other)->main_port();
  auto rx = rt.open_receiver();
  ASSERT_TRUE(rx.ok());
  SendPort reply = *rt.send_port(rx->id());
  // `reply` by value: the looper may still be inside reply.post() when the test's locals go, and
  // its own copy keeps the port, and through it the receiver, alive until then.
  auto looper = rt.spawn(make_handler([&, reply](Isolate& self, Message&) {
    (void)rt.post(other_port, Message::u64(1));
    // Runs until the other isolate ran; the bound only turns a hang into a failure.
    const auto give_up = std::chrono::steady_clock::now() + test::kLongWait / 2;
    while (!other_ran.load() && std::chrono::steady_clock::now() < give_up) {
      (void)self.handle_interrupts();
    }
    (void)reply.post(Message::u64(other_ran.load() ? 1 : 0));
  }));
  ASSERT_TRUE(looper.ok());
  ASSERT_TRUE(rt.post((*looper)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u) << "the posted message waited for the long one";
}

// Regression: an isolate whose message ended it (the exit rule) gave way like a busy one when
// fresh work was waiting, and was finished — its user data released — only after that work: ten
// thousand Lua states spawned at once all stayed in memory until the last had started.
TEST(Lifecycle, EndedIsolateFinishesBeforeFreshWork) {
  Runtime rt(RuntimeOptions{.max_workers = 1});
  std::mutex mu;
  std::vector<std::string> order;  // guarded by mu
  auto record = [&](std::string what) {
    std::lock_guard lock(mu);
    order.push_back(std::move(what));
  };
  struct Ending {
    std::function<void(std::string)> record;
  };
  auto* ending = new Ending{record};
  auto ender = rt.spawn(IsolateHandler{
      [](Isolate& self, Message&, void*) { (void)self.close_port(self.main_port()); }, ending,
      [](void* user) noexcept {
        auto* e = static_cast<Ending*>(user);
        e->record("ender released");
        delete e;
      }});
  ASSERT_TRUE(ender.ok());
  std::vector<IsolateRef> others;
  for (int i = 0; i < 8; ++i) {
    auto other = rt.spawn(make_handler([&record, i](Isolate& self, Message&) {
      record("other " + std::to_string(i));
      (void)self.close_port(self.main_port());
    }));
    ASSERT_TRUE(other.ok());
    others.push_back(std::move(*other));
  }
  auto rx = rt.open_receiver();
  ASSERT_TRUE(rx.ok());
  ASSERT_TRUE((*ender)->add_exit_listener(rx->id()).ok());
  for (auto& o : others) ASSERT_TRUE(o->add_exit_listener(rx->id()).ok());
  // From this (non-worker) thread, in this order, onto the pool's one worker.
  ASSERT_TRUE(rt.post((*ender)->main_port(), Message::u64(0)).ok());
  for (auto& o : others) ASSERT_TRUE(rt.post(o->main_port(), Message::u64(0)).ok());
  for (std::size_t i = 0; i < 1 + others.size(); ++i) (void)expect_exit(*rx);
  std::lock_guard lock(mu);
  ASSERT_FALSE(order.empty());
  EXPECT_EQ(order.front(), "ender released");
}

// An attached resource is told once, with the reason; a detached one is not told; attaching to
// an exited isolate fails and tells nothing.
TEST(Lifecycle, AttachedResourcesAreToldOnceOnKill) {
  Runtime rt;
  auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
  ASSERT_TRUE(iso.ok());
  CountingResource kept, detached, late;
  ASSERT_TRUE((*iso)->attach(kept).ok());
  ASSERT_TRUE((*iso)->attach(detached).ok());
  EXPECT_EQ((*iso)->attach(kept).error(), make_error_code(Errc::invalid_argument));
  EXPECT_TRUE((*iso)->detach(detached));
  EXPECT_FALSE((*iso)->detach(detached));
  (*iso)->kill();
  (*iso)->kill(KillPriority::before_next_event);  // idempotent
  EXPECT_EQ(kept.told.load(), 1);
  EXPECT_EQ(kept.reason.load(), static_cast<int>(ExitReason::killed));
  EXPECT_EQ(detached.told.load(), 0);
  EXPECT_FALSE((*iso)->detach(kept));
  EXPECT_EQ((*iso)->attach(late).error(), make_error_code(Errc::isolate_dead));
  EXPECT_EQ(late.told.load(), 0);
}

// Runtime shutdown kills the isolates that are left: their resources are told.
TEST(Lifecycle, ShutdownTellsResources) {
  CountingResource r;
  {
    Runtime rt;
    auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
    ASSERT_TRUE(iso.ok());
    ASSERT_TRUE((*iso)->attach(r).ok());
    rt.shutdown();
  }
  EXPECT_EQ(r.told.load(), 1);
}

// Kill with 10,000 queued messages: each payload's finalizer runs exactly once, the handler
// sees none of them after the kill, posts then fail, and the exit listener hears "killed" once.
TEST(Lifecycle, KillReleasesEveryQueuedMessageOnce) {
  ReleaseCounter c;
  Runtime rt;
  auto rx = rt.open_receiver();
  std::atomic<int> handled{0};
  auto iso = rt.spawn(make_handler([&](Isolate&, Message&) { handled.fetch_add(1); }));
  ASSERT_TRUE((*iso)->add_exit_listener(rx->id()).ok());
  SendPort to = *rt.send_port((*iso)->main_port());
  const auto held = (*iso)->pause();
  ASSERT_TRUE(held);
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(to.post(c.make()).ok());
  (*iso)->kill();
  EXPECT_EQ(to.post(c.make()).error(), Errc::port_closed);  // closed at once
  // The release happens on the thread that finishes the isolate (the caller's when it is idle,
  // else its runner's), before the exit listeners are told.
  const IsolateExit e = expect_exit(*rx);
  EXPECT_EQ(e.isolate, (*iso)->main_port());
  EXPECT_EQ(e.reason, ExitReason::killed);
  EXPECT_EQ(c.finalized.load(), 10'001u);
  EXPECT_EQ(handled.load(), 0);
  (*iso)->kill();
  EXPECT_FALSE(rx->try_receive().ok());  // told once
}

// Kill racing with 8 posting threads: every message is either handled or released, exactly
// once; nothing is released twice, nothing is lost.
TEST(Lifecycle, KillRacingWithEightPosters) {
  ReleaseCounter c;
  std::atomic<std::uint64_t> posted{0}, refused{0};
  {
    Runtime rt;
    auto iso = rt.spawn(make_handler([&](Isolate&, Message& m) { c.take(m); }));
    SendPort to = *rt.send_port((*iso)->main_port());
    std::atomic<bool> go{false};
    std::vector<std::thread> posters;
    // Each poster posts until the kill refuses it (or a bound it never reaches in practice).
    for (int t = 0; t < 8; ++t) {
      posters.emplace_back([&] {
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < 10'000'000; ++i) {
          if (!to.post(c.make()).ok()) {
            refused.fetch_add(1);
            break;
          }
          posted.fetch_add(1);
        }
      });
    }
    go.store(true);
    while (posted.load() < 2'000) std::this_thread::yield();
    (*iso)->kill();
    for (auto& t : posters) t.join();
    EXPECT_TRUE((*iso)->is_dead());
  }  // the runtime is gone: everything it held has been released
  EXPECT_EQ(refused.load(), 8u);
  EXPECT_EQ(c.total(), posted.load() + refused.load());  // handled (taken) or released, once
}

// An isolate killed while holding an IsolateMutex another isolate waits on: the waiter gets the
// lock with owner_died, repairs, marks it consistent; no deadlock.
TEST(Lifecycle, KilledHolderReleasesMutexWithOwnerDied) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  IsolateMutex mu;
  int protected_value = 0;  // guarded by mu
  auto holder = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    ASSERT_TRUE(mu.lock(self).ok());
    protected_value = -1;  // half-way through an update, then killed
    (void)out.post(Message::u64(1));
  }));
  auto waiter = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    Status s = mu.lock(self);
    std::uint64_t code = static_cast<std::uint64_t>(s.error().value());
    if (s.error() == Errc::owner_died) {
      protected_value = 0;  // repair
      if (!mu.mark_consistent(self).ok()) code = 100;
    }
    if (!mu.unlock(self).ok()) code = 200;
    (void)out.post(Message::u64(code));
  }));
  ASSERT_TRUE(rt.post((*holder)->main_port(), Message::u64(0)).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), 1u);  // the holder holds it across messages
  EXPECT_TRUE(mu.is_locked());
  EXPECT_EQ(mu.owner(), holder->get());
  ASSERT_TRUE(rt.post((*waiter)->main_port(), Message::u64(0)).ok());
  (*holder)->kill();
  EXPECT_EQ(expect_receive(*rx).as_u64(), static_cast<std::uint64_t>(Errc::owner_died));
  EXPECT_EQ(protected_value, 0);
  EXPECT_FALSE(mu.is_locked());
  EXPECT_EQ(mu.owner(), nullptr);
}

// The IsolateMutex's error cases: non-owner unlock, relock by the holder, try_lock and
// try_lock_for against a holder, and not_recoverable after an unrepaired owner death.
TEST(Lifecycle, IsolateMutexErrors) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  IsolateMutex mu;
  auto report = [out](Status s) {
    (void)out.post(Message::u64(static_cast<std::uint64_t>(s.error().value())));
  };
  // Message 1: lock, relock; 2: unlock; 3: lock and keep.
  auto a = rt.spawn(make_handler([&, report](Isolate& self, Message& m) {
    switch (m.as_u64()) {
      case 1:
        report(mu.lock(self));
        report(mu.lock(self));
        break;
      case 2:
        report(mu.unlock(self));
        break;
      default:
        report(mu.lock(self));
    }
  }));
  // b: unlock it (not the owner), try_lock, try_lock_for, then (message 2) lock and unlock.
  auto b = rt.spawn(make_handler([&, report](Isolate& self, Message& m) {
    if (m.as_u64() == 1) {
      report(mu.unlock(self));
      report(mu.try_lock(self));
      report(mu.try_lock_for(self, std::chrono::milliseconds(1)));
      report(mu.mark_consistent(self));
    } else {
      Status s = mu.lock(self);
      report(s);
      if (s.error() == Errc::owner_died) report(mu.unlock(self));  // without repair
    }
  }));
  auto code = [](Errc e) { return static_cast<std::uint64_t>(e); };
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(1)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 0u);
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::would_deadlock));
  ASSERT_TRUE(rt.post((*b)->main_port(), Message::u64(1)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::not_owner));
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::busy));
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::timed_out));
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::not_owner));
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(2)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 0u);
  EXPECT_FALSE(mu.is_locked());
  // a takes it again and dies; b gets owner_died and unlocks without repairing.
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(3)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 0u);
  (*a)->kill();
  ASSERT_TRUE(rt.post((*b)->main_port(), Message::u64(2)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::owner_died));
  EXPECT_EQ(expect_receive(*rx).as_u64(), 0u);
  ASSERT_TRUE(rt.post((*b)->main_port(), Message::u64(2)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), code(Errc::not_recoverable));
}

// Regression: try_lock_for with a timeout too large to add to "now" overflowed into a deadline
// in the past and gave up at once with timed_out (UBSan: signed overflow); it waits for the
// holder. The holder is told to unlock only after the waiter's message was posted.
TEST(Lifecycle, TryLockForHugeTimeoutWaitsForTheHolder) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  IsolateMutex mu;
  TaskRunner& a_runner = rt.create_dedicated_runner("holder");
  TaskRunner& b_runner = rt.create_dedicated_runner("waiter");
  auto a =
      rt.spawn(make_handler([&mu, out](Isolate& self, Message& m) {
                 (void)out.post(Message::u64(m.as_u64() == 1 ? (mu.lock(self).ok() ? 1 : 91)
                                                             : (mu.unlock(self).ok() ? 2 : 92)));
               }),
               {.runner = &a_runner});
  auto b = rt.spawn(make_handler([&mu, out](Isolate& self, Message&) {
                      Status s = mu.try_lock_for(self, std::chrono::nanoseconds::max());
                      // Unlocked before the report: the test destroys `mu` once it has both.
                      if (s.ok()) (void)mu.unlock(self);
                      (void)out.post(Message::u64(
                          s.ok() ? 3 : 100 + static_cast<std::uint64_t>(s.error().value())));
                    }),
                    {.runner = &b_runner});
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(1)).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), 1u);
  ASSERT_TRUE(rt.post((*b)->main_port(), Message::u64(0)).ok());
  ASSERT_TRUE(rt.post((*a)->main_port(), Message::u64(2)).ok());
  std::vector<std::uint64_t> got{expect_receive(*rx).as_u64(), expect_receive(*rx).as_u64()};
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::uint64_t>{2, 3}));
}

// Kill from inside a timer batch: the rest of the batch does not run, the timers are cancelled
// (the runtime's live count returns to 0), the exit listener hears it.
TEST(Lifecycle, KillDuringTimerBatchStopsTheBatch) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  struct State {
    std::vector<Timer> timers = std::vector<Timer>(100);
    int fired = 0;
  };
  auto state = std::make_shared<State>();
  auto iso = rt.spawn(make_handler([state, out](Isolate& self, Message&) {
                        for (auto& t : state->timers) {
                          auto fn = [](Isolate& me, Timer& timer, std::uint64_t) {
                            (void)timer;
                            auto* st = static_cast<State*>(me.data());
                            if (++st->fired == 10) me.kill(KillPriority::immediate);
                          };
                          ASSERT_TRUE(self.start_timer(t, std::chrono::milliseconds(1), fn).ok());
                        }
                        (void)out.post(Message::u64(1));
                      }),
                      IsolateOptions{.data = state.get()});
  ASSERT_TRUE((*iso)->add_exit_listener(rx->id()).ok());
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::killed);
  EXPECT_EQ(state->fired, 10);
  for (const auto& t : state->timers) EXPECT_FALSE(t.armed());
  EXPECT_EQ(rt.timer_stats().live, 0u);
  EXPECT_EQ(rt.timer_stats().fired, 10u);
}

// Kill while fds are registered: the isolate's registrations end and the fds it handed over
// (FdOptions::owned) are closed — /proc/self/fd is back to its count.
TEST(Lifecycle, KillClosesOwnedFdsAndEndsRegistrations) {
  Runtime rt;
  ASSERT_TRUE(rt.event_handler().ok());  // its own fds are counted in the baseline
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  const test::FdSet before = test::open_fds();
  int borrowed = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // registered, not handed over
  ASSERT_GE(borrowed, 0);
  auto iso = rt.spawn(make_handler([out, borrowed](Isolate& self, Message&) {
    EventHandler* eh = *self.runtime().event_handler();
    auto extra = self.open_port();
    ASSERT_TRUE(extra.ok());
    for (int i = 0; i < 16; ++i) {
      int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      ASSERT_GE(fd, 0);
      FdOptions owned;
      owned.owned = true;
      ASSERT_TRUE(
          eh->add_fd(fd, i % 2 == 0 ? self.main_port() : *extra, FdEvents::readable, owned).ok());
    }
    ASSERT_TRUE(eh->add_fd(borrowed, self.main_port(), FdEvents::readable).ok());
    (void)out.post(Message::u64(1));
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 1u);
  EXPECT_EQ(test::fds_opened_since(before, 17).size(), 17u);
  (*iso)->kill();
  flush_event_handler(rt);
  // Only the borrowed fd, still the caller's.
  EXPECT_EQ(test::fds_opened_since(before, 1).size(), 1u);
  EXPECT_TRUE(test::fd_is_open(borrowed));
  EXPECT_EQ((*rt.event_handler())->stats().registrations, 0u);
  ::close(borrowed);
  EXPECT_EQ(test::fds_opened_since(before), std::vector<std::string>{});
}

// Ping while busy: an immediate ping is answered from inside a long-running message at its
// safe point (handle_interrupts); a before_next_event ping only after that message.
TEST(Lifecycle, PingWhileBusy) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  std::atomic<bool> finish{false};
  auto iso = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    (void)out.post(Message::u64(1));  // "busy now"
    while (!finish.load()) {
      if (self.interrupt_requested()) {
        EXPECT_TRUE(self.handle_interrupts().ok());
      }
      std::this_thread::yield();
    }
    (void)out.post(Message::u64(2));  // "done"
  }));
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), 1u);
  ASSERT_TRUE((*iso)->ping(rx->id(), Message::u64(20), ControlPriority::before_next_event).ok());
  ASSERT_TRUE((*iso)->ping(rx->id(), Message::u64(10), ControlPriority::immediate).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 10u);  // answered while the message still runs
  finish.store(true);
  EXPECT_EQ(expect_receive(*rx).as_u64(), 2u);
  EXPECT_EQ(expect_receive(*rx).as_u64(), 20u);  // after the message
  // An idle isolate answers at once; a dead one refuses and releases the response.
  ASSERT_TRUE((*iso)->ping(rx->id(), Message::u64(30)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 30u);
  (*iso)->kill();
  ReleaseCounter c;
  EXPECT_EQ((*iso)->ping(rx->id(), c.make()).error(), Errc::isolate_dead);
  EXPECT_EQ(c.finalized.load(), 1u);
}

// Pause then kill: the normal messages held back by the pause are released, never handled;
// pings still run while paused; the exit listener hears it once.
TEST(Lifecycle, PauseThenKill) {
  ReleaseCounter c;
  Runtime rt;
  auto rx = rt.open_receiver();
  std::atomic<int> handled{0};
  auto iso = rt.spawn(make_handler([&](Isolate&, Message&) { handled.fetch_add(1); }));
  ASSERT_TRUE((*iso)->add_exit_listener(rx->id()).ok());
  (void)(*iso)->pause();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(rt.post((*iso)->main_port(), c.make()).ok());
  ASSERT_TRUE((*iso)->ping(rx->id(), Message::u64(5)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 5u);  // control runs while paused
  (*iso)->kill(KillPriority::before_next_event);
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::killed);
  EXPECT_EQ(handled.load(), 0);
  EXPECT_EQ(c.finalized.load(), 100u);
}

// A before_next_event kill from inside a message lets that message's microtasks run and
// nothing after; an immediate kill from outside asks a long message to unwind.
TEST(Lifecycle, KillPriorities) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  std::atomic<int> handled{0};
  auto polite = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    handled.fetch_add(1);
    self.kill(KillPriority::before_next_event);
    EXPECT_FALSE(self.interrupt_requested());
    (void)self.schedule_microtask(
        [](Isolate&, void* p) {
          auto* sp = static_cast<SendPort*>(p);
          (void)sp->post(Message::u64(7));
          delete sp;
        },
        new SendPort(out), [](void* p) noexcept { delete static_cast<SendPort*>(p); });
  }));
  ASSERT_TRUE((*polite)->add_exit_listener(rx->id()).ok());
  SendPort to = *rt.send_port((*polite)->main_port());
  const auto held = (*polite)->pause();
  ASSERT_TRUE(to.post(Message::u64(0)).ok());
  ASSERT_TRUE(to.post(Message::u64(0)).ok());
  ASSERT_TRUE((*polite)->resume(held).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 7u);  // the microtask ran
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::killed);
  EXPECT_EQ(handled.load(), 1);  // the second message never ran

  std::atomic<bool> unwound{false};
  auto busy = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    (void)out.post(Message::u64(1));
    while (self.handle_interrupts().ok()) std::this_thread::yield();
    unwound.store(true);
  }));
  ASSERT_TRUE((*busy)->add_exit_listener(rx->id()).ok());
  ASSERT_TRUE(rt.post((*busy)->main_port(), Message::u64(0)).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), 1u);
  (*busy)->kill(KillPriority::immediate);
  EXPECT_TRUE((*busy)->interrupt_requested());
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::killed);
  EXPECT_TRUE(unwound.load());
}

// Exit listeners are told exactly once: a listener added twice, a kill from inside and one
// from outside, a listener added after the exit (told at once), a removed one (not told).
TEST(Lifecycle, ExitListenersToldExactlyOnce) {
  Runtime rt;
  auto rx = rt.open_receiver();
  auto removed = rt.open_receiver();
  auto iso = rt.spawn(make_handler([](Isolate& self, Message&) { self.kill(); }));
  ASSERT_TRUE((*iso)->add_exit_listener(rx->id()).ok());
  ASSERT_TRUE((*iso)->add_exit_listener(rx->id()).ok());
  ASSERT_TRUE((*iso)->add_exit_listener(removed->id()).ok());
  ASSERT_TRUE((*iso)->remove_exit_listener(removed->id()).ok());
  EXPECT_EQ((*iso)->remove_exit_listener(removed->id()).error(), Errc::unknown_port);
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::killed);
  (*iso)->kill();
  auto late = rt.open_receiver();
  ASSERT_TRUE((*iso)->add_exit_listener(late->id()).ok());
  EXPECT_EQ(expect_exit(*late).reason, ExitReason::killed);
  // A marker through the same receivers proves nothing else was queued before it.
  ASSERT_TRUE(rt.post(rx->id(), Message::u64(99)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 99u);
  EXPECT_FALSE(removed->try_receive().ok());
}

// An exception escaping the handler reaches the error listeners; with errors_are_fatal the
// isolate then exits with ExitReason::error.
TEST(Lifecycle, ErrorListenersAndFatalErrors) {
  Runtime rt;
  auto errors = rt.open_receiver();
  auto exits = rt.open_receiver();
  auto thrower = [](Isolate&, Message& m) {
    if (m.as_u64() == 1) throw std::runtime_error("boom");
  };
  auto lenient = rt.spawn(make_handler(thrower));
  ASSERT_TRUE((*lenient)->add_error_listener(errors->id()).ok());
  ASSERT_TRUE(rt.post((*lenient)->main_port(), Message::u64(1)).ok());
  auto err = decode_isolate_error(expect_receive(*errors));
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->what, "boom");
  EXPECT_EQ(err->isolate, (*lenient)->main_port());
  EXPECT_FALSE((*lenient)->is_dead());

  auto fatal =
      rt.spawn(make_handler(thrower), IsolateOptions{.errors_are_fatal = ErrorsFatal::yes});
  ASSERT_TRUE((*fatal)->add_error_listener(errors->id()).ok());
  ASSERT_TRUE((*fatal)->add_exit_listener(exits->id()).ok());
  ASSERT_TRUE(rt.post((*fatal)->main_port(), Message::u64(1)).ok());
  EXPECT_EQ(decode_isolate_error(expect_receive(*errors))->what, "boom");
  const IsolateExit e = expect_exit(*exits);
  EXPECT_EQ(e.reason, ExitReason::error);
  EXPECT_EQ(e.isolate, (*fatal)->main_port());
  EXPECT_TRUE((*fatal)->is_dead());
}

// The exit rule: an isolate with no open port and no live timer exits normally — at once when
// its last port closes, or when its last timer has fired.
TEST(Lifecycle, ExitsWhenNothingCanReachIt) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto plain = rt.spawn(make_handler([](Isolate&, Message&) {}));
  ASSERT_TRUE((*plain)->add_exit_listener(rx->id()).ok());
  ASSERT_TRUE((*plain)->close_port((*plain)->main_port()).ok());  // from outside, idle
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::normal);
  EXPECT_TRUE((*plain)->is_dead());

  auto timer = std::make_shared<Timer>();
  auto timed =
      rt.spawn(make_handler([timer, out](Isolate& self, Message&) {
                 auto fn = [](Isolate& me, Timer&, std::uint64_t) {
                   (void)static_cast<SendPort*>(me.data())->post(Message::u64(3));
                 };
                 ASSERT_TRUE(self.start_timer(*timer, std::chrono::milliseconds(1), fn).ok());
                 ASSERT_TRUE(self.close_port(self.main_port()).ok());  // the timer keeps it alive
               }),
               IsolateOptions{.data = &out});
  ASSERT_TRUE((*timed)->add_exit_listener(rx->id()).ok());
  ASSERT_TRUE(rt.post((*timed)->main_port(), Message::u64(0)).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 3u);  // the timer fired first
  EXPECT_EQ(expect_exit(*rx).reason, ExitReason::normal);
}

// 10,000 isolates spawned and killed, each holding a port, a timer, an owned fd and a lock
// when it dies: fd count, live isolates and open ports come back to where they were, and (in
// builds without sanitizers, whose allocators keep freed memory in quarantine) RSS stays flat.
TEST(Lifecycle, SpawnKillLoopLeavesNothingBehind) {
  Runtime rt;
  ASSERT_TRUE(rt.event_handler().ok());
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  IsolateMutex mu;
  struct Ctx {
    IsolateMutex* mu = nullptr;
    SendPort* out = nullptr;
    Timer timer;
  };
  auto round = [&](int n) {
    for (int i = 0; i < n; ++i) {
      auto ctx = std::make_unique<Ctx>();
      ctx->mu = &mu;
      ctx->out = &out;
      auto iso = rt.spawn(
          make_handler([](Isolate& self, Message&) {
            auto* c = static_cast<Ctx*>(self.data());
            Status s = c->mu->lock(self);
            if (s.error() == Errc::owner_died) s = c->mu->mark_consistent(self);
            auto port = self.open_port();
            int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            FdOptions owned;
            owned.owned = true;
            Status reg =
                (*self.runtime().event_handler())->add_fd(fd, *port, FdEvents::readable, owned);
            Status tm = self.start_timer(c->timer, std::chrono::hours(1),
                                         [](Isolate&, Timer&, std::uint64_t) {});
            (void)c->out->post(Message::u64(s.ok() && port.ok() && reg.ok() && tm.ok()));
          }),
          IsolateOptions{.data = ctx.get()});
      ASSERT_TRUE(iso.ok());
      ASSERT_TRUE((*iso)->add_exit_listener(rx->id()).ok());
      ASSERT_TRUE(rt.post((*iso)->main_port(), Message::u64(0)).ok());
      ASSERT_EQ(expect_receive(*rx).as_u64(), 1u);
      (*iso)->kill();
      ASSERT_EQ(expect_exit(*rx).reason, ExitReason::killed);
    }
    flush_event_handler(rt);
    // The exit listener hears of an isolate before its runner drops the turn's reference to
    // it: wait for the last one's memory to go back (bounded), then count.
    const auto until = std::chrono::steady_clock::now() + test::kLongWait;
    while (rt.stats().isolates_live != 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
  };
  round(2'000);  // warm-up: slabs, maps and the allocator reach their working size
  const test::FdSet fds = test::open_fds();
  const long rss = rss_kib();
  const auto stats = rt.stats();
  round(8'000);
  EXPECT_EQ(test::fds_opened_since(fds), std::vector<std::string>{});
  EXPECT_EQ(stats.isolates_live, 0u);
  EXPECT_EQ(rt.stats().isolates_live, 0u);
  EXPECT_EQ(rt.stats().ports_open, stats.ports_open);
  EXPECT_EQ(rt.timer_stats().live, 0u);
  EXPECT_EQ((*rt.event_handler())->stats().registrations, 0u);
  EXPECT_FALSE(mu.is_locked());
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_LT(rss_kib() - rss, 2048) << "RSS grew over 8,000 spawn/kill cycles";
#else
  (void)rss;
#endif
}

}  // namespace
}  // namespace evh
