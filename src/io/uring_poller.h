// UringPoller: the Poller over io_uring (docs/EVENT_HANDLER.md "Backends"). One ring per poller,
// driven through the raw system calls and <linux/io_uring.h> (no liburing: the three calls and
// the two ring walks are the whole of what evh needs, and a libevh.a that pulls in no other
// library keeps its pkg-config and CMake packages as they are).
//
// What goes through the ring:
//   - readiness: IORING_OP_POLL_ADD. Edge fds keep one multishot poll (IORING_POLL_ADD_MULTI),
//     re-armed whenever the kernel ends it (a CQE without IORING_CQE_F_MORE: a CQ overflow, the
//     arming thread's exit, ...). Level fds keep a single-shot poll re-armed after each report,
//     so a condition that still holds is reported again at the next wait, as epoll's level mode
//     does. Oneshot fds get a single-shot poll, re-armed only by modify().
//   - the deadline and a wait's own limit: not a request at all, but the timeout of the
//     io_uring_enter that waits (IORING_ENTER_EXT_ARG; an absolute CLOCK_MONOTONIC time with
//     IORING_ENTER_ABS_TIMER, Linux 6.12, else the time left). The kernel sleeps on an on-stack
//     hrtimer that wakes the waiter directly, as epoll_pwait2 does; an IORING_OP_TIMEOUT (the
//     first design) cost a request, its task work and a completion per timer wakeup — not a
//     difference this VM could measure beside the ~30 us a sleeping wait costs either way
//     (docs/BENCHMARKS.md, "io_uring, third round"), but a longer path for nothing. No timerfd.
//   - wake(): an eventfd write, read by an IORING_OP_READ kept in flight. wake() comes from any
//     thread, most of which own no ring, so IORING_OP_MSG_RING (which needs a ring to send from)
//     is not an option without a ring per waking thread; the eventfd costs the waker one write
//     and the waiter nothing (the read completes inside the wait's own io_uring_enter).
//   - a child's exit (a pidfd added with kChildExit, io/poller.h): IORING_OP_WAITID (Linux 6.7)
//     with WEXITED | WNOWAIT, single-shot, where the probe finds the opcode; else, and for a
//     pidfd whose WAITID the kernel refuses, the pidfd's POLL_ADD. WNOWAIT: the ring only says
//     that the child has exited; the process code reaps it as it does on epoll, so a cancel that
//     races the completion can never have reaped a child whose status nobody then reads.
//   - reads for the caller (read_into, io/poller.h; evh's child stdout and stderr): an
//     IORING_OP_READ into a buffer the caller lends, in place of the fd's poll, so that readiness
//     and the read are one completion (the kernel polls the pipe itself and reads when data
//     comes) and the caller makes no read(). The buffer is the kernel's until the read's
//     completion, whatever cancels it: a read whose watch goes first is kept as an orphan and its
//     buffer released at its completion; the poller's end reaps those (uring_reads.cc).
//   - removal: IORING_OP_ASYNC_CANCEL naming the poll's user_data (not POLL_REMOVE, which the
//     kernel refuses with -EALREADY while a wake-up's completion is queued, leaving the poll
//     armed and its file held). Every request carries a generation in its user_data, so a
//     completion that raced a remove or a modify (the kernel had posted it before the cancel) is
//     recognised as stale and dropped: the event handler sees each registration end exactly once.
//
// Ring flags: `UringIssuer::single` (one thread submits for the ring's whole life: the event
// handler's own thread) sets IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, the ring
// created disabled and enabled by the first thread that submits (IORING_SETUP_R_DISABLED), so
// that completions are run only inside that thread's waits. `UringIssuer::shared` (a pool's idle
// workers take turns driving, so submitters change) can have neither, and sets
// IORING_SETUP_COOP_TASKRUN: a poll's completion runs as task work of the thread that armed it,
// which COOP_TASKRUN notifies without an IPI — still waking it if it sleeps (on its condition
// variable, say), but leaving it to run the work at its next kernel entry if it is running user
// code (at the latest its next timer tick). Both set IORING_SETUP_TASKRUN_FLAG, so a wait that
// only looks enters the kernel only when the CQ has something or task work waits to post.
// The ring's fd is registered with each thread that waits in it (IORING_REGISTER_RING_FDS, Linux
// 5.18), and that thread's io_uring_enter names the ring by its index in the thread's table
// (IORING_ENTER_REGISTERED_RING), which spares the kernel the fd's look-up and reference count
// on every call. The table is per thread (the kernel's io_uring_task), so a pool's workers each
// register the shared ring, at their first wait that sleeps; a thread's exit drops its
// registrations. Any refusal (a kernel or filter without it, a full table) leaves the fd.
// SQ full: flush and take the slot (never drop). CQ overflow: IORING_FEAT_NODROP is required; an
// io_uring_enter refused with EBUSY moves the ring's completions to a backlog and retries.
// EINTR: retried.
//
// Threads and memory as Poller (io/poller.h): wake() from any thread; the rest from the driving
// thread, one at a time.
#pragma once

#include <linux/io_uring.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/poller.h"

namespace evh::detail {

enum class UringIssuer : std::uint8_t { single, shared };

// How a wait's time limit reaches the kernel: as an absolute time where the kernel takes one
// (IORING_ENTER_ABS_TIMER, 6.12; before it, the first wait falls back to `relative`), or always
// as the time left — the older kernels' path, which tests force to cover it here too.
enum class UringTimeLimit : std::uint8_t { absolute, relative };

struct UringOptions {
  UringIssuer issuer = UringIssuer::shared;
  UringTimeLimit time_limit = UringTimeLimit::absolute;
  unsigned sq_entries = 256;
  unsigned cq_entries = 4096;  // multishot polls can post many completions per wait
};

class UringPoller final : public Poller {
 public:
  // Sets up the ring, probes the opcodes it needs and opens the eventfd. On failure the error
  // and, in `why` (when given), a sentence saying what the kernel refused.
  static Result<std::unique_ptr<UringPoller>> create(UringOptions options = {},
                                                     std::string* why = nullptr) noexcept;
  ~UringPoller() override;
  UringPoller(const UringPoller&) = delete;
  UringPoller& operator=(const UringPoller&) = delete;

  const char* name() const noexcept override { return "io_uring"; }
  Status add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override;
  Status modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept override;
  Status remove(int fd) noexcept override;
  Status set_deadline(MonoTime deadline) noexcept override;
  Status clear_deadline() noexcept override;
  void submit() noexcept override;
  void wake() noexcept override;
  Result<PollResult> wait(std::span<PollEvent> out, MonoTime until) noexcept override;

  bool reads() const noexcept override { return reads_enabled_; }
  Status read_into(int fd, ReadBuffer buffer, std::uint64_t token) noexcept override;
  std::optional<ReadResult> take_read(int fd) noexcept override;
  void retire() noexcept override { drain_reads(); }

  // Polls the kernel ended (or cancelled) that were armed again: for tests.
  std::uint64_t rearms() const noexcept { return rearms_; }
  // Threads that registered the ring (one each, at its first wait): for tests.
  std::uint64_t ring_registrations() const noexcept { return ring_registrations_; }
  // Whether the kernel has IORING_OP_WAITID, and how many were armed: for tests.
  bool has_waitid() const noexcept { return has_waitid_; }
  std::uint64_t exit_waits() const noexcept { return exit_waits_; }

 private:
  // 32 bytes, two to a cache line: what a completion's look-up reads.
  struct Watch {
    std::uint64_t token = 0;
    std::uint64_t reported_in = 0;  // the wait that last put it in the caller's span
    std::uint32_t gen = 0;          // the poll in flight; 0: none
    FdEvents interest = FdEvents::none;
    std::uint16_t out_index = 0;  // where, in that wait (< kMaxEvents)
    std::uint16_t read_slot = 0;  // its read (reads_[read_slot - 1]); 0: none
    FdMode mode = FdMode::level;
    bool exit_wait = false;  // kChildExit: armed as a WAITID, not a poll
    bool live = false;       // the fd is watched
  };
  static_assert(sizeof(Watch) == 32, "two watches to a cache line");

  // fd → Watch, held by value in chunks of kChunk fds and indexed by the fd number, as the event
  // handler's own table (io/registrations.h, FdTable) is since io3: a completion's look-up is an
  // index into a short array of chunk pointers and one load of the watch, where the
  // std::unordered_map before cost a division, its bucket and its node — the look-up that made
  // 85 % of the epoll path's dispatch in fd_fanout (docs/BENCHMARKS.md, "fd path, third
  // round"). A chunk (4 KiB) is allocated the first time one of its fds is watched and kept until
  // the poller goes; watches never move, so a pointer stays valid until the poller is destroyed.
  class WatchTable {
   public:
    // The live watch of `fd`, or null.
    Watch* find(int fd) noexcept {
      Watch* w = slot(fd);
      return w != nullptr && w->live ? w : nullptr;
    }
    // `fd`'s slot (fd >= 0), made live; EEXIST when it already is, ENOMEM when its chunk cannot
    // be allocated (nothing has changed then).
    Result<Watch*> insert(int fd) noexcept;
    // Ends `fd`'s watch; nothing when there is none.
    void erase(int fd) noexcept {
      if (Watch* w = slot(fd)) *w = Watch{};
    }
    void prefetch(int fd) const noexcept {
      const auto i = static_cast<std::size_t>(static_cast<unsigned>(fd)) / kChunk;
      if (i < chunks_.size() && chunks_[i]) {
        __builtin_prefetch(&chunks_[i]->at[static_cast<unsigned>(fd) % kChunk]);
      }
    }

   private:
    static constexpr std::size_t kChunk = 128;
    struct Chunk {
      Watch at[kChunk];
    };
    Watch* slot(int fd) noexcept {
      const auto i = static_cast<std::size_t>(static_cast<unsigned>(fd)) / kChunk;
      if (fd < 0 || i >= chunks_.size() || !chunks_[i]) return nullptr;
      return &chunks_[i]->at[static_cast<unsigned>(fd) % kChunk];
    }
    std::vector<std::unique_ptr<Chunk>> chunks_;
  };

  UringPoller() = default;
  Status setup(const UringOptions& options, std::string* why) noexcept;

  // The next free SQE, zeroed; flushes a full SQ first. Null only when the ring is unusable.
  io_uring_sqe* next_sqe() noexcept;
  void commit_sqe() noexcept;
  // io_uring_enter: submits what is queued; `wait_for` completions waited for, until
  // `until_ns` (CLOCK_MONOTONIC; INT64_MAX: no limit) at the latest. -errno on error, -ETIME
  // when the wait reached `until_ns`.
  int enter(unsigned wait_for, bool get_events, std::int64_t until_ns = INT64_MAX) noexcept;
  // The ring's index in this thread's table of registered rings; -1: this thread names it by
  // its fd.
  int ring_index() const noexcept;
  // Registers the ring with this thread (IORING_REGISTER_RING_FDS) unless it tried already; a
  // refusal leaves the fd.
  void register_ring() noexcept;
  // The destructor: this thread's registration of the ring, if any, is dropped, so that the
  // ring goes with its fd. Other threads' registrations go when they exit.
  void drop_ring_index() noexcept;
  // Submits what is queued without waiting (EINTR retried, EBUSY handled by the backlog).
  void flush() noexcept;
  // Moves the ring's completions to the backlog (the kernel may then flush its overflow list).
  void spill() noexcept;
  bool cq_empty() const noexcept;
  // Starts loading the watch of the completion a few places after the next one in the CQ, so
  // that a batch's look-ups overlap their cache misses.
  void prefetch_ahead() const noexcept;
  const io_uring_cqe* peek_cqe() noexcept;
  void pop_cqe() noexcept;

  // The watch's request: a POLL_ADD, or a WAITID for an exit watch.
  void arm_poll(int fd, Watch& w) noexcept;
  void arm_waitid(int fd, Watch& w) noexcept;
  // add/modify: `interest` asks for the child's exit and the kernel can wait for it.
  bool wants_waitid(FdEvents interest) const noexcept;
  void cancel(std::uint64_t user_data, std::uint8_t opcode) noexcept;
  void arm_wake() noexcept;
  // One completion; false when it is for a watch that would not fit in the caller's span.
  bool handle(const io_uring_cqe& cqe, std::span<PollEvent> out, std::size_t max,
              PollResult& r) noexcept;

  // A read lent a buffer (read_into): in flight, then done until take_read(). An orphan's watch
  // went (remove, modify, the poller's end) while the kernel held the buffer: its completion
  // releases the buffer. A slot is reused only after its read's completion, so the slot in a
  // read's user_data names it without a generation.
  struct ReadState {
    ReadBuffer buffer;
    int fd = -1;
    int result = 0;
    bool used = false;
    bool in_flight = false;
    bool done = false;
    bool orphan = false;
  };
  static constexpr std::size_t kMaxReads = 0xffff - 1;  // Watch::read_slot is 16 bits
  void submit_read(std::uint32_t slot) noexcept;
  // `w`'s read, if any, leaves it: a result not taken is released now, a read in flight is
  // cancelled and released by its completion.
  void drop_read(Watch& w) noexcept;
  void free_read(std::uint32_t slot) noexcept;
  bool handle_read(const io_uring_cqe& cqe, std::span<PollEvent> out, std::size_t max,
                   PollResult& r) noexcept;
  // The poller's end (retire(), then the destructor: a second call finds nothing left): every
  // lent buffer back to its owner once the kernel is done with it, and the eventfd read reaped
  // (wake_armed_ false) unless its completion did not come.
  void drain_reads() noexcept;

  int ring_fd_ = -1;
  int wake_fd_ = -1;
  // Names this poller in each thread's table of registered rings: never reused, unlike the
  // poller's address or its ring's fd.
  std::uint64_t id_ = 0;
  bool ring_registrable_ = true;  // false once the kernel refused a registration for good
  std::uint64_t ring_registrations_ = 0;
  bool single_issuer_ = false;
  bool enabled_ = true;  // false while an R_DISABLED ring waits for its issuer

  // The mappings.
  void* sq_ring_ = nullptr;
  std::size_t sq_ring_size_ = 0;
  void* cq_ring_ = nullptr;  // == sq_ring_ with IORING_FEAT_SINGLE_MMAP
  std::size_t cq_ring_size_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  std::size_t sqes_size_ = 0;
  // The SQ: the kernel's head, our tail, published on commit.
  unsigned* sq_head_ = nullptr;
  unsigned* sq_tail_ = nullptr;
  unsigned* sq_flags_ = nullptr;
  unsigned sq_mask_ = 0;
  unsigned sq_entries_ = 0;
  unsigned sq_local_tail_ = 0;
  unsigned to_submit_ = 0;
  bool caller_sqes_ = false;  // add/modify/remove queued SQEs that no io_uring_enter took yet
  // The CQ: our head, the kernel's tail.
  unsigned* cq_head_ = nullptr;
  unsigned* cq_tail_ = nullptr;
  unsigned cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  std::vector<io_uring_cqe> backlog_;  // completions moved out of a full CQ, oldest first
  std::size_t backlog_next_ = 0;

  WatchTable watches_;
  std::uint32_t next_gen_ = 1;
  // The generation of a new request (a poll or a WAITID), never 0 ("not armed").
  std::uint32_t take_gen() noexcept;
  std::uint64_t wait_seq_ = 0;
  std::uint64_t rearms_ = 0;
  bool has_waitid_ = false;    // the probe found IORING_OP_WAITID
  bool reads_enabled_ = true;  // false once a ring read completed at once with EAGAIN
  std::vector<ReadState> reads_;
  std::vector<std::uint32_t> free_reads_;  // slots of reads_ not in use
  std::size_t orphans_ = 0;
  std::uint64_t exit_waits_ = 0;

  bool wake_armed_ = false;
  unsigned wake_sqe_ = 0;  // the SQ position of the eventfd read (the kernel has it once passed)
  // The eventfd read's target, the kernel's while wake_armed_: its own allocation, so that the
  // poller's end can leave it to the kernel when the read's completion never comes.
  std::uint64_t* wake_buf_ = nullptr;

  bool deadline_set_ = false;
  std::int64_t deadline_ns_ = 0;
  // IORING_ENTER_ABS_TIMER accepted; cleared by the first EINVAL (a kernel before 6.12), after
  // which a wait's limit goes in as the time left.
  bool abs_timer_ = true;
};

}  // namespace evh::detail
