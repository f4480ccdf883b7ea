// EpollPoller on its own: the wait's own limit (`until`), which a pool waiting for its next timer
// in the poller relies on.
#include "io/epoll_poller.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

#include "io/io_test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using detail::MonoClock;
using detail::Poller;
using detail::PollEvent;

// A wait that ends for `until` alone ends at or after it (never before, whatever the kernel's
// timer slack), reports nothing, and `kNoWait` only looks.
TEST(EpollPoller, WaitUntilNeverEndsEarly) {
  auto p = std::move(detail::EpollPoller::create()).value();
  PollEvent events[8];
  for (std::chrono::nanoseconds wait : {1us, 37us, 450us, 3000us, 20000us}) {
    const auto until = MonoClock::now() + wait;
    auto r = p->wait(events, until);
    ASSERT_TRUE(r.ok());
    EXPECT_GE(MonoClock::now(), until) << wait.count();
    EXPECT_EQ(r->count, 0u);
    EXPECT_FALSE(r->woken);
    EXPECT_FALSE(r->deadline_reached);
  }
  auto r = p->wait(events, Poller::kNoWait);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 0u);
}

// A ready fd or a wake ends a wait with a far `until` at once, and the wait reports which.
TEST(EpollPoller, ReadinessAndWakeEndAWaitBeforeUntil) {
  auto p = std::move(detail::EpollPoller::create()).value();
  test::Pipe pipe;
  ASSERT_TRUE(p->add(pipe.r, FdEvents::readable, FdMode::edge, 7).ok());
  PollEvent events[8];
  pipe.put();
  auto r = p->wait(events, MonoClock::now() + 1h);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->count, 1u);
  EXPECT_EQ(events[0].token, 7u);
  p->wake();
  auto w = p->wait(events, Poller::kForever);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->woken);
  EXPECT_EQ(w->count, 0u);
  ASSERT_TRUE(p->remove(pipe.r).ok());
}

}  // namespace
}  // namespace evh
