// The event handler over a FakePoller: exact checks of what it asks of the kernel — when it
// writes the wake-up fd, when it re-arms the timer, what it does with events that share a batch
// with a close.
#include <evh/event_handler.h>
#include <evh/runtime.h>

#include <thread>

#include "io/fake_poller.h"
#include "io/io_test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using test::events_until_fence;
using test::FakePoller;
using test::next_event;
using test::Pipe;

class FakeEventHandler : public ::testing::TestWithParam<test::Drive> {
 protected:
  void SetUp() override {
    auto fake = std::make_unique<FakePoller>();
    fake_ = fake.get();
    handler_ = std::move(test::make_handler(rt_, std::move(fake), GetParam())).value();
    eh_ = handler_.eh;
    rx_ = std::move(rt_.open_receiver()).value();
  }

  Runtime rt_;
  FakePoller* fake_ = nullptr;  // owned by the handler
  test::HandlerUnderTest handler_;
  EventHandler* eh_ = nullptr;
  Receiver rx_;
};

// Readiness observed in the same batch as a close of its registration is dropped: the port
// hears `closed` and nothing else (the Dart VM handles its interrupt in event order and can
// deliver readiness after the close).
TEST_P(FakeEventHandler, ReadinessInSameBatchAsCloseIsDropped) {
  Pipe p;
  ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.mode = FdMode::edge}).ok());
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());  // the add has been executed
  const std::uint64_t token = *fake_->token_of(p.r);
  fake_->hold();
  fake_->await_in_wait();
  fake_->set_ready(p.r, FdEvents::readable);
  fake_->inject(token, FdEvents::readable);  // also a raw duplicate, as a completion would be
  ASSERT_TRUE(eh_->close_fd(p.r, rx_.id()).ok());
  p.r = -1;
  fake_->release();
  std::vector<IoEvent> seen = events_until_fence(*eh_, rx_);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].notice, IoNotice::closed);
}

// A stale token (an earlier registration of a reused fd number) is never delivered to the new
// registration.
TEST_P(FakeEventHandler, StaleTokenAfterReRegistrationIsIgnored) {
  Pipe p;
  ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.mode = FdMode::edge}).ok());
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  const std::uint64_t old_token = *fake_->token_of(p.r);
  ASSERT_TRUE(eh_->remove_fd(p.r, rx_.id()).ok());
  ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.mode = FdMode::edge}).ok());
  std::vector<IoEvent> seen = events_until_fence(*eh_, rx_);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].notice, IoNotice::unregistered);
  EXPECT_NE(*fake_->token_of(p.r), old_token);
  fake_->inject(old_token, FdEvents::readable);
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
}

// The wake-up fd is written once per sleep of the loop, not once per command.
TEST_P(FakeEventHandler, OneWakeupWriteForManyCommandsWhileAsleep) {
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  fake_->hold();
  fake_->await_in_wait();
  const int wakes_before = fake_->wakes();
  std::vector<Receiver> rxs;
  for (int i = 0; i < 100; ++i) {
    rxs.push_back(std::move(rt_.open_receiver()).value());
    ASSERT_TRUE(eh_->set_timeout(rxs.back().id(), EventHandler::Clock::now() + 1h).ok());
  }
  EXPECT_EQ(fake_->wakes() - wakes_before, 1);
  fake_->release();
}

// The native timer is re-armed only when the earliest deadline changes, and one expiry serves
// every due port.
TEST_P(FakeEventHandler, TimerRearmedOnlyWhenEarliestChanges) {
  std::vector<Receiver> rxs;
  for (int i = 0; i < 4; ++i) rxs.push_back(std::move(rt_.open_receiver()).value());
  const auto t0 = EventHandler::Clock::now() + 1h;
  // Waits until the loop has executed every command sent so far and gone back to sleep: it
  // re-arms the timer just before it waits. (A fence would use a timeout of its own.)
  std::uint64_t sent = 0;
  auto sync = [&] {
    const auto give_up = EventHandler::Clock::now() + test::kLongWait;
    while (!(eh_->stats().commands >= sent && fake_->in_wait())) {
      ASSERT_LT(EventHandler::Clock::now(), give_up);
      std::this_thread::yield();
    }
  };
  auto set = [&](int i, EventHandler::Clock::time_point at) {
    ++sent;
    ASSERT_TRUE(eh_->set_timeout(rxs[i].id(), at).ok());
  };
  auto clear = [&](int i) {
    ++sent;
    ASSERT_TRUE(eh_->clear_timeout(rxs[i].id()).ok());
  };
  sync();
  const int sets0 = fake_->deadline_sets();
  set(0, t0 + 3s);
  set(1, t0 + 5s);  // later: no re-arm
  set(2, t0 + 3s);  // equal: no re-arm
  sync();
  EXPECT_EQ(fake_->deadline_sets() - sets0, 1);
  EXPECT_EQ(fake_->deadline(), t0 + 3s);
  set(3, t0 + 1s);  // earlier: re-arm
  sync();
  EXPECT_EQ(fake_->deadline_sets() - sets0, 2);
  EXPECT_EQ(fake_->deadline(), t0 + 1s);
  clear(1);  // not the earliest: nothing
  sync();
  EXPECT_EQ(fake_->deadline_sets() - sets0, 2);
  clear(3);  // the earliest: back to t0 + 3s
  sync();
  EXPECT_EQ(fake_->deadline_sets() - sets0, 3);
  EXPECT_EQ(fake_->deadline(), t0 + 3s);
  const int clears0 = fake_->deadline_clears();
  clear(0);
  clear(2);
  sync();
  EXPECT_EQ(fake_->deadline_clears() - clears0, 1);
}

// Tokens: a level registration with its window used is parked (no busy re-reporting while the
// condition holds) and re-armed by the returned token.
TEST_P(FakeEventHandler, LevelWindowParksUntilTokenReturns) {
  Pipe p;
  ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable).ok());
  fake_->set_ready(p.r, FdEvents::readable);
  EXPECT_EQ(next_event(rx_).notice, IoNotice::ready);
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  ASSERT_TRUE(eh_->return_tokens(p.r, rx_.id()).ok());
  EXPECT_EQ(next_event(rx_).notice, IoNotice::ready);
  fake_->set_ready(p.r, FdEvents::none);
  ASSERT_TRUE(eh_->return_tokens(p.r, rx_.id()).ok());
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
}

INSTANTIATE_TEST_SUITE_P(Drives, FakeEventHandler,
                         ::testing::Values(test::Drive::pool, test::Drive::own_thread),
                         [](const auto& info) {
                           return std::string(test::drive_name(info.param));
                         });

}  // namespace
}  // namespace evh
