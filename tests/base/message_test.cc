#include <evh/message.h>
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace evh {
namespace {

// Short byte strings live inside the message; long ones on the heap; both read back intact.
TEST(Message, BytesInlineAndHeap) {
  auto small = Message::bytes(std::string_view("hello"));
  EXPECT_EQ(small.kind(), Message::Kind::inline_bytes);
  EXPECT_EQ(small.text(), "hello");
  std::string long_text(1000, 'x');
  auto big = Message::bytes(std::string_view(long_text));
  EXPECT_EQ(big.kind(), Message::Kind::heap_bytes);
  EXPECT_EQ(big.text(), long_text);
  auto exact = Message::bytes(std::string_view(std::string(Message::kInlineBytes, 'y')));
  EXPECT_EQ(exact.kind(), Message::Kind::inline_bytes);
}

TEST(Message, U64RoundTrip) {
  EXPECT_EQ(Message::u64(0xDEADBEEFCAFEull).as_u64(), 0xDEADBEEFCAFEull);
  EXPECT_EQ(Message::bytes(std::string_view("abc")).as_u64(), 0u);
}

// A native payload is finalized exactly once, wherever the message was moved.
TEST(Message, NativeFinalizedOnceAcrossMoves) {
  test::ReleaseCounter c;
  {
    Message a = c.make();
    Message b = std::move(a);
    Message d;
    d = std::move(b);
    EXPECT_EQ(c.finalized, 0u);
  }
  EXPECT_EQ(c.finalized, 1u);
}

// Taking the native object hands ownership to the taker: no finalizer.
TEST(Message, TakeNativeSuppressesFinalizer) {
  test::ReleaseCounter c;
  {
    Message a = c.make();
    EXPECT_EQ(a.take_native(), &c);
    EXPECT_EQ(a.take_native(), nullptr);
  }
  EXPECT_EQ(c.finalized, 0u);
}

// Assigning over a message releases the payload it held.
TEST(Message, AssignReleasesOldPayload) {
  test::ReleaseCounter c;
  Message a = c.make();
  a = Message::u64(1);
  EXPECT_EQ(c.finalized, 1u);
}

}  // namespace
}  // namespace evh
