// Commands to the event handler, and the channel they travel through.
//
// A Command is a 40-byte POD copied into an inline Message, so sending one allocates nothing.
// CommandChannel is the MPSC queue those messages travel through, plus the wake-up protocol and
// the shutdown fence:
//   - wake-up: `awake_` is true while the loop is awake or a wake-up is already on its way. A
//     sender pushes (seq_cst CAS on the queue's tail) and then loads `awake_` (seq_cst); only a
//     sender that finds it false and swaps it to true wakes the poller. The loop stores false
//     (seq_cst) and then re-checks the queue's tail (seq_cst) before it sleeps. In the single
//     order of seq_cst operations one of the two sees the other, so a command is never left
//     unnoticed while the loop sleeps, and there is at most one poller wake per sleep — not one
//     per command (Dart's one write per command is what makes its interrupt pipe block);
//   - shutdown: `close()` refuses later commands and waits out the senders that are between
//     their check and the end of their push (a few instructions), so that the loop's final
//     drain sees every command that was accepted.
//
// Threads: `submit()` from any thread, never blocking. `close()` from the shutting-down thread.
// Everything under "loop" from the event handler's I/O thread only.
#pragma once

#include <evh/event_handler.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "base/assert.h"
#include "base/mpsc_queue.h"
#include "io/poller.h"
#include "sync/spin.h"

namespace evh::detail {

enum class CommandKind : std::uint8_t {
  add,
  modify,
  remove,
  close,
  tokens,
  backoff,
  set_timeout,
  clear_timeout,
  drop_port,    // the port has closed: end its registrations and its timeout, without notices
  clock_moved,  // a manual clock moved: expire the timeouts it made due, then set `done`
};

enum class FdOwnership : std::uint8_t { borrowed, owned };

// Readiness handled on the thread that drives the event handler instead of posted to a port
// (EventHandlerImpl::add_reader). evh's own streams use it — a child's stdout and stderr — so
// that the thread the kernel woke reads the data and posts it where it goes, with no hop
// through an isolate in between.
class FdReader {
 public:
  // The driver's holder, during a pass: `fd` is ready for `events`. Must not block and must not
  // call into the handler other than through its thread-safe entry points (commands).
  virtual void on_ready(int fd, FdEvents events) noexcept = 0;

  // Ring reads, on a poller that reads for its caller (Poller::reads: io_uring). A reader that
  // opts in is handed each read's result instead of readiness: the poller reads into a buffer
  // the reader lends it, so readiness and the read are one completion and no read() follows.
  virtual bool ring_reads() const noexcept { return false; }
  // The driver's holder: the buffer `fd`'s next read goes into, or an empty one (null data) to
  // read nothing for now — no room in the reader's window; it asks again with modify_fd(). A
  // buffer of size 0 ends the stream (the read returns 0, as at end of file).
  virtual ReadBuffer read_buffer(int fd) noexcept {
    (void)fd;
    return {};
  }
  // The driver's holder: a ring read of `fd` finished: `result` bytes in `buffer` (a buffer
  // read_buffer() returned, the reader's again), 0 at end of file, or -errno (-EAGAIN: nothing
  // was read; the handler reads again or reports readiness). Same rules as on_ready().
  virtual void on_read(int fd, ReadBuffer buffer, int result) noexcept {
    (void)fd, (void)result;
    if (buffer.release != nullptr) buffer.release(buffer.data);
  }

 protected:
  ~FdReader() = default;
};

// What travels through the queue: plain bytes, copied into an inline Message.
struct Command {
  CommandKind kind = CommandKind::add;
  FdMode mode = FdMode::level;
  FdSharing sharing = FdSharing::exclusive;
  FdOwnership ownership = FdOwnership::borrowed;  // add: FdOptions::owned
  std::int32_t fd = -1;
  FdEvents interest = FdEvents::none;
  std::uint32_t count = 0;  // add: the window; tokens: how many
  PortId port = PortId::none;
  std::int64_t deadline_ns = 0;  // set_timeout: on the runtime's clock
  union {
    std::atomic<std::uint32_t>* done = nullptr;  // clock_moved: set to 1, then woken (futex)
    FdReader* reader;  // add: readiness goes to it on the driving thread; notices to `port`
  };
};
static_assert(sizeof(Command) <= Message::kInlineBytes);

class CommandChannel {
 public:
  // `poller` is woken when a command arrives while the loop sleeps; it must outlive every
  // submit() that can succeed (that is, until close() has returned).
  explicit CommandChannel(Poller& poller) noexcept : poller_(poller) {}

  // Any thread. `Errc::shutting_down` once close() has begun.
  Status submit(const Command& c) noexcept {
    // seq_cst: pairs with close()'s store of stopping_ and load of senders_: either this sender
    // sees stopping_, or close() sees it counted and waits for its push to finish.
    senders_.fetch_add(1, std::memory_order_seq_cst);
    if (stopping_.load(std::memory_order_seq_cst)) {
      senders_.fetch_sub(1, std::memory_order_release);
      return Errc::shutting_down;
    }
    if (!queue_.push(Message::bytes(std::as_bytes(std::span<const Command, 1>(&c, 1))))) {
      senders_.fetch_sub(1, std::memory_order_release);
      return std::make_error_code(std::errc::not_enough_memory);  // the queue could not grow
    }
    // seq_cst load after the push's seq_cst CAS: pairs with the loop's sleeping() then
    // pending(). The plain load keeps the common case — the loop is awake or already being
    // woken — free of a read-modify-write on a shared line.
    if (!awake_.load(std::memory_order_seq_cst) &&
        !awake_.exchange(true, std::memory_order_seq_cst)) {
      wakeup_writes_.fetch_add(1, std::memory_order_relaxed);
      poller_.wake();
    }
    // release: pairs with close()'s acquire load of senders_, so that the loop's final drain
    // sees this push complete.
    senders_.fetch_sub(1, std::memory_order_release);
    return {};
  }

  // Refuses later commands; returns once no sender is between its check and its push.
  void close() noexcept {
    stopping_.store(true, std::memory_order_seq_cst);
    Backoff backoff;
    while (senders_.load(std::memory_order_acquire) != 0) backoff.snooze();
  }
  bool closed() const noexcept { return stopping_.load(std::memory_order_acquire); }

  // ---- loop -------------------------------------------------------------------------------
  // Before a wait: from here on a sender wakes the poller. seq_cst store, then the caller's
  // seq_cst look at pending(): see the header.
  void sleeping() noexcept { awake_.store(false, std::memory_order_seq_cst); }
  // After a wait: only saves senders a wake-up.
  void awake() noexcept { awake_.store(true, std::memory_order_relaxed); }
  bool pending() noexcept { return queue_.has_claimed(); }

  // Runs `execute(command)` for up to `limit` queued commands, in each sender's order. Returns
  // true when it stopped with more queued.
  template <class Execute>
  bool drain(std::uint32_t limit, Execute&& execute) noexcept {
    Message m;
    for (std::uint32_t done = 0; done < limit; ++done) {
      PopResult r = queue_.pop(m);
      if (r == PopResult::pending) {
        // A sender has claimed the slot and is writing it: a few instructions.
        Backoff backoff;
        do {
          backoff.snooze();
          r = queue_.pop(m);
        } while (r == PopResult::pending);
      }
      if (r == PopResult::empty) return false;
      Command c;
      const auto bytes = m.data();
      EVH_ASSERT(bytes.size() == sizeof c, "a command is one Command");
      std::memcpy(&c, bytes.data(), sizeof c);
      execute(c);
      executed_.fetch_add(1, std::memory_order_relaxed);
    }
    return true;
  }

  std::uint64_t executed() const noexcept { return executed_.load(std::memory_order_relaxed); }
  std::uint64_t wakeup_writes() const noexcept {
    return wakeup_writes_.load(std::memory_order_relaxed);
  }

 private:
  Poller& poller_;
  MpscQueue queue_;
  std::atomic<bool> awake_{true};
  std::atomic<bool> stopping_{false};      // new commands are refused
  std::atomic<std::uint32_t> senders_{0};  // senders between their stopping_ check and push
  std::atomic<std::uint64_t> wakeup_writes_{0};
  std::atomic<std::uint64_t> executed_{0};
};

}  // namespace evh::detail
