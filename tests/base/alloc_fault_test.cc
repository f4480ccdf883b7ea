// Allocation failure (issue 14): the library's own allocation sites fail one at a time through
// the seam in base/alloc_fault.h, and each call that met the failure ends in ENOMEM with nothing
// leaked — payloads finalized exactly once, no port, isolate, timer or registration left behind,
// fds untouched — and the structures it touched (queues, the port map) keep working.
#include "base/alloc_fault.h"

#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <vector>

#include "io/fake_poller.h"
#include "io/io_test_util.h"
#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using detail::arm_alloc_fault;
using detail::disarm_alloc_fault;
using test::expect_receive;
using test::ReleaseCounter;

const std::error_code kNoMemory = std::make_error_code(std::errc::not_enough_memory);

// A paused isolate that, once resumed, forwards every message to `out`.
Result<IsolateRef> spawn_forwarder(Runtime& rt, SendPort out) {
  return rt.spawn(make_handler([out](Isolate&, Message& m) { (void)out.post(std::move(m)); }));
}

// The end of a batch of 1..600 that failed part-way, behind a 0: a marker (1000) is posted after
// it and the paused isolate resumed; what it forwards to `rx` is 0, 1, 2, ... up to the marker,
// holding some of the batch but not all of it.
void expect_a_prefix_queued(const SendPort& to, const IsolateRef& iso, PauseCapability paused,
                            Receiver& rx) {
  ASSERT_TRUE(to.post(Message::u64(1000)).ok());
  ASSERT_TRUE(iso->resume(paused).ok());
  std::uint64_t expected = 0;
  for (;;) {
    const std::uint64_t v = expect_receive(rx).as_u64();
    if (v == 1000) break;
    ASSERT_EQ(v, expected++);
  }
  EXPECT_GT(expected, 1u) << "nothing of the batch was queued";
  EXPECT_LT(expected, 601u) << "the whole batch was queued";
}

// Every post that needs a new queue block meets a failed allocation: it returns ENOMEM, a native
// payload is released by the post (once), and the queue is untouched — the retry succeeds and
// the isolate receives every accepted message in order. By id (the port map's path) and through
// a SendPort alike; the OOB queue (made on first use) and a Receiver's queue likewise.
TEST(AllocFault, PostThatNeedsABlockFailsWithEnomemAndKeepsTheQueue) {
  ReleaseCounter c;
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto iso = spawn_forwarder(rt, out);
  ASSERT_TRUE(iso.ok());
  const PauseCapability paused = (*iso)->pause();
  const PortId main = (*iso)->main_port();
  SendPort to = *rt.send_port(main);
  constexpr std::uint64_t kCount = 1000;  // about a dozen blocks
  int failures = 0;
  for (std::uint64_t i = 0; i < kCount; ++i) {
    auto post = [&](Message m) {
      return i % 2 == 0 ? rt.post(main, std::move(m)) : to.post(std::move(m));
    };
    arm_alloc_fault(1);
    const Status st = post(Message::u64(i));
    if (!disarm_alloc_fault()) {
      ASSERT_TRUE(st.ok()) << st.error().message();
      continue;
    }
    ++failures;
    ASSERT_EQ(st.error(), kNoMemory);
    const std::uint64_t released = c.finalized.load();
    arm_alloc_fault(1);
    ASSERT_EQ(post(c.make()).error(), kNoMemory);
    ASSERT_TRUE(disarm_alloc_fault());
    EXPECT_EQ(c.finalized.load(), released + 1) << "a failed post releases its payload";
    ASSERT_TRUE(post(Message::u64(i)).ok());  // the retry finds the queue as it was
  }
  EXPECT_GT(failures, 5);
  // OOB: the queue itself, then its first block.
  for (std::uint64_t n = 1; n <= 2; ++n) {
    arm_alloc_fault(n);
    EXPECT_EQ(rt.post(main, c.make(), Priority::oob).error(), kNoMemory);
    EXPECT_TRUE(disarm_alloc_fault());
  }
  ASSERT_TRUE(rt.post(main, Message::u64(kCount), Priority::oob).ok());
  ASSERT_TRUE((*iso)->resume(paused).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), kCount);  // OOB first
  for (std::uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(expect_receive(*rx).as_u64(), i);
  // A Receiver's queue: its first block.
  auto rx2 = rt.open_receiver();
  arm_alloc_fault(1);
  EXPECT_EQ(rt.post(rx2->id(), c.make()).error(), kNoMemory);
  EXPECT_TRUE(disarm_alloc_fault());
  ASSERT_TRUE(rt.post(rx2->id(), Message::u64(5)).ok());
  EXPECT_EQ(expect_receive(*rx2).as_u64(), 5u);
  EXPECT_EQ(c.finalized.load(), static_cast<std::uint64_t>(failures) + 3);
  EXPECT_EQ(c.taken.load(), 0u);
}

// A batch that needs a new block part-way: the messages that fit are queued (and delivered, in
// order), the rest are released by the call, which returns ENOMEM; every payload once.
TEST(AllocFault, BatchThatNeedsABlockQueuesAPrefixAndReleasesTheRest) {
  ReleaseCounter c;
  {
    Runtime rt;
    auto rx = rt.open_receiver();
    SendPort out = *rt.send_port(rx->id());
    auto iso = spawn_forwarder(rt, out);
    ASSERT_TRUE(iso.ok());
    const PauseCapability paused = (*iso)->pause();
    SendPort to = *rt.send_port((*iso)->main_port());
    ASSERT_TRUE(to.post(Message::u64(0)).ok());  // the first block
    std::vector<Message> batch;
    for (std::uint64_t i = 1; i <= 600; ++i) batch.push_back(Message::u64(i));
    // 600 like messages to the main port (runs: a header per block, then one word each) span
    // two more blocks: the first is allocated (before the claim that fills the current block),
    // the second is not.
    arm_alloc_fault(2);
    EXPECT_EQ(to.post_batch(batch).error(), kNoMemory);
    ASSERT_TRUE(disarm_alloc_fault());
    for (const Message& m : batch) EXPECT_EQ(m.kind(), Message::Kind::empty);
    ASSERT_NO_FATAL_FAILURE(expect_a_prefix_queued(to, *iso, paused, *rx));
    // Native payloads: every one finalized once, queued or not.
    batch.clear();
    for (int i = 0; i < 200; ++i) batch.push_back(c.make());
    arm_alloc_fault(1);
    const Status st = to.post_batch(batch);
    const bool fired = disarm_alloc_fault();
    EXPECT_EQ(st.ok(), !fired);
  }
  EXPECT_EQ(c.finalized.load(), 200u);
}

// A packed post that needs a new block part-way: the values that fit are queued (and delivered,
// in order, to a batch handler), the call returns ENOMEM, and the mailbox goes on working.
TEST(AllocFault, PackedPostThatNeedsABlockQueuesAPrefix) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto iso = rt.spawn(make_batch_handler([out](Isolate&, std::span<Message> ms) {
    for (Message& m : ms) (void)out.post(std::move(m));
  }));
  ASSERT_TRUE(iso.ok());
  const PauseCapability paused = (*iso)->pause();
  SendPort to = *rt.send_port((*iso)->main_port());
  ASSERT_TRUE(to.post(Message::u64(0)).ok());  // the first block
  std::vector<std::uint64_t> values;
  for (std::uint64_t i = 1; i <= 600; ++i) values.push_back(i);
  // As the message batch above: one more block is allocated, the second is not.
  arm_alloc_fault(2);
  EXPECT_EQ(to.post_u64_batch(values).error(), kNoMemory);
  ASSERT_TRUE(disarm_alloc_fault());
  ASSERT_NO_FATAL_FAILURE(expect_a_prefix_queued(to, *iso, paused, *rx));
}

// Opening a Receiver with each of its allocations failing in turn: ENOMEM, and no port opened.
TEST(AllocFault, OpenReceiverFailsWithEnomemAndOpensNoPort) {
  Runtime rt;
  const std::uint64_t ports = rt.stats().ports_open;
  Receiver opened;
  std::uint64_t n = 1;
  for (;; ++n) {
    arm_alloc_fault(n);
    auto r = rt.open_receiver();
    if (!disarm_alloc_fault()) {
      ASSERT_TRUE(r.ok());
      opened = std::move(r).value();
      break;
    }
    EXPECT_EQ(r.error(), kNoMemory) << "site " << n;
    EXPECT_EQ(rt.stats().ports_open, ports) << "site " << n;
  }
  EXPECT_GE(n, 3u) << "the receiver, its port record and the map's first table";
  EXPECT_EQ(rt.stats().ports_open, ports + 1);
}

// Inside a turn: open_port() and the first start_timer() (which makes the isolate's timer record
// and its wakeup port) with each allocation failing in turn: ENOMEM, no port left open, the timer
// not armed; then both work.
TEST(AllocFault, OpenPortAndFirstTimerFailWithEnomemInsideATurn) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  struct Report {
    std::uint64_t port_failures = 0, timer_failures = 0, wrong = 0;
  };
  auto report = std::make_shared<Report>();
  auto timer = std::make_shared<Timer>();
  auto iso = rt.spawn(make_handler([&rt, out, report, timer](Isolate& self, Message&) {
    const std::uint64_t ports = rt.stats().ports_open;
    for (std::uint64_t n = 1;; ++n) {
      arm_alloc_fault(n);
      auto p = self.open_port();
      if (!disarm_alloc_fault()) {
        if (!p.ok() || rt.stats().ports_open != ports + 1) ++report->wrong;
        if (p.ok()) (void)self.close_port(*p);
        break;
      }
      ++report->port_failures;
      if (p.error() != kNoMemory || rt.stats().ports_open != ports) ++report->wrong;
    }
    auto fire = [](Isolate&, Timer&, std::uint64_t) {};
    for (std::uint64_t n = 1;; ++n) {
      arm_alloc_fault(n);
      const Status st = self.start_timer(*timer, 1h, fire);
      if (!disarm_alloc_fault()) {
        if (!st.ok() || !timer->armed()) ++report->wrong;
        (void)self.cancel_timer(*timer);
        break;
      }
      ++report->timer_failures;
      if (st.error() != kNoMemory || timer->armed() || rt.stats().ports_open != ports) {
        ++report->wrong;
      }
    }
    (void)out.post(Message::u64(1));
  }));
  ASSERT_TRUE(iso.ok());
  ASSERT_TRUE(rt.post((*iso)->main_port(), Message{}).ok());
  ASSERT_EQ(expect_receive(*rx).as_u64(), 1u);
  EXPECT_EQ(report->wrong, 0u);
  EXPECT_GE(report->port_failures, 2u) << "the life record, the port record";
  EXPECT_GE(report->timer_failures, 2u) << "the wakeup port, the timer record";
}

// spawn() with each allocation failing in turn (an isolate with errors_are_fatal, so that its
// life record is made at once): ENOMEM, the handler's state released exactly once, nothing live.
TEST(AllocFault, SpawnFailsWithEnomemAndReleasesTheHandlerOnce) {
  Runtime rt;
  auto token = std::make_shared<int>(0);
  const std::uint64_t live = rt.stats().isolates_live;
  const std::uint64_t ports = rt.stats().ports_open;
  std::uint64_t n = 1;
  for (;; ++n) {
    arm_alloc_fault(n);
    auto iso = rt.spawn(make_handler([token](Isolate&, Message&) {}),
                        IsolateOptions{.errors_are_fatal = ErrorsFatal::yes});
    if (!disarm_alloc_fault()) {
      ASSERT_TRUE(iso.ok());
      EXPECT_EQ(token.use_count(), 2);
      (*iso)->kill(KillPriority::immediate);
      break;
    }
    EXPECT_EQ(iso.error(), kNoMemory) << "site " << n;
    EXPECT_EQ(token.use_count(), 1) << "site " << n << ": the handler was not released";
    EXPECT_EQ(rt.stats().isolates_live, live) << "site " << n;
    EXPECT_EQ(rt.stats().ports_open, ports) << "site " << n;
  }
  EXPECT_GE(n, 4u) << "the isolate, its life record, its port record, the map's table";
}

// add_fd(): the command queue's block on the caller's side, then the handler's registration
// records on its own thread (armed there from the fake poller's add). Each failure is ENOMEM —
// returned, or posted as the registration's one error notice — with no registration left, the
// fd untouched and still the caller's; then the same add works.
TEST(AllocFault, AddFdFailsWithEnomemOnEitherSide) {
  Runtime rt;
  auto fake = std::make_unique<test::FakePoller>();
  test::FakePoller* poller = fake.get();
  auto handler = test::make_handler(rt, std::move(fake), test::Drive::own_thread);
  ASSERT_TRUE(handler.ok());
  EventHandler& eh = *handler->eh;
  auto rx = rt.open_receiver();
  test::Pipe p;
  // The caller's side: the command queue has no block yet.
  arm_alloc_fault(1);
  EXPECT_EQ(eh.add_fd(p.r, rx->id(), FdEvents::readable).error(), kNoMemory);
  EXPECT_TRUE(disarm_alloc_fault());
  EXPECT_TRUE(test::events_until_fence(eh, *rx).empty());
  // The handler's side: the entry, then the port's index.
  for (std::uint64_t n = 1; n <= 2; ++n) {
    poller->set_hooks([n] { arm_alloc_fault(n); }, [] { (void)disarm_alloc_fault(); });
    ASSERT_TRUE(eh.add_fd(p.r, rx->id(), FdEvents::readable).ok());
    std::vector<IoEvent> seen = test::events_until_fence(eh, *rx);
    ASSERT_EQ(seen.size(), 1u) << "site " << n;
    EXPECT_EQ(seen[0].notice, IoNotice::error);
    EXPECT_EQ(seen[0].error, ENOMEM);
    EXPECT_FALSE(poller->watched(p.r)) << "site " << n << ": the watch was not undone";
    EXPECT_EQ(eh.stats().registrations, 0u);
    EXPECT_TRUE(test::fd_is_open(p.r));
  }
  poller->set_hooks(nullptr, nullptr);
  ASSERT_TRUE(eh.add_fd(p.r, rx->id(), FdEvents::readable).ok());
  EXPECT_TRUE(test::events_until_fence(eh, *rx).empty());
  EXPECT_EQ(eh.stats().registrations, 1u);
  ASSERT_TRUE(eh.remove_fd(p.r, rx->id()).ok());
  EXPECT_EQ(test::next_event(*rx).notice, IoNotice::unregistered);
  EXPECT_TRUE(test::fd_is_open(p.r));
}

}  // namespace
}  // namespace evh
