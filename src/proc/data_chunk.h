// DataChunk: the payload of a child's data message, which is also a stream's read buffer
// (process_state.h, StreamCredit). Internal to src/proc: process_state.cc reads into chunks,
// stream_data.cc makes, recycles and releases them.
#pragma once

#include <cstddef>
#include <memory>

#include "proc/process_state.h"

namespace evh::detail {

// A data message's payload: the credit it holds, then the header and the bytes. A spare (kept
// by its stream for the next read) holds no credit.
struct DataChunk {
  std::shared_ptr<StreamCredit> credit;
  std::size_t size = 0;      // header + data
  std::size_t capacity = 0;  // data bytes it has room for
  std::byte* bytes() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
  std::byte* data() noexcept { return bytes() + sizeof(EventHeader); }
};
static_assert(alignof(DataChunk) >= alignof(EventHeader));
static_assert(sizeof(DataChunk) % alignof(EventHeader) == 0);

// Throws std::bad_alloc.
DataChunk* new_chunk(std::size_t capacity);
void free_chunk(DataChunk* chunk) noexcept;
// The chunk whose data() is `data`, and the release of a ring read's buffer that reached nobody
// (ReadBuffer::release).
DataChunk* chunk_of(std::byte* data) noexcept;
void release_read_buffer(std::byte* data) noexcept;

// The data message for `size` bytes just read into `chunk`, under header `h`, counted in
// `credit`: posted in the chunk (`chunk` becomes null) when StreamCredit::add_in_place allows —
// the read filled at least half of it, or the receiver keeps up; otherwise copied into a chunk of
// its size (a chatty child's messages held by a slow receiver hold about their bytes, not a read
// buffer each) and the buffer serves the next read. Throws std::bad_alloc (only for the copy;
// `chunk` and `credit` are then untouched).
Message data_message_from_read(DataChunk*& chunk, const std::shared_ptr<StreamCredit>& credit,
                               const EventHeader& h, std::size_t size);

}  // namespace evh::detail
