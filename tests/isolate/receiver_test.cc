#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <thread>

#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;

// No message: receive() times out with a clear code; a negative timeout is refused.
TEST(Receiver, TimesOutAndRejectsNegativeTimeout) {
  Runtime rt;
  auto rx = rt.open_receiver();
  ASSERT_TRUE(rx.ok());
  EXPECT_EQ(rx->receive(1ms).error(), Errc::timed_out);
  EXPECT_EQ(rx->try_receive().error(), Errc::timed_out);
  EXPECT_EQ(rx->receive(-1ms).error(), Errc::invalid_argument);
}

// A message posted from another thread while the receiver sleeps wakes it (the futex path:
// the spin window is disabled).
TEST(Receiver, WakesFromSleepOnPost) {
  Runtime rt(RuntimeOptions{.spin_before_park = 0us});
  auto rx = rt.open_receiver();
  const PortId id = rx->id();
  std::thread poster([&rt, id] {
    for (std::uint64_t i = 0; i < 200; ++i) ASSERT_TRUE(rt.post(id, Message::u64(i)).ok());
  });
  for (std::uint64_t i = 0; i < 200; ++i) EXPECT_EQ(test::expect_receive(*rx).as_u64(), i);
  poster.join();
}

// OOB overtakes at a receiver too; close releases what is queued and later posts fail.
TEST(Receiver, OobFirstAndCloseReleases) {
  Runtime rt;
  auto rx = rt.open_receiver();
  test::ReleaseCounter c;
  ASSERT_TRUE(rt.post(rx->id(), Message::u64(1)).ok());
  ASSERT_TRUE(rt.post(rx->id(), Message::u64(2), Priority::oob).ok());
  EXPECT_EQ(test::expect_receive(*rx).as_u64(), 2u);
  EXPECT_EQ(test::expect_receive(*rx).as_u64(), 1u);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(rt.post(rx->id(), c.make()).ok());
  const PortId id = rx->id();
  rx->close();
  EXPECT_EQ(c.finalized, 5u);
  EXPECT_EQ(rt.post(id, c.make()).error(), Errc::unknown_port);
  EXPECT_EQ(c.finalized, 6u);
  EXPECT_EQ(rx->receive(1ms).error(), Errc::port_closed);
}

// Regression: a timeout too large to add to "now" (nanoseconds::max()) overflowed into a
// deadline in the past, so receive() gave up at once; it means "no limit" (UBSan also flagged the
// signed overflow). The post comes from a thread started after the receive began waiting.
TEST(Receiver, HugeTimeoutMeansNoLimit) {
  Runtime rt(RuntimeOptions{.spin_before_park = 0us});
  auto rx = rt.open_receiver();
  const PortId id = rx->id();
  std::thread poster([&rt, id] { ASSERT_TRUE(rt.post(id, Message::u64(7)).ok()); });
  auto m = rx->receive(std::chrono::nanoseconds::max());
  poster.join();
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->as_u64(), 7u);
}

// Dropping a Receiver with queued messages releases them.
TEST(Receiver, DestructorReleasesQueued) {
  test::ReleaseCounter c;
  Runtime rt;
  {
    auto rx = rt.open_receiver();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(rt.post(rx->id(), c.make()).ok());
  }
  EXPECT_EQ(c.finalized, 3u);
}

}  // namespace
}  // namespace evh
