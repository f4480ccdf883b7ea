// UringPoller's set-up and tear-down: the ring, its mappings, the probe of the opcodes it needs
// (io/uring_poller.h). The requests and the wait are in uring_poller.cc.
#include <errno.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "io/uring_abi.h"
#include "io/uring_poller.h"

namespace evh::detail {
namespace {

using uring::errno_code;
using uring::kOpWaitid;
using uring::sys_register;

int sys_setup(unsigned entries, io_uring_params* p) noexcept {
  return static_cast<int>(::syscall(__NR_io_uring_setup, entries, p));
}

void say(std::string* why, const char* what, int error) noexcept {
  if (why == nullptr) return;
  try {
    *why = what;
    if (error != 0) {
      *why += " (";
      *why += std::strerror(error);
      *why += ")";
    }
  } catch (...) {
  }
}

}  // namespace

Result<std::unique_ptr<UringPoller>> UringPoller::create(UringOptions options,
                                                         std::string* why) noexcept {
  std::unique_ptr<UringPoller> p(new (std::nothrow) UringPoller());
  if (!p) return std::make_error_code(std::errc::not_enough_memory);
  if (auto s = p->setup(options, why); !s) return s.error();
  return p;
}

Status UringPoller::setup(const UringOptions& options, std::string* why) noexcept {
  io_uring_params params{};
  // SUBMIT_ALL (5.18): one bad SQE does not stop the rest of a submission.
  params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  params.cq_entries = std::max(options.cq_entries, options.sq_entries);
  single_issuer_ = options.issuer == UringIssuer::single;
  static std::atomic<std::uint64_t> next_id{1};
  id_ = next_id.fetch_add(1, std::memory_order_relaxed);  // only unique, nothing to order
  abs_timer_ = options.time_limit == UringTimeLimit::absolute;
  if (single_issuer_) {
    // Enabled by the first thread that submits: the event handler's own thread, not the one
    // that created the handler.
    params.flags |=
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
    enabled_ = false;
  }
  // TASKRUN_FLAG (5.19): the kernel raises IORING_SQ_TASKRUN while completions wait as task
  // work, so a wait that only looks skips io_uring_enter when the CQ is empty and nothing waits.
  params.flags |= IORING_SETUP_TASKRUN_FLAG;
  if (!single_issuer_) {
    // COOP_TASKRUN (5.19): a completion's task work goes to the thread that armed the request
    // without an IPI. A sleeping thread is still woken to run it (TWA_SIGNAL_NO_IPI), so nothing
    // waits for ever; a thread running user code runs it at its next entry to the kernel — a
    // system call, or at the latest its next timer tick (4 ms at HZ=250). Measured: pooled
    // fd_event_latency p50 0.88x evh-epoll's with it, 1.10x without (docs/EVENT_HANDLER.md).
    params.flags |= IORING_SETUP_COOP_TASKRUN;
  }
  ring_fd_ = sys_setup(options.sq_entries, &params);
  if (ring_fd_ < 0) {
    const int e = errno;
    ring_fd_ = -1;
    if (e == EPERM) {
      say(why,
          "io_uring_setup refused: io_uring is forbidden here (kernel.io_uring_disabled, "
          "a container's seccomp filter)",
          e);
    } else if (e == ENOSYS) {
      say(why, "io_uring_setup: the kernel has no io_uring", e);
    } else if (e == EINVAL) {
      say(why,
          "io_uring_setup refused the ring's flags: the kernel is older than 6.1 "
          "(SUBMIT_ALL 5.18, COOP_TASKRUN and TASKRUN_FLAG 5.19, SINGLE_ISSUER 6.0, "
          "DEFER_TASKRUN 6.1)",
          e);
    } else {
      say(why, "io_uring_setup failed", e);
    }
    return errno_code(e);
  }
  if ((params.features & IORING_FEAT_NODROP) == 0) {
    say(why, "io_uring without IORING_FEAT_NODROP (Linux 5.5): completions could be lost", 0);
    return errno_code(ENOSYS);
  }
  if ((params.features & IORING_FEAT_EXT_ARG) == 0) {
    say(why, "io_uring without IORING_FEAT_EXT_ARG (Linux 5.11): a wait cannot have a time limit",
        0);
    return errno_code(ENOSYS);
  }

  sq_ring_size_ = params.sq_off.array + params.sq_entries * sizeof(unsigned);
  cq_ring_size_ = params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe);
  const bool single_mmap = (params.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single_mmap) sq_ring_size_ = cq_ring_size_ = std::max(sq_ring_size_, cq_ring_size_);
  sq_ring_ = ::mmap(nullptr, sq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    ring_fd_, IORING_OFF_SQ_RING);
  if (sq_ring_ == MAP_FAILED) {
    sq_ring_ = nullptr;
    say(why, "mmap of the io_uring SQ ring failed", errno);
    return errno_code(errno);
  }
  if (single_mmap) {
    cq_ring_ = sq_ring_;
  } else {
    cq_ring_ = ::mmap(nullptr, cq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      ring_fd_, IORING_OFF_CQ_RING);
    if (cq_ring_ == MAP_FAILED) {
      cq_ring_ = nullptr;
      say(why, "mmap of the io_uring CQ ring failed", errno);
      return errno_code(errno);
    }
  }
  sqes_size_ = params.sq_entries * sizeof(io_uring_sqe);
  void* sqes = ::mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      ring_fd_, IORING_OFF_SQES);
  if (sqes == MAP_FAILED) {
    say(why, "mmap of the io_uring SQEs failed", errno);
    return errno_code(errno);
  }
  sqes_ = static_cast<io_uring_sqe*>(sqes);

  auto* sq = static_cast<char*>(sq_ring_);
  sq_head_ = reinterpret_cast<unsigned*>(sq + params.sq_off.head);
  sq_tail_ = reinterpret_cast<unsigned*>(sq + params.sq_off.tail);
  sq_flags_ = reinterpret_cast<unsigned*>(sq + params.sq_off.flags);
  sq_mask_ = *reinterpret_cast<unsigned*>(sq + params.sq_off.ring_mask);
  sq_entries_ = params.sq_entries;
  sq_local_tail_ = *sq_tail_;
  // SQ slot i always names SQE i: SQEs are taken in ring order.
  auto* array = reinterpret_cast<unsigned*>(sq + params.sq_off.array);
  for (unsigned i = 0; i < sq_entries_; ++i) array[i] = i;
  auto* cq = static_cast<char*>(cq_ring_);
  cq_head_ = reinterpret_cast<unsigned*>(cq + params.cq_off.head);
  cq_tail_ = reinterpret_cast<unsigned*>(cq + params.cq_off.tail);
  cq_mask_ = *reinterpret_cast<unsigned*>(cq + params.cq_off.ring_mask);
  cqes_ = reinterpret_cast<io_uring_cqe*>(cq + params.cq_off.cqes);

  // The opcodes this backend needs.
  constexpr unsigned kProbeOps = 256;
  std::vector<unsigned char> buf;
  try {
    buf.resize(sizeof(io_uring_probe) + kProbeOps * sizeof(io_uring_probe_op));
    backlog_.reserve(64);
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  auto* probe = reinterpret_cast<io_uring_probe*>(buf.data());
  if (sys_register(ring_fd_, IORING_REGISTER_PROBE, probe, kProbeOps) < 0) {
    say(why, "io_uring: IORING_REGISTER_PROBE refused", errno);
    return errno_code(errno);
  }
  for (const unsigned op : {IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL, IORING_OP_READ}) {
    if (op > probe->last_op || (probe->ops[op].flags & IO_URING_OP_SUPPORTED) == 0) {
      say(why, "io_uring: an opcode this backend needs is missing (POLL_ADD, ASYNC_CANCEL, READ)",
          0);
      return errno_code(ENOSYS);
    }
  }

  // Optional: without WAITID an exit watch is the pidfd's poll.
  has_waitid_ =
      kOpWaitid <= probe->last_op && (probe->ops[kOpWaitid].flags & IO_URING_OP_SUPPORTED) != 0;

  wake_buf_ = new (std::nothrow) std::uint64_t(0);
  if (wake_buf_ == nullptr) return std::make_error_code(std::errc::not_enough_memory);
  // Blocking on purpose: a READ on an O_NONBLOCK file completes at once with EAGAIN, where on
  // a blocking one io_uring waits for the data. wake()'s write cannot block: it would take
  // 2^64 - 2 wakes without a read.
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    say(why, "eventfd failed", errno);
    return errno_code(errno);
  }
  return {};
}

UringPoller::~UringPoller() {
  // Before the ring goes: buffers lent to reads go back to their owners once the kernel is done.
  if (sqes_ != nullptr) drain_reads();
  // This thread's registration holds a reference to the ring's file: dropped, so that closing
  // the fd below ends the ring. Pool workers' registrations end with the workers (the pool is
  // joined just after its handler's end, whose removals already cancelled every poll).
  if (ring_fd_ >= 0) drop_ring_index();
  if (sqes_ != nullptr) ::munmap(sqes_, sqes_size_);
  if (cq_ring_ != nullptr && cq_ring_ != sq_ring_) ::munmap(cq_ring_, cq_ring_size_);
  if (sq_ring_ != nullptr) ::munmap(sq_ring_, sq_ring_size_);
  // Closing the ring cancels what is in flight (and drops the files the polls hold).
  if (ring_fd_ >= 0) ::close(ring_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  // A read the kernel may still complete keeps its target: 8 bytes leaked on purpose.
  if (!wake_armed_) delete wake_buf_;
}

}  // namespace evh::detail
