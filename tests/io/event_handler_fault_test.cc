// The event handler against a kernel that says no: every system call it makes — through the
// Poller (epoll_ctl, epoll_wait, timerfd_settime) and through Sys (fcntl, fstat, accept4, close)
// — made to fail with EMFILE, EAGAIN and EINTR in turn, and what the handler does about it:
// retry, report to the caller or the port, park, or carry on. The fakes forward to the kernel
// otherwise, so the fds are real.
#include <errno.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>

#include <iterator>
#include <thread>

#include "io/fake_poller.h"
#include "io/io_test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using test::events_until_fence;
using test::FakePoller;
using test::FakeSys;
using test::fd_is_open;
using test::Listener;
using test::next_event;
using test::Pipe;

constexpr int kErrnos[] = {EMFILE, EAGAIN, EINTR};

class EventHandlerFaults : public ::testing::TestWithParam<test::Drive> {
 protected:
  void SetUp() override {
    auto fake = std::make_unique<FakePoller>();
    fake_ = fake.get();
    handler_ = std::move(test::make_handler(rt_, std::move(fake), GetParam(), sys_)).value();
    eh_ = handler_.eh;
    rx_ = std::move(rt_.open_receiver()).value();
  }

  FakeSys sys_;  // first: the handler uses it until it is destroyed
  Runtime rt_;
  FakePoller* fake_ = nullptr;  // owned by the handler
  test::HandlerUnderTest handler_;
  EventHandler* eh_ = nullptr;
  Receiver rx_;
};

// fcntl(F_GETFD) and fstat interrupted by a signal are called again; an fstat that fails
// otherwise is the caller's error; F_GETFD can only fail for an fd that is not open, so its
// failure is EBADF whatever the errno.
TEST_P(EventHandlerFaults, FdCheckRetriesInterruptedCallsAndReportsOthers) {
  Pipe a, b;
  sys_.fail(FakeSys::Op::fcntl_getfd, EINTR, 2);
  const int getfd0 = sys_.calls(FakeSys::Op::fcntl_getfd);
  EXPECT_TRUE(eh_->add_fd(a.r, rx_.id(), FdEvents::readable).ok());
  EXPECT_EQ(sys_.calls(FakeSys::Op::fcntl_getfd) - getfd0, 3);
  sys_.fail(FakeSys::Op::fstat, EINTR, 2);
  EXPECT_TRUE(eh_->add_fd(b.r, rx_.id(), FdEvents::readable).ok());
  for (int e : {EMFILE, EAGAIN}) {
    sys_.fail(FakeSys::Op::fstat, e);
    EXPECT_EQ(eh_->add_fd(a.w, rx_.id(), FdEvents::writable).error().value(), e);
    sys_.fail(FakeSys::Op::fcntl_getfd, e);
    EXPECT_EQ(eh_->add_fd(a.w, rx_.id(), FdEvents::writable).error().value(), EBADF);
  }
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());  // nothing was queued for the failures
}

// epoll_ctl(ADD) refused: the port hears `error` with the errno, nothing else, and an fd handed
// over is closed (once).
TEST_P(EventHandlerFaults, RefusedWatchIsReportedAndClosesAnOwnedFd) {
  for (int e : kErrnos) {
    Pipe p;
    const int closes0 = sys_.calls(FakeSys::Op::close);
    fake_->fail(FakePoller::Op::add, e);
    ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.owned = true}).ok());
    const IoEvent ev = next_event(rx_);
    EXPECT_EQ(ev.notice, IoNotice::error);
    EXPECT_EQ(ev.error, e);
    EXPECT_EQ(ev.fd, p.r);
    EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
    EXPECT_EQ(sys_.calls(FakeSys::Op::close) - closes0, 1);
    EXPECT_FALSE(fd_is_open(p.r));
    p.r = -1;  // closed by the handler
  }
}

// epoll_ctl(MOD) refused on a re-arm: the registration ends — `error` with the errno, then
// `unregistered` — and the fd is no longer watched.
TEST_P(EventHandlerFaults, RefusedRearmEndsTheRegistration) {
  for (int e : kErrnos) {
    Pipe p;
    ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.mode = FdMode::edge}).ok());
    EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
    fake_->fail(FakePoller::Op::modify, e);
    ASSERT_TRUE(eh_->modify_fd(p.r, rx_.id(), FdEvents::readable).ok());
    const IoEvent error = next_event(rx_);
    EXPECT_EQ(error.notice, IoNotice::error);
    EXPECT_EQ(error.error, e);
    EXPECT_EQ(next_event(rx_).notice, IoNotice::unregistered);
    EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
    EXPECT_FALSE(fake_->watch_of(p.r).has_value());
  }
}

// epoll_ctl(DEL) refused: the registration ends all the same, with its one final notice.
TEST_P(EventHandlerFaults, RefusedRemoveStillEndsTheRegistration) {
  // Kept open to the end: the fake, unlike epoll, goes on watching an fd whose removal it
  // refused, so a reused fd number would find it still there.
  Pipe pipes[std::size(kErrnos)];
  for (std::size_t i = 0; i < std::size(kErrnos); ++i) {
    const int e = kErrnos[i];
    Pipe& p = pipes[i];
    ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.mode = FdMode::edge}).ok());
    fake_->fail(FakePoller::Op::remove, e);
    ASSERT_TRUE(eh_->remove_fd(p.r, rx_.id()).ok());
    EXPECT_EQ(next_event(rx_).notice, IoNotice::unregistered);
    EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  }
}

// epoll_wait interrupted: the loop waits again and loses nothing. (EMFILE and EAGAIN are not
// injected here: epoll_wait cannot return them, and any error but EINTR is a programming error
// that debug builds stop on.)
TEST_P(EventHandlerFaults, InterruptedWaitIsRetried) {
  Pipe p;
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  const int waits0 = fake_->calls(FakePoller::Op::wait);
  fake_->fail(FakePoller::Op::wait, EINTR, 3);
  fake_->set_ready(p.r, FdEvents::readable);
  ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable).ok());
  const IoEvent ev = next_event(rx_);
  EXPECT_EQ(ev.notice, IoNotice::ready);
  EXPECT_EQ(ev.fd, p.r);
  EXPECT_GE(fake_->calls(FakePoller::Op::wait) - waits0, 4);
}

// timerfd_settime refused: the deadline stays unarmed until the next pass of the loop arms it
// again, and then fires (never early).
TEST_P(EventHandlerFaults, RefusedTimerArmIsRetriedOnTheNextPass) {
  Pipe p;
  for (int e : kErrnos) {
    EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
    fake_->fail(FakePoller::Op::set_deadline, e);
    const int arms0 = fake_->calls(FakePoller::Op::set_deadline);
    const auto deadline = EventHandler::Clock::now();
    ASSERT_TRUE(eh_->set_timeout(rx_.id(), deadline).ok());
    // Wait for the refused arm (a condition, not a time); the loop then sleeps, unarmed.
    while (fake_->calls(FakePoller::Op::set_deadline) == arms0) std::this_thread::yield();
    // Any command makes a pass: tokens for a registration that does not exist are ignored.
    ASSERT_TRUE(eh_->return_tokens(p.r, rx_.id()).ok());
    const IoEvent ev = next_event(rx_);
    EXPECT_EQ(ev.notice, IoNotice::timeout);
    EXPECT_EQ(ev.deadline_ns, detail::to_ns(deadline));
  }
}

// accept4 interrupted by a signal is called again: the caller gets the connection.
TEST_P(EventHandlerFaults, InterruptedAcceptIsRetried) {
  Listener l;
  const int c = l.connect();
  sys_.fail(FakeSys::Op::accept4, EINTR, 2);
  const int accepts0 = sys_.calls(FakeSys::Op::accept4);
  auto fd = eh_->accept(l.fd, rx_.id());
  ASSERT_TRUE(fd.ok()) << fd.error().message();
  EXPECT_EQ(sys_.calls(FakeSys::Op::accept4) - accepts0, 3);
  ::close(*fd);
  ::close(c);
}

// accept4 with nothing pending (EAGAIN) is the caller's answer; the registration stays armed.
TEST_P(EventHandlerFaults, AcceptWithNothingPendingLeavesTheRegistrationArmed) {
  Listener l;
  ASSERT_TRUE(eh_->add_fd(l.fd, rx_.id(), FdEvents::readable).ok());
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  sys_.fail(FakeSys::Op::accept4, EAGAIN);
  EXPECT_EQ(eh_->accept(l.fd, rx_.id()).error().value(), EAGAIN);
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  const auto watch = fake_->watch_of(l.fd);
  ASSERT_TRUE(watch.has_value());
  EXPECT_EQ(watch->first, FdEvents::readable);
}

// accept4 out of fds (EMFILE): the caller gets EMFILE and the registration is parked for a
// back-off rather than reported again at once (the busy loop of dart-lang/sdk#22181); when the
// back-off ends it is armed again and the pending connection is reported.
TEST_P(EventHandlerFaults, AcceptOutOfFdsParksTheRegistrationForABackoff) {
  Listener l;
  ASSERT_TRUE(eh_->add_fd(l.fd, rx_.id(), FdEvents::readable).ok());
  EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
  sys_.fail(FakeSys::Op::accept4, EMFILE);
  EXPECT_EQ(eh_->accept(l.fd, rx_.id()).error().value(), EMFILE);
  fake_->set_ready(l.fd, FdEvents::readable);
  const IoEvent ev = next_event(rx_);
  EXPECT_EQ(ev.notice, IoNotice::ready);
  EXPECT_EQ(ev.fd, l.fd);
  // What the kernel was told before that report: parked (no interest, oneshot), then armed.
  const auto log = fake_->modifies_of(l.fd);
  ASSERT_GE(log.size(), 2u);
  EXPECT_EQ(log[0], std::make_pair(FdEvents::none, FdMode::oneshot));
  EXPECT_EQ(log[1], std::make_pair(FdEvents::readable, FdMode::level));
}

// close() of an fd the handler owns is called once whatever it returns: on Linux the fd is gone
// even after EINTR, and a second close could close another file. The port hears `closed`.
TEST_P(EventHandlerFaults, FailedCloseIsNotRetried) {
  for (int e : kErrnos) {
    Pipe p;
    ASSERT_TRUE(eh_->add_fd(p.r, rx_.id(), FdEvents::readable, {.mode = FdMode::edge}).ok());
    EXPECT_TRUE(events_until_fence(*eh_, rx_).empty());
    const int closes0 = sys_.calls(FakeSys::Op::close);
    sys_.fail(FakeSys::Op::close, e);
    ASSERT_TRUE(eh_->close_fd(p.r, rx_.id()).ok());
    EXPECT_EQ(next_event(rx_).notice, IoNotice::closed);
    EXPECT_EQ(sys_.calls(FakeSys::Op::close) - closes0, 1);
    EXPECT_FALSE(fd_is_open(p.r));
    p.r = -1;
  }
}

INSTANTIATE_TEST_SUITE_P(Drives, EventHandlerFaults,
                         ::testing::Values(test::Drive::pool, test::Drive::own_thread),
                         [](const auto& info) {
                           return std::string(test::drive_name(info.param));
                         });

}  // namespace
}  // namespace evh
