// UringPoller: the requests, the rings' walks and the wait (io/uring_poller.h); the ring's set-up,
// probe and tear-down are in uring_setup.cc.
#include "io/uring_poller.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstring>

#include "base/mono_time.h"
#include "io/uring_abi.h"

namespace evh::detail {
namespace {

using uring::errno_code;
using uring::kEnterAbsTimer;
using uring::kIgnoreUd;
using uring::kind_of;
using uring::kKindIgnore;
using uring::kKindPoll;
using uring::kKindRead;
using uring::kKindWake;
using uring::kMaxGen;
using uring::kOpWaitid;
using uring::kPidfdIdType;
using uring::kWakeUd;
using uring::poll_ud;
using uring::sys_register;

// The poll masks are epoll's values (EPOLLIN == POLLIN, ...), in the kernel's and ours.
std::uint32_t to_poll(FdEvents interest) noexcept {
  std::uint32_t e = EPOLLERR | EPOLLHUP;
  if (any(interest & FdEvents::readable)) e |= EPOLLIN;
  if (any(interest & FdEvents::writable)) e |= EPOLLOUT;
  if (any(interest & FdEvents::read_closed)) e |= EPOLLRDHUP;
  return e;
}

FdEvents from_poll(std::uint32_t e) noexcept {
  FdEvents out = FdEvents::none;
  if ((e & EPOLLIN) != 0) out |= FdEvents::readable;
  if ((e & EPOLLOUT) != 0) out |= FdEvents::writable;
  if ((e & EPOLLRDHUP) != 0) out |= FdEvents::read_closed;
  if ((e & EPOLLERR) != 0) out |= FdEvents::error;
  if ((e & EPOLLHUP) != 0) out |= FdEvents::hang_up;
  return out;
}

unsigned load_acquire(const unsigned* p) noexcept {
  return std::atomic_ref<const unsigned>(*p).load(std::memory_order_acquire);
}
void store_release(unsigned* p, unsigned v) noexcept {
  std::atomic_ref<unsigned>(*p).store(v, std::memory_order_release);
}

// This thread's registrations of rings (UringPoller::register_ring), by poller id: a mirror of the
// kernel's per-thread table (16 slots), which only its own thread can read or change. Not a
// "current loop": it says how this thread names a kernel object, not which one it serves. Four
// entries: a pool worker waits in one ring; more is a test's or an embedder's many pollers on
// one thread, and the fifth ring waits by its fd. An entry goes with its poller's destructor on
// this thread; one whose poller died elsewhere stays (ids are never reused, so it matches
// nothing), its slot the kernel's until the thread exits.
struct RingIndex {
  std::uint64_t poller = 0;  // 0: free
  int index = -1;            // -1: the kernel refused this thread; the fd
};
thread_local std::array<RingIndex, 4> t_ring_indexes{};

}  // namespace

// ---- the rings --------------------------------------------------------------------------------

int UringPoller::ring_index() const noexcept {
  if (!ring_registrable_) return -1;
  for (const RingIndex& e : t_ring_indexes) {
    if (e.poller == id_) return e.index;
  }
  return -1;
}

void UringPoller::register_ring() noexcept {
  if (!ring_registrable_) return;
  RingIndex* free = nullptr;
  for (RingIndex& e : t_ring_indexes) {
    if (e.poller == id_) return;  // registered, or refused, for this thread already
    if (e.poller == 0 && free == nullptr) free = &e;
  }
  if (free == nullptr) return;  // the table is full: this ring waits by its fd
  io_uring_rsrc_update u{};
  u.offset = ~0u;  // any free slot; the kernel writes back which
  u.data = static_cast<std::uint64_t>(ring_fd_);
  if (sys_register(ring_fd_, IORING_REGISTER_RING_FDS, &u, 1) == 1) {
    *free = RingIndex{id_, static_cast<int>(u.offset)};
    ++ring_registrations_;
  } else if (errno == EBUSY) {
    // This thread's kernel table is full (someone else's rings): the fd, for this thread.
    *free = RingIndex{id_, -1};
  } else {
    // EINVAL before 5.18, a filter's EPERM, ...: the fd, for every thread.
    ring_registrable_ = false;
  }
}

void UringPoller::drop_ring_index() noexcept {
  for (RingIndex& e : t_ring_indexes) {
    if (e.poller != id_) continue;
    if (e.index >= 0) {
      io_uring_rsrc_update u{};
      u.offset = static_cast<std::uint32_t>(e.index);
      (void)sys_register(ring_fd_, IORING_UNREGISTER_RING_FDS, &u, 1);
    }
    e = RingIndex{};
  }
}

int UringPoller::enter(unsigned wait_for, bool get_events, std::int64_t until_ns) noexcept {
  if (!enabled_) {
    // The first submission makes this thread the ring's only issuer.
    if (sys_register(ring_fd_, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0) return -errno;
    enabled_ = true;
  }
  unsigned flags = get_events || wait_for > 0 ? IORING_ENTER_GETEVENTS : 0u;
  // The ring as this thread names it: its registered index (no fd look-up), else the fd.
  unsigned ring = static_cast<unsigned>(ring_fd_);
  if (const int index = ring_index(); index >= 0) {
    ring = static_cast<unsigned>(index);
    flags |= IORING_ENTER_REGISTERED_RING;
  }
  // A limited wait: the kernel arms an hrtimer on the waiter's stack for it (io_cqring_wait),
  // and the call ends with -ETIME when it fires.
  io_uring_getevents_arg arg{};
  __kernel_timespec ts{};
  const void* argp = nullptr;
  std::size_t argsz = 0;
  if (wait_for > 0 && until_ns != INT64_MAX) {
    arg.ts = reinterpret_cast<std::uint64_t>(&ts);
    argp = &arg;
    argsz = sizeof arg;
    flags |= IORING_ENTER_EXT_ARG;
  }
  long r;
  for (;;) {
    if (argp != nullptr) {
      std::int64_t at = until_ns;
      if (abs_timer_) {
        flags |= kEnterAbsTimer;
      } else {
        // Before 6.12: the time left, which the kernel adds to its own reading of the clock
        // (taken after ours), so the wait never ends before `until_ns`.
        at = until_ns - mono_now_ns();
      }
      at = std::max<std::int64_t>(at, 0);
      ts.tv_sec = at / 1'000'000'000;
      ts.tv_nsec = at % 1'000'000'000;
    }
    r = ::syscall(__NR_io_uring_enter, ring, to_submit_, wait_for, flags, argp, argsz);
    // EINVAL with ABS_TIMER: a kernel that does not know the flag (it checks the flags before
    // taking any SQE). Every later wait says the time left instead.
    if (r < 0 && errno == EINVAL && (flags & kEnterAbsTimer) != 0) {
      abs_timer_ = false;
      flags &= ~kEnterAbsTimer;
      continue;
    }
    break;
  }
  if (r < 0) return -errno;
  to_submit_ -= std::min(static_cast<unsigned>(r), to_submit_);
  if (to_submit_ == 0) caller_sqes_ = false;
  return static_cast<int>(r);
}

void UringPoller::flush() noexcept {
  // Bounded: a ring that refuses every submission for other reasons is broken, and the next
  // wait() reports its error.
  for (int tries = 0; to_submit_ > 0 && tries < 64; ++tries) {
    const int r = enter(0, false);
    if (r > 0 || r == -EINTR) continue;
    if (r == -EBUSY || r == -EAGAIN || r == 0) {
      // The CQ is full and the kernel holds completions back (IORING_FEAT_NODROP): make room,
      // and let it run what it deferred.
      spill();
      (void)enter(0, true);
      spill();
      continue;
    }
    return;
  }
}

void UringPoller::spill() noexcept {
  unsigned head = *cq_head_;
  const unsigned tail = load_acquire(cq_tail_);
  try {
    for (; head != tail; ++head) backlog_.push_back(cqes_[head & cq_mask_]);
  } catch (...) {
    // Out of memory: leave the rest in the ring.
  }
  store_release(cq_head_, head);
}

io_uring_sqe* UringPoller::next_sqe() noexcept {
  for (int tries = 0; tries < 2; ++tries) {
    const unsigned head = load_acquire(sq_head_);
    if (sq_local_tail_ - head < sq_entries_) {
      io_uring_sqe* sqe = &sqes_[sq_local_tail_ & sq_mask_];
      std::memset(sqe, 0, sizeof *sqe);
      return sqe;
    }
    // Full: submit what is queued (the kernel takes every SQE during the call), then retry.
    flush();
  }
  return nullptr;
}

void UringPoller::commit_sqe() noexcept {
  ++sq_local_tail_;
  store_release(sq_tail_, sq_local_tail_);
  ++to_submit_;
}

void UringPoller::prefetch_ahead() const noexcept {
  // Four ahead: far enough for the load to land before handle() gets there, near enough not to
  // crowd the core's outstanding misses (the event handler's dispatch does the same).
  constexpr unsigned kAhead = 4;
  if (backlog_next_ < backlog_.size()) return;  // rare (a CQ overflow): not worth it
  const unsigned ahead = *cq_head_ + kAhead;
  if (static_cast<int>(load_acquire(cq_tail_) - ahead) <= 0) return;
  const std::uint64_t ud = cqes_[ahead & cq_mask_].user_data;
  if (kind_of(ud) == kKindPoll || kind_of(ud) == kKindRead)
    watches_.prefetch(static_cast<int>(static_cast<std::uint32_t>(ud)));
}

bool UringPoller::cq_empty() const noexcept {
  return backlog_next_ == backlog_.size() && *cq_head_ == load_acquire(cq_tail_);
}

const io_uring_cqe* UringPoller::peek_cqe() noexcept {
  if (backlog_next_ < backlog_.size()) return &backlog_[backlog_next_];
  const unsigned head = *cq_head_;
  if (head == load_acquire(cq_tail_)) return nullptr;
  return &cqes_[head & cq_mask_];
}

void UringPoller::pop_cqe() noexcept {
  if (backlog_next_ < backlog_.size()) {
    if (++backlog_next_ == backlog_.size()) {
      backlog_.clear();
      backlog_next_ = 0;
    }
    return;
  }
  store_release(cq_head_, *cq_head_ + 1);
}

// ---- the watches ----------------------------------------------------------------------------

Result<UringPoller::Watch*> UringPoller::WatchTable::insert(int fd) noexcept {
  const auto i = static_cast<std::size_t>(static_cast<unsigned>(fd)) / kChunk;
  try {
    if (i >= chunks_.size()) chunks_.resize(i + 1);
    if (!chunks_[i]) chunks_[i] = std::make_unique<Chunk>();
  } catch (...) {
    return errno_code(ENOMEM);  // a resize that threw left chunks_ as it was
  }
  Watch& w = chunks_[i]->at[static_cast<unsigned>(fd) % kChunk];
  if (w.live) return errno_code(EEXIST);
  w = Watch{};
  w.live = true;
  return &w;
}

// ---- requests ---------------------------------------------------------------------------------

bool UringPoller::wants_waitid(FdEvents interest) const noexcept {
  return has_waitid_ && any(interest & kChildExit);
}

std::uint32_t UringPoller::take_gen() noexcept {
  const std::uint32_t g = next_gen_;
  next_gen_ = next_gen_ == kMaxGen ? 1 : next_gen_ + 1;
  return g;
}

void UringPoller::arm_poll(int fd, Watch& w) noexcept {
  if (w.exit_wait) {
    arm_waitid(fd, w);
    return;
  }
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return;  // w.gen stays 0: not armed
  w.gen = take_gen();
  sqe->opcode = IORING_OP_POLL_ADD;
  sqe->fd = fd;
  sqe->poll32_events = to_poll(w.interest);
  // Edge: one multishot poll (edge-triggered: a CQE per wake-up of the file). Level and
  // oneshot: a single-shot poll, which reports at once a condition that already holds.
  sqe->len = w.mode == FdMode::edge ? IORING_POLL_ADD_MULTI : 0;
  sqe->user_data = poll_ud(fd, w.gen);
  commit_sqe();
}

void UringPoller::arm_waitid(int fd, Watch& w) noexcept {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return;  // w.gen stays 0: not armed
  w.gen = take_gen();
  // The one place WAITID's SQE is filled (liburing 2.5's io_uring_prep_waitid does the same).
  // io_uring/waitid.c reads: len = the idtype, fd = the id (here the pidfd, resolved to its
  // process when the request is issued), file_index = waitid's options, addr2 = the siginfo to
  // fill (null: none); addr, buf_index, addr3 and waitid_flags (the union of poll32_events) must
  // be 0, as next_sqe() left them. The result is 0 once the child has exited — WNOWAIT leaves it
  // unreaped — or -errno.
  sqe->opcode = kOpWaitid;
  sqe->fd = fd;
  sqe->len = kPidfdIdType;
  sqe->file_index = WEXITED | WNOWAIT;
  sqe->addr2 = 0;
  sqe->user_data = poll_ud(fd, w.gen);
  commit_sqe();
  ++exit_waits_;
}

void UringPoller::cancel(std::uint64_t user_data, std::uint8_t opcode) noexcept {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return;
  // ASYNC_CANCEL, naming the request by its user_data. Not
  // POLL_REMOVE for a poll: it fails with -EALREADY while a wake-up of the poll has its
  // completion queued as task work (io_poll_disarm; seen on 6.18), and then leaves the poll armed —
  // holding its file — for the ring's life. ASYNC_CANCEL marks the poll cancelled instead, and the
  // queued task work completes it with -ECANCELED.
  sqe->opcode = opcode;
  sqe->fd = -1;
  sqe->addr = user_data;
  sqe->user_data = kIgnoreUd;
  commit_sqe();
}

void UringPoller::arm_wake() noexcept {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return;
  sqe->opcode = IORING_OP_READ;
  sqe->fd = wake_fd_;
  sqe->addr = reinterpret_cast<std::uint64_t>(wake_buf_);
  sqe->len = sizeof *wake_buf_;
  sqe->off = ~std::uint64_t{0};  // the file's position (an eventfd has none to speak of)
  sqe->user_data = kWakeUd;
  wake_sqe_ = sq_local_tail_;
  commit_sqe();
  wake_armed_ = true;
}

// ---- the Poller -------------------------------------------------------------------------------

Status UringPoller::add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept {
  if (token >= kReservedTokens) return Errc::invalid_argument;
  if (fd < 0) return errno_code(EBADF);
  auto slot = watches_.insert(fd);
  if (!slot) return slot.error();
  Watch* w = *slot;
  w->token = token;
  w->interest = interest;
  w->mode = mode;
  w->exit_wait = wants_waitid(interest);
  caller_sqes_ = true;
  arm_poll(fd, *w);
  if (w->gen == 0) {
    watches_.erase(fd);
    return errno_code(ENOMEM);
  }
  return {};
}

Status UringPoller::modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept {
  if (token >= kReservedTokens) return Errc::invalid_argument;
  Watch* found = watches_.find(fd);
  if (found == nullptr) return errno_code(ENOENT);
  Watch& w = *found;
  drop_read(w);  // a read lent a buffer: back to a poll (the caller's fallback, io/poller.h)
  // Cancel and re-arm: the new poll looks at the file when it is armed, so a condition that
  // already holds is reported after the modify, in every mode (as EPOLL_CTL_MOD does). A
  // completion of the old request still in the ring carries the old generation: dropped.
  caller_sqes_ = true;
  if (w.gen != 0) cancel(poll_ud(fd, w.gen), IORING_OP_ASYNC_CANCEL);
  w.gen = 0;
  w.token = token;
  w.interest = interest;
  w.mode = mode;
  w.exit_wait = wants_waitid(interest);
  arm_poll(fd, w);
  if (w.gen == 0) return errno_code(ENOMEM);
  return {};
}

Status UringPoller::remove(int fd) noexcept {
  Watch* w = watches_.find(fd);
  if (w == nullptr) return errno_code(ENOENT);
  caller_sqes_ = true;
  if (w->gen != 0) cancel(poll_ud(fd, w->gen), IORING_OP_ASYNC_CANCEL);
  drop_read(*w);
  watches_.erase(fd);
  return {};
}

Status UringPoller::set_deadline(MonoTime deadline) noexcept {
  // Kept here; the wait that blocks makes it its io_uring_enter's time limit.
  deadline_set_ = true;
  deadline_ns_ = to_ns(deadline);
  return {};
}

Status UringPoller::clear_deadline() noexcept {
  deadline_set_ = false;
  return {};
}

void UringPoller::submit() noexcept {
  // One io_uring_enter for every command of the pass; POLL_ADD arms inside it (the poll is on
  // the file's wait queue when it returns), so a write after a later notice is reported once.
  // Only for what add/modify/remove queued: the re-arms wait() queued itself (level polls,
  // ended multishots) keep riding the next wait's io_uring_enter.
  if (caller_sqes_ && to_submit_ > 0) flush();
}

void UringPoller::wake() noexcept {
  const std::uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

bool UringPoller::handle(const io_uring_cqe& cqe, std::span<PollEvent> out, std::size_t max,
                         PollResult& r) noexcept {
  switch (kind_of(cqe.user_data)) {
    case kKindIgnore:
      return true;
    case kKindWake:
      // Read (the counter is reset) or cancelled (its thread exited: the counter is untouched,
      // so the next read returns at once). Either way, read again.
      wake_armed_ = false;
      if (cqe.res > 0) r.woken = true;
      arm_wake();
      return true;
    case kKindRead:
      return handle_read(cqe, out, max, r);
    default:  // kKindPoll
      break;
  }
  const int fd = static_cast<int>(static_cast<std::uint32_t>(cqe.user_data));
  const auto gen = static_cast<std::uint32_t>(cqe.user_data >> 32);
  Watch* found = watches_.find(fd);
  if (found == nullptr || found->gen != gen) return true;  // stale
  Watch& w = *found;
  if (w.exit_wait && cqe.res < 0 && cqe.res != -ECANCELED && cqe.res != -ECHILD) {
    // The kernel would not wait for this child (EINVAL, ENOMEM, ...): watch its pidfd's poll
    // instead, which says the same thing. Nothing is reported for the refusal.
    w.exit_wait = false;
    w.gen = 0;
    arm_poll(fd, w);
    return true;
  }
  const bool failed = !w.exit_wait && cqe.res < 0 && cqe.res != -ECANCELED;
  FdEvents events;
  if (w.exit_wait) {
    // 0: the child has exited (not reaped: WNOWAIT). -ECHILD: it is no child of ours any more
    // (someone reaped it) — its pidfd's poll says readable then too, and the reaper's own
    // waitid() tells the two apart.
    events = cqe.res == -ECANCELED ? FdEvents::none : FdEvents::readable & w.interest;
  } else {
    events = failed        ? FdEvents::error | FdEvents::hang_up  // the kernel refused the poll
             : cqe.res < 0 ? FdEvents::none
                           : from_poll(static_cast<std::uint32_t>(cqe.res)) &
                                 (w.interest | FdEvents::error | FdEvents::hang_up);
  }
  // No room for a new entry: leave the completion (and the watch) untouched for the next wait.
  if (any(events) && w.reported_in != wait_seq_ && r.count >= max) return false;
  if (cqe.res == -ECANCELED) {
    // Not ours (ours bumped the generation): the thread that armed it exited. Its exit leaves a
    // poll armed (only requests holding a ring's file are cancelled then); the poll's next
    // wake-up, which can no longer run as that thread's task work, completes -ECANCELED
    // instead of being reported. Armed again from this thread, whose new poll looks at the file
    // first: it reports that wake-up (with whatever older data is still unread), once — not a
    // second report of data already reported (UringPoller.EdgePollOfAnExitedThreadReportsOnly-
    // NewData, 6.18).
    w.gen = 0;
    ++rearms_;
    arm_poll(fd, w);
    return true;
  }
  if (failed) {
    w.gen = 0;
  } else if ((cqe.flags & IORING_CQE_F_MORE) == 0) {
    w.gen = 0;
    // An exit watch is single-shot: the exit happens once, and a WAITID armed again would
    // complete at once (the child is still unreaped). Only level mode re-arms it, as a level
    // poll of the pidfd would report it again.
    if (w.mode == FdMode::edge && !w.exit_wait) {
      // The kernel ended the multishot (a CQ overflow, ...): arm a new one, which looks at the
      // file first, so nothing that happened in between is lost.
      ++rearms_;
      arm_poll(fd, w);
    } else if (w.mode == FdMode::level) {
      // Level: polled again at the next wait, reported again while the condition holds.
      arm_poll(fd, w);
    }
    // Oneshot: disarmed until modify().
  }
  if (!any(events)) return true;
  if (w.reported_in == wait_seq_) {
    out[w.out_index].events |= events;  // a second completion in the same wait: merged
  } else {
    w.reported_in = wait_seq_;
    w.out_index = static_cast<std::uint16_t>(r.count);
    out[r.count++] = PollEvent{w.token, events};
  }
  return true;
}

Result<PollResult> UringPoller::wait(std::span<PollEvent> out, MonoTime until) noexcept {
  const std::size_t max = std::min(out.size(), kMaxEvents);
  if (max == 0) return Errc::invalid_argument;
  ++wait_seq_;
  const std::int64_t until_ns =
      until == kForever ? INT64_MAX : (until == kNoWait ? INT64_MIN : to_ns(until));
  if (!wake_armed_) arm_wake();
  // The clock is read only when a time is compared with it: a deadline, or a limit that is a
  // time. kForever and kNoWait compare the same whatever "now" is (0 here), so the pool's usual
  // wait — no deadline, no limit — reads no clock, as epoll_wait(-1) does not (two vDSO reads
  // per wakeup before).
  const bool timed = until_ns != INT64_MAX && until_ns != INT64_MIN;
  const auto clock = [&]() noexcept { return deadline_set_ || timed ? mono_now_ns() : 0; };
  PollResult r;
  for (;;) {
    std::int64_t now = clock();
    if (deadline_set_ && now >= deadline_ns_) {
      deadline_set_ = false;
      r.deadline_reached = true;
    }
    const bool block =
        r.count == 0 && !r.deadline_reached && !r.woken && until_ns > now && cq_empty();
    // The wait ends at the deadline or the caller's limit, whichever is first.
    const std::int64_t target = deadline_set_ ? std::min(until_ns, deadline_ns_) : until_ns;
    const unsigned flags = load_acquire(sq_flags_);
    // A look with nothing in the CQ enters the kernel only if task work waits to post.
    const bool look = cq_empty() && (flags & IORING_SQ_TASKRUN) != 0;
    if (block || to_submit_ > 0 || look || (flags & IORING_SQ_CQ_OVERFLOW) != 0) {
      // Registered at the thread's first wait that sleeps: the threads that sleep in a ring come
      // back to it (a pool's workers, a handler's own thread); one that only submits or looks (a
      // shutdown, a manual clock's move) keeps the fd rather than leave a registration behind.
      if (block) register_ring();
      // Submits the re-arms and waits, with its time limit, in one system call.
      const int rc = block ? enter(1, true, target) : enter(0, true);
      if (rc == -EBUSY || rc == -EAGAIN) {
        spill();
      } else if (rc < 0 && rc != -EINTR && rc != -ETIME) {
        return errno_code(-rc);
      }
    }
    for (const io_uring_cqe* c = peek_cqe(); c != nullptr; c = peek_cqe()) {
      prefetch_ahead();
      const io_uring_cqe cqe = *c;  // handle() may move the ring's completions to the backlog
      if (!handle(cqe, out, max, r)) break;  // no room: it stays for the next wait
      pop_cqe();
    }
    now = clock();
    if (deadline_set_ && now >= deadline_ns_) {
      deadline_set_ = false;
      r.deadline_reached = true;
    }
    if (r.count > 0 || r.deadline_reached || r.woken || now >= until_ns) return r;
    // Only stale completions or a re-arm: wait again.
  }
}

}  // namespace evh::detail
