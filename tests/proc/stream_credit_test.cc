// A child's stream buffers (src/proc/stream_data.cc): when a read is posted in the buffer it was
// read into and when it is copied out, and what the stream's credit counts either way.
#include <evh/process.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "proc/data_chunk.h"
#include "proc/process_state.h"
#include "test_util.h"

namespace evh {
namespace {

using detail::DataChunk;
using detail::StreamCredit;

constexpr std::size_t kPipe = 256 * 1024;
constexpr std::size_t kReadSize = kPipe + 1;  // what the reader asks of a 256 KiB pipe

std::shared_ptr<StreamCredit> make_credit() {
  // No window (0) and no handler: release() never has a stalled stream to re-arm.
  return std::make_shared<StreamCredit>(0, kReadSize, 0, nullptr, -1, PortId::none,
                                        std::make_shared<const std::atomic<bool>>(true));
}

// `size` bytes "read" into a fresh read buffer of the stream, made into its data message.
// `in_place` says whether the message kept the buffer (no copy).
Message read_into_buffer(const std::shared_ptr<StreamCredit>& credit, std::size_t size,
                         bool& in_place) {
  DataChunk* chunk = detail::new_chunk(credit->read_size());
  std::memset(chunk->data(), 'x', size);
  detail::EventHeader h;
  h.kind = ProcessEventKind::stdout_data;
  Message m = detail::data_message_from_read(chunk, credit, h, size);
  in_place = chunk == nullptr;
  if (chunk != nullptr) detail::free_chunk(chunk);
  return m;
}

// stdout6: a receiver that keeps up (each message released before the next read, as an isolate
// on the reading worker does) gets every read in the buffer it was read into, however small a
// part of a grown pipe's buffer it fills — cat's 64 KiB writes into a 256 KiB pipe were each
// copied out (a 64 KiB memcpy and an allocation per message) before.
TEST(StreamCredit, ReadsStayInTheirBufferWhileTheReceiverKeepsUp) {
  auto credit = make_credit();
  for (std::size_t size : {std::size_t{65536}, std::size_t{1000}, std::size_t{1}, kPipe}) {
    bool in_place = false;
    Message m = read_into_buffer(credit, size, in_place);
    EXPECT_TRUE(in_place) << size;
    auto ev = decode_process_event(m);
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(ev->data.size(), size);
    EXPECT_EQ(credit->outstanding(), size);
    m = Message();  // released: the credit is back
    EXPECT_EQ(credit->outstanding(), 0u);
  }
}

// A receiver that holds its messages: small reads stay in their buffers only until the unused
// room of the held ones would pass two read buffers; after that each is copied out to its size
// (a held message then holds about its bytes), while a read that fills half its buffer is never
// copied. Releasing the held messages gives the room back.
TEST(StreamCredit, HeldSmallReadsAreCopiedOnceTheirUnusedRoomPassesTwoBuffers) {
  auto credit = make_credit();
  constexpr std::size_t kSmall = 64 * 1024;  // unused room: 192 KiB + 1 each
  std::vector<Message> held;
  std::vector<bool> in_place;
  for (int i = 0; i < 4; ++i) {
    bool p = false;
    held.push_back(read_into_buffer(credit, kSmall, p));
    in_place.push_back(p);
  }
  // 2 x (192 KiB + 1) fits in 2 x (256 KiB + 1); a third would not.
  EXPECT_EQ(in_place, (std::vector<bool>{true, true, false, false}));
  bool half = false;
  held.push_back(read_into_buffer(credit, kReadSize / 2 + 1, half));
  EXPECT_TRUE(half) << "a read that fills half its buffer is never copied";
  EXPECT_EQ(credit->outstanding(), 4 * kSmall + kReadSize / 2 + 1);
  held.clear();
  EXPECT_EQ(credit->outstanding(), 0u);
  bool again = false;
  Message m = read_into_buffer(credit, kSmall, again);
  EXPECT_TRUE(again) << "the released messages' room came back";
}

}  // namespace
}  // namespace evh
