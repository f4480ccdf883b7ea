// A child's stream data: the chunks data messages are made of, the credit window that bounds
// what a stream has posted and not yet released, and the data messages themselves (see
// process_state.h, StreamCredit, and data_chunk.h). The reading is in process_state.cc.
#include <fcntl.h>

#include <cstring>
#include <new>
#include <utility>

#include "base/assert.h"
#include "proc/data_chunk.h"

namespace evh::detail {
namespace {

// Bytes asked for per read(), above what the pipe holds (F_GETPIPE_SZ, taken at the spawn and
// after a growth): a read returns at most what the pipe holds, so a short read says the pipe is
// drained, without an extra EAGAIN read.
constexpr std::size_t kReadSlack = 1;
constexpr std::size_t kDefaultPipeSize =
    64 * 1024;  // if F_GETPIPE_SZ fails (it does not on a pipe)

}  // namespace

DataChunk* new_chunk(std::size_t capacity) {
  void* raw = ::operator new(sizeof(DataChunk) + sizeof(EventHeader) + capacity);
  auto* chunk = new (raw) DataChunk;
  chunk->capacity = capacity;
  return chunk;
}

void free_chunk(DataChunk* chunk) noexcept {
  chunk->~DataChunk();
  ::operator delete(chunk);
}

DataChunk* chunk_of(std::byte* data) noexcept {
  return reinterpret_cast<DataChunk*>(data - sizeof(EventHeader)) - 1;
}
void release_read_buffer(std::byte* data) noexcept {
  free_chunk(chunk_of(data));
}

Message data_message_from_read(DataChunk*& chunk, const std::shared_ptr<StreamCredit>& credit,
                               const EventHeader& h, std::size_t size) {
  if (!credit->add_in_place(size, chunk->capacity)) {
    Message m = make_data_message(credit, h, std::span<const std::byte>(chunk->data(), size));
    credit->add(size);
    return m;
  }
  chunk->credit = credit;
  chunk->size = sizeof h + size;
  std::memcpy(chunk->bytes(), &h, sizeof h);
  return Message::native(std::exchange(chunk, nullptr), &release_data_message);
}

StreamCredit::~StreamCredit() {
  for (int i = 0; i < spare_count_; ++i) free_chunk(spares_[i]);
}

bool StreamCredit::take_room() noexcept {
  std::lock_guard lock(mu_);
  if (window_ == 0 || outstanding_ < window_) return true;
  stalled_ = true;
  return false;
}

void StreamCredit::add(std::size_t n) noexcept {
  std::lock_guard lock(mu_);
  outstanding_ += n;
}

bool StreamCredit::add_in_place(std::size_t n, std::size_t capacity) noexcept {
  const std::size_t unused = capacity - n;
  std::lock_guard lock(mu_);
  // At least half full: a message holds at most twice its bytes. Less: only while the unused
  // room of the messages not yet released stays within two read buffers — a receiver that
  // keeps up (it released the last one) never pays the copy, one that holds many does.
  if (n < unused && unused_ + unused > kUnusedReads * read_size()) return false;
  outstanding_ += n;
  unused_ += unused;
  return true;
}

void StreamCredit::grow_if_full(std::size_t got) noexcept {
  if (grow_to_ == 0 || got + kReadSlack < read_size()) return;
  if (grow_to_ + kReadSlack <= read_size()) {
    grow_to_ = 0;  // it is that big already: "grow", never shrink
    return;
  }
  const int size = ::fcntl(fd_, F_SETPIPE_SZ, static_cast<int>(grow_to_));
  grow_to_ = 0;
  // EPERM past the user's soft limit on pipe pages: the pipe keeps its size (process.h).
  if (size <= 0) return;
  std::lock_guard lock(mu_);
  read_size_.store(static_cast<std::size_t>(size) + kReadSlack, std::memory_order_relaxed);
}

DataChunk* StreamCredit::take_spare() noexcept {
  DataChunk* stale = nullptr;
  DataChunk* spare = nullptr;
  {
    std::lock_guard lock(mu_);
    if (spare_count_ > 0) spare = spares_[--spare_count_];
    if (spare != nullptr && spare->capacity != read_size()) std::swap(stale, spare);
  }
  if (stale != nullptr) free_chunk(stale);  // of the size before a growth
  return spare;
}

void StreamCredit::put_spare(DataChunk* chunk) noexcept {
  EVH_ASSERT(!chunk->credit, "a spare is a bare read buffer");
  {
    std::lock_guard lock(mu_);
    if (!ended_ && spare_count_ < kMaxSpares && chunk->capacity == read_size()) {
      spares_[spare_count_++] = chunk;
      return;
    }
  }
  free_chunk(chunk);
}

void StreamCredit::release(std::size_t n, std::size_t unused, DataChunk* chunk) noexcept {
  bool rearm = false;
  {
    std::lock_guard lock(mu_);
    outstanding_ -= std::min(outstanding_, n);
    unused_ -= std::min(unused_, unused);
    if (stalled_ && !ended_ && outstanding_ < window_) {
      stalled_ = false;
      rearm = true;
    }
    if (chunk != nullptr && !ended_ && spare_count_ < kMaxSpares &&
        chunk->capacity == read_size()) {
      spares_[spare_count_++] = chunk;
      chunk = nullptr;
    }
  }
  if (chunk != nullptr) free_chunk(chunk);
  // Re-arming reports the data the pipe already holds (SEMANTICS 17): the reader reads on. A
  // handler shutting down refuses; its teardown ends the stream anyway.
  // acquire: pairs with the manager's shutdown (its children are killed then; the stream ends).
  if (rearm && manager_open_->load(std::memory_order_acquire)) {
    (void)eh_->modify_fd(fd_, port_, FdEvents::readable);
  }
}

void StreamCredit::end() noexcept {
  DataChunk* spares[kMaxSpares];
  int count;
  {
    std::lock_guard lock(mu_);
    ended_ = true;
    count = spare_count_;
    std::copy(spares_, spares_ + count, spares);
    spare_count_ = 0;
  }
  for (int i = 0; i < count; ++i) free_chunk(spares[i]);
}

std::size_t StreamCredit::outstanding() const noexcept {
  std::lock_guard lock(mu_);
  return outstanding_;
}

Message make_data_message(std::shared_ptr<StreamCredit> credit, const EventHeader& header,
                          std::span<const std::byte> data) {
  DataChunk* chunk = new_chunk(data.size());
  chunk->credit = std::move(credit);
  chunk->size = sizeof header + data.size();
  std::memcpy(chunk->bytes(), &header, sizeof header);
  if (!data.empty()) std::memcpy(chunk->data(), data.data(), data.size());
  return Message::native(chunk, &release_data_message);
}

void release_data_message(void* p) noexcept {
  auto* chunk = static_cast<DataChunk*>(p);
  // Moved out first: the chunk may become a spare of the credit (which must not hold itself),
  // and this may be the credit's last holder.
  std::shared_ptr<StreamCredit> credit = std::move(chunk->credit);
  if (!credit) {
    free_chunk(chunk);
    return;
  }
  const std::size_t n = chunk->size - sizeof(EventHeader);
  const std::size_t unused = chunk->capacity - n;  // 0 for a copy (made to its size)
  if (chunk->capacity == credit->read_size()) {
    credit->release(n, unused, chunk);  // kept as a spare, or freed
  } else {
    credit->release(n, unused, nullptr);
    free_chunk(chunk);
  }
}

std::span<const std::byte> data_message_bytes(const void* p) noexcept {
  auto* chunk = const_cast<DataChunk*>(static_cast<const DataChunk*>(p));
  return {chunk->bytes(), chunk->size};
}

std::size_t stream_read_size(int fd) noexcept {
  const int pipe_size = ::fcntl(fd, F_GETPIPE_SZ);
  return (pipe_size > 0 ? static_cast<std::size_t>(pipe_size) : kDefaultPipeSize) + kReadSlack;
}

}  // namespace evh::detail
