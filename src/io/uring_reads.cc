// UringPoller's reads for its caller (Poller::read_into, io/poller.h): an IORING_OP_READ into a
// buffer the caller lends, so that a pipe's readiness and its read are one completion instead of
// a poll's completion and a read() of the caller's. The buffer is the kernel's from the read's
// submission to its completion — whatever cancels the read meanwhile — so a read whose watch
// goes first is kept as an orphan until its completion arrives, and only then is its buffer
// released; the poller's end waits for those completions: retire(), on the driving thread, and
// the destructor for what is left.
#include <errno.h>

#include <algorithm>
#include <atomic>

#include "base/assert.h"
#include "base/mono_time.h"
#include "io/uring_abi.h"
#include "io/uring_poller.h"

namespace evh::detail {
namespace {

using uring::errno_code;
using uring::read_slot_of;
using uring::read_ud;

void release(const ReadBuffer& b) noexcept {
  if (b.release != nullptr) b.release(b.data);
}

}  // namespace

Status UringPoller::read_into(int fd, ReadBuffer buffer, std::uint64_t token) noexcept {
  if (!reads_enabled_) return errno_code(ENOSYS);
  if (token >= kReservedTokens) return Errc::invalid_argument;
  Watch* w = watches_.find(fd);
  if (w == nullptr) return errno_code(ENOENT);
  if (w->read_slot != 0) return errno_code(EBUSY);
  std::uint32_t slot;
  if (!free_reads_.empty()) {
    slot = free_reads_.back();
    free_reads_.pop_back();
  } else {
    if (reads_.size() >= kMaxReads) return errno_code(ENOMEM);
    try {
      free_reads_.reserve(reads_.size() + 1);  // free_read() then never allocates
      reads_.emplace_back();
    } catch (...) {
      return errno_code(ENOMEM);
    }
    slot = static_cast<std::uint32_t>(reads_.size() - 1);
  }
  // The read replaces the watch's poll: its completions, if any are still to come, carry a
  // generation that is no longer the watch's and are dropped.
  if (w->gen != 0) {
    cancel(uring::poll_ud(fd, w->gen), IORING_OP_ASYNC_CANCEL);
    w->gen = 0;
  }
  ReadState& rs = reads_[slot];
  rs = ReadState{};
  rs.used = true;
  rs.buffer = buffer;
  rs.fd = fd;
  w->token = token;
  w->read_slot = static_cast<std::uint16_t>(slot + 1);
  submit_read(slot);
  if (!rs.in_flight) {
    // No SQE (the ring is unusable): the caller's buffer stays its own.
    w->read_slot = 0;
    free_read(slot);
    return errno_code(ENOMEM);
  }
  return {};
}

void UringPoller::submit_read(std::uint32_t slot) noexcept {
  ReadState& rs = reads_[slot];
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return;
  // A pipe's read: the kernel tries at once and, when the pipe is empty, waits for it through
  // its own poll (a pipe supports non-blocking attempts, so O_NONBLOCK on the fd does not make
  // io_uring give up with EAGAIN: Linux 5.13's "allow retry for O_NONBLOCK if async is
  // supported"). A kernel that gives up all the same turns reads() off (handle_read).
  sqe->opcode = IORING_OP_READ;
  sqe->fd = rs.fd;
  sqe->addr = reinterpret_cast<std::uint64_t>(rs.buffer.data);
  sqe->len = rs.buffer.size;
  sqe->off = ~std::uint64_t{0};  // the file's position: a pipe has none
  sqe->user_data = read_ud(rs.fd, slot);
  commit_sqe();
  rs.in_flight = true;
}

void UringPoller::free_read(std::uint32_t slot) noexcept {
  reads_[slot] = ReadState{};
  free_reads_.push_back(slot);  // capacity reserved when the slot was made
}

void UringPoller::drop_read(Watch& w) noexcept {
  if (w.read_slot == 0) return;
  const std::uint32_t slot = w.read_slot - 1u;
  w.read_slot = 0;
  ReadState& rs = reads_[slot];
  if (rs.in_flight) {
    // What it reads is lost with it: the caller removes a watch only when it wants no more of
    // the fd (io/registrations.cc keeps a read in flight until it reports).
    rs.orphan = true;
    ++orphans_;
    cancel(read_ud(rs.fd, slot), IORING_OP_ASYNC_CANCEL);
    return;
  }
  release(rs.buffer);  // done, not taken
  free_read(slot);
}

std::optional<ReadResult> UringPoller::take_read(int fd) noexcept {
  Watch* w = watches_.find(fd);
  if (w == nullptr || w->read_slot == 0) return std::nullopt;
  const std::uint32_t slot = w->read_slot - 1u;
  const ReadState& rs = reads_[slot];
  if (!rs.done) return std::nullopt;
  const ReadResult result{rs.buffer, rs.result};
  w->read_slot = 0;
  free_read(slot);
  return result;
}

bool UringPoller::handle_read(const io_uring_cqe& cqe, std::span<PollEvent> out, std::size_t max,
                              PollResult& r) noexcept {
  const std::uint32_t slot = read_slot_of(cqe.user_data);
  ReadState& rs = reads_[slot];
  if (rs.orphan) {
    // Its watch went; the kernel is done with the buffer now.
    release(rs.buffer);
    free_read(slot);
    --orphans_;
    return true;
  }
  Watch* w = watches_.find(rs.fd);
  if (w == nullptr || w->read_slot != slot + 1) {
    // Cannot be: a watch that goes orphans its read first (drop_read). Should it ever happen,
    // the kernel is done with the buffer all the same: give it back and free the slot, rather
    // than hold both for the poller's life.
    EVH_ASSERT(false, "a ring read completed with no watch and no orphan mark");
    release(rs.buffer);
    free_read(slot);
    return true;
  }
  if (cqe.res == -ECANCELED) {
    // Not ours (ours make an orphan first): the thread that submitted it exited, and the kernel
    // cancelled its requests before the read began. Submitted again from this thread, same
    // buffer.
    rs.in_flight = false;
    ++rearms_;
    submit_read(slot);
    return true;
  }
  // No room for a new entry: leave the completion for the next wait.
  if (w->reported_in != wait_seq_ && r.count >= max) return false;
  // EAGAIN: this kernel does not wait for data on an O_NONBLOCK pipe (before Linux 5.13). The
  // caller is told (nothing was read) and goes back to polls for every fd.
  if (cqe.res == -EAGAIN) reads_enabled_ = false;
  rs.in_flight = false;
  rs.done = true;
  rs.result = cqe.res;
  if (w->reported_in == wait_seq_) {
    out[w->out_index].events |= FdEvents::readable;
  } else {
    w->reported_in = wait_seq_;
    w->out_index = static_cast<std::uint16_t>(r.count);
    out[r.count++] = PollEvent{w->token, FdEvents::readable};
  }
  return true;
}

void UringPoller::drain_reads() noexcept {
  if (!enabled_) {
    // A ring never enabled never took an SQE: the kernel holds no buffer.
    for (std::uint32_t slot = 0; slot < reads_.size(); ++slot) {
      if (!reads_[slot].used) continue;
      release(reads_[slot].buffer);
      free_read(slot);
    }
    wake_armed_ = false;
    return;
  }
  // The eventfd's read too: its target is the kernel's from its submission to its completion.
  // Closing the ring does not wait for that — the read's task work may already be running on the
  // worker that submitted it, and a child between clone and exec keeps the ring open past our
  // close(). A read still in the SQ (the last wait's completion queued it again) is not the
  // kernel's yet: made a NOP, so that an io_uring_enter below cannot hand it over.
  if (wake_armed_) {
    const unsigned head = std::atomic_ref<unsigned>(*sq_head_).load(std::memory_order_acquire);
    if (static_cast<int>(head - wake_sqe_) > 0) {
      cancel(uring::kWakeUd, IORING_OP_ASYNC_CANCEL);
    } else {
      io_uring_sqe& sqe = sqes_[wake_sqe_ & sq_mask_];
      sqe.opcode = IORING_OP_NOP;
      sqe.user_data = uring::kIgnoreUd;
      wake_armed_ = false;
    }
  }
  for (std::uint32_t slot = 0; slot < reads_.size(); ++slot) {
    ReadState& rs = reads_[slot];
    if (!rs.used || rs.orphan) continue;
    if (rs.in_flight) {
      rs.orphan = true;
      ++orphans_;
      cancel(read_ud(rs.fd, slot), IORING_OP_ASYNC_CANCEL);
    } else {
      release(rs.buffer);
      free_read(slot);
    }
  }
  // The cancels go in and the completions are reaped, a second at most. Called by retire() on
  // the driving thread, this always can. A ring whose issuer is another thread (the destructor
  // of a handler's own thread's poller that was not retired) refuses the call (EEXIST): whatever
  // completions that thread's exit posted are read from the CQ as they are, and a read its exit
  // left in flight (6.18 does) stays an orphan.
  const std::int64_t give_up = mono_now_ns() + 1'000'000'000;
  bool can_enter = ring_fd_ >= 0;
  bool not_issuer = false;
  while (orphans_ > 0 || wake_armed_) {
    if (can_enter) {
      const std::int64_t now = mono_now_ns();
      if (now >= give_up) break;
      const int rc = enter(1, true, std::min(give_up, now + 10'000'000));
      if (rc == -EBUSY || rc == -EAGAIN) {
        spill();
      } else if (rc < 0 && rc != -EINTR && rc != -ETIME) {
        can_enter = false;
        not_issuer = rc == -EEXIST && single_issuer_;
      }
    }
    const std::size_t before = orphans_ + (wake_armed_ ? 1 : 0);
    for (const io_uring_cqe* c = peek_cqe(); c != nullptr; c = peek_cqe()) {
      const io_uring_cqe cqe = *c;
      pop_cqe();
      if (uring::kind_of(cqe.user_data) == uring::kKindWake) wake_armed_ = false;
      if (uring::kind_of(cqe.user_data) != uring::kKindRead) continue;
      ReadState& rs = reads_[read_slot_of(cqe.user_data)];
      if (!rs.orphan) continue;
      release(rs.buffer);
      free_read(read_slot_of(cqe.user_data));
      --orphans_;
    }
    if (!can_enter && orphans_ + (wake_armed_ ? 1 : 0) == before) break;
  }
  // After the issuer's exit its pending eventfd read's completion is not in the CQ (6.18: the
  // UringOwnThread typed tests under asan). On a single-issuer ring completions run only inside
  // the issuer's own io_uring_enter (DEFER_TASKRUN), and the issuer — another thread, the kernel
  // says — is done with this poller: the read's target will not be written.
  if (not_issuer) wake_armed_ = false;
  // Whatever is left the kernel may still write: leaked on purpose rather than freed under it.
}

}  // namespace evh::detail
