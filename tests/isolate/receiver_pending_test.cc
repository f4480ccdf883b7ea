// Receiver::receive against a producer stopped in the middle of a post: a slot claimed and not
// yet written (its record's words claimed, its header not published). White-box: the receiver is
// built on a directory of its own, and the test plays the stalled producer on the receiver's queue.
#include <evh/message.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "isolate/receiver_impl.h"

namespace evh::detail {

struct ReceiverTestAccess {
  static MpscQueue& normal(ReceiverImpl& r) { return r.normal_; }
};

namespace {

using namespace std::chrono_literals;

// Just enough of a port directory for one receiver.
class OnePortDirectory final : public PortDirectory {
 public:
  Status post(PortId, Message&&, Priority) noexcept override { return Errc::unknown_port; }
  Status post_batch(PortId, std::span<Message> messages, Priority) noexcept override {
    for (Message& m : messages) m = Message{};
    return Errc::unknown_port;
  }
  PortState* acquire(PortId) noexcept override { return nullptr; }
  PortState* open(PortTarget& target) override {
    port_ = PortState::make(PortId{42}, &target, nullptr);
    port_->retain();  // the caller's reference; ours until close()
    return port_;
  }
  void close(PortId) noexcept override {
    if (port_ == nullptr) return;
    port_->mark_closed();
    port_->release();
    port_ = nullptr;
  }
  Status note_io(PortId) noexcept override { return Errc::unknown_port; }
  PortId next_id() noexcept override { return PortId{43}; }

 private:
  PortState* port_ = nullptr;
};

// Defect 8 (issue 14): receive() spun on a pending slot without looking at its deadline, so a
// producer preempted (or stopped) between claiming a slot and writing it held a receive with a
// timeout for as long as that took. Now the timeout holds, and the message is received once it
// is written.
TEST(ReceiverPending, TimeoutHoldsWhileASlotIsClaimedButNotWritten) {
  OnePortDirectory dir;
  auto* r = new ReceiverImpl(dir, RuntimeClock(), 0ns);
  MpscQueue& q = ReceiverTestAccess::normal(*r);
  r->enqueue(Message::u64(1), Priority::normal);
  ASSERT_EQ(r->receive(0ns).value().as_u64(), 1u);  // the queue's first block is in place
  // The record the stalled producer will write, made by a push into a scratch queue (the words
  // of a u64 message are plain data: copying them moves nothing that needs releasing).
  MpscQueue scratch;
  scratch.push(Message::u64(2));
  const std::uint32_t words = static_cast<std::uint32_t>(scratch.tail.pos.load() & kOffsetMask);
  const std::uint64_t* record = queue_tail_block(scratch.tail)->words();
  // The stalled producer: the next record's words claimed (one message counted), not written.
  const std::uint64_t pos = q.tail.pos.load(std::memory_order_seq_cst);
  ASSERT_EQ(queue_count(pos), 1u);
  const std::uint32_t offset = static_cast<std::uint32_t>(pos & kOffsetMask);
  ASSERT_LE(offset + words, kBlockWords);
  q.tail.pos.store(((queue_count(pos) + 1) << kOffsetBits) | (offset + words),
                   std::memory_order_seq_cst);
  auto got = r->receive(1ms);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error(), Errc::timed_out);
  EXPECT_EQ(r->receive(0ns).error(), Errc::timed_out);  // try_receive: would wait, so no
  // The producer resumes: the record's words, then its header with a release store (the queue's
  // protocol).
  QueueBlock* block = queue_tail_block(q.tail);
  for (std::uint32_t i = 1; i < words; ++i) block->words()[offset + i] = record[i];
  std::atomic_ref<std::uint64_t>(block->words()[offset])
      .store(record[0], std::memory_order_release);
  EXPECT_EQ(r->receive(1ms).value().as_u64(), 2u);
  r->close();
  r->release();
}

}  // namespace
}  // namespace evh::detail
