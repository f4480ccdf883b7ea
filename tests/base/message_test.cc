#include <evh/message.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <stdexcept>
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

// Regression (issue 14, defect 8): Message::bytes stored the size in 32 bits, so a payload of
// 4 GiB + 1 bytes became a one-byte message (after copying all of it). It is refused before
// anything is copied: the source here is address space only (PROT_NONE), never read.
TEST(Message, BytesOverFourGiBAreRefused) {
  const std::size_t size = std::size_t{1} << 32 | 1;
  void* region =
      ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  EXPECT_THROW((void)Message::bytes(std::span(static_cast<const std::byte*>(region), size)),
               std::length_error);
  ::munmap(region, size);
  static_assert(Message::kMaxBytes == UINT32_MAX);
}

}  // namespace
}  // namespace evh
