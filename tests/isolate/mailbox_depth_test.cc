// Mailbox depth: IsolateStats and RuntimeStats report the current and the peak depth, and the
// high-water callback tells when a mailbox passes the embedder's mark (issue 19). A paused
// isolate keeps its messages queued, so the depths here are exact, not timing-dependent.
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;

// What the high-water callback saw, reached through Isolate::data().
struct Marks {
  std::atomic<int> calls{0};
  std::atomic<std::uint64_t> last_depth{0};
};

void on_high_water(Isolate& isolate, std::uint64_t depth) {
  auto& marks = *static_cast<Marks*>(isolate.data());
  marks.last_depth.store(depth);
  marks.calls.fetch_add(1);
}

// An isolate that reports each message's value to `done` once it has seen `every` of them.
IsolateHandler counting_handler(SendPort done, std::uint64_t every) {
  return make_handler([done, every, seen = std::uint64_t{0}](Isolate&, Message&) mutable {
    if (++seen % every == 0) (void)done.post(Message::u64(seen));
  });
}

TEST(MailboxDepth, CurrentAndPeakWhilePausedAndAfterDraining) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  auto iso = rt.spawn(counting_handler(done, 100));
  ASSERT_TRUE(iso.ok());
  Isolate& i = **iso;
  EXPECT_EQ(i.stats().mailbox_depth, 0u);
  EXPECT_EQ(i.stats().mailbox_peak, 0u);

  const PauseCapability cap = i.pause();
  SendPort to = *rt.send_port(i.main_port());
  for (std::uint64_t n = 0; n < 60; ++n) ASSERT_TRUE(to.post(Message::u64(n)).ok());
  std::vector<Message> batch;
  for (std::uint64_t n = 0; n < 40; ++n) batch.push_back(Message::u64(n));
  ASSERT_TRUE(to.post_batch(batch).ok());
  EXPECT_EQ(i.stats().mailbox_depth, 100u);
  EXPECT_EQ(i.stats().mailbox_peak, 100u);
  const RuntimeStats paused = rt.stats();
  EXPECT_EQ(paused.mailbox_depth, 100u);
  EXPECT_EQ(paused.mailbox_depth_max, 100u);
  EXPECT_EQ(paused.mailbox_peak, 100u);

  ASSERT_TRUE(i.resume(cap).ok());
  EXPECT_EQ(expect_receive(*rx).as_u64(), 100u);
  // The last message was taken before the handler ran for it.
  EXPECT_EQ(i.stats().mailbox_depth, 0u);
  // The first turn after the resume took the first message with 99 behind it.
  EXPECT_EQ(i.stats().mailbox_peak, 100u);
  EXPECT_EQ(rt.stats().mailbox_depth, 0u);
  EXPECT_EQ(rt.stats().mailbox_peak, 100u);
  i.destroy();
}

TEST(MailboxDepth, HighWaterCallbackOncePerExcursionNothingDropped) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  Marks marks;
  IsolateOptions options;
  options.data = &marks;
  options.mailbox_high_water = 10;
  options.on_mailbox_high_water = &on_high_water;
  auto iso = rt.spawn(counting_handler(done, 30), options);
  ASSERT_TRUE(iso.ok());
  Isolate& i = **iso;
  SendPort to = *rt.send_port(i.main_port());

  for (int round = 1; round <= 2; ++round) {
    const PauseCapability cap = i.pause();
    for (std::uint64_t n = 0; n < 30; ++n) ASSERT_TRUE(to.post(Message::u64(n)).ok());
    ASSERT_TRUE(i.resume(cap).ok());
    // Every message is delivered: the mark drops nothing.
    EXPECT_EQ(expect_receive(*rx).as_u64(), 30u * static_cast<std::uint64_t>(round));
    // Told once per excursion past the mark, with the depth the turn saw.
    EXPECT_EQ(marks.calls.load(), round);
    EXPECT_EQ(marks.last_depth.load(), 30u);
  }
  // (handled is counted after the handler returns: the 60th may not be counted yet.)
  EXPECT_EQ(i.stats().dropped, 0u);
  i.destroy();
}

// A turn that knows of unread messages does not look at the producers' line again until it has
// read them (issue 19: each look took that line from the producers); once it has, one look sees
// everything posted meanwhile. Here 100 are queued, the handler holds the first while 200 more
// arrive: the peak must show the later ones (a turn that never looked again would say 100).
TEST(MailboxDepth, PeakSeesWhatArrivedWhileTheTurnReadWhatItKnew) {
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort done = *rt.send_port(rx->id());
  std::atomic<bool> entered{false};
  std::atomic<bool> go{false};
  auto iso = rt.spawn(
      make_handler([&entered, &go, done, seen = std::uint64_t{0}](Isolate&, Message&) mutable {
        if (seen++ == 0) {
          entered.store(true);
          entered.notify_one();
          go.wait(false);
        }
        if (seen == 300) (void)done.post(Message::u64(seen));
      }));
  ASSERT_TRUE(iso.ok());
  Isolate& i = **iso;
  const PauseCapability cap = i.pause();
  SendPort to = *rt.send_port(i.main_port());
  for (std::uint64_t n = 0; n < 100; ++n) ASSERT_TRUE(to.post(Message::u64(n)).ok());
  ASSERT_TRUE(i.resume(cap).ok());
  entered.wait(false);
  for (std::uint64_t n = 100; n < 300; ++n) ASSERT_TRUE(to.post(Message::u64(n)).ok());
  go.store(true);
  go.notify_one();
  EXPECT_EQ(expect_receive(*rx).as_u64(), 300u);
  // At least the 200 that were queued when the turn had read the first 100 and looked again.
  EXPECT_GE(i.stats().mailbox_peak, 200u);
  EXPECT_EQ(i.stats().mailbox_depth, 0u);
  i.destroy();
}

}  // namespace
}  // namespace evh
