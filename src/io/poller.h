// Poller: the narrow interface between the event handler and the kernel's readiness machinery.
//
// A Poller watches fds, keeps one absolute deadline on the monotonic clock, and can be woken
// from another thread. It knows nothing of isolates, ports or messages: an fd is watched under an
// opaque 64-bit token that `wait()` hands back. The event handler's other system calls (checking
// a caller's fd, accept, close) go through `Sys` (io/sys.h); together the two are every kernel
// call it makes, so a fake of each can inject any error into any of them.
//
// Threads: `wake()` may be called from any thread and never blocks. Every other method belongs
// to one thread at a time — whichever thread drives the event handler: a pool worker that waits
// in the poller, or the handler's own thread (io/event_handler.h) — and only `wait()` may block.
// Memory: a Poller borrows nothing across calls; `wait()` writes into the caller's span and
// keeps no reference to it. Fds passed to add/modify/remove stay the caller's.
#pragma once

#include <evh/error.h>
#include <evh/event_handler.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>

#include "base/mono_time.h"

namespace evh::detail {

// An interest bit of evh's own, never a user's (the event handler's public entry points refuse
// it): `fd` is a pidfd of one of this process's children, and "readable" is to mean "the child
// has exited". A backend that can wait for the exit itself does — io_uring's IORING_OP_WAITID
// (Linux 6.7), with WNOWAIT, so that the child is still reaped by whoever reaps it now (the
// process code, with its exit status); the others watch the pidfd like any fd, and its poll says
// the same thing. Either way the report is `readable`; the bit is never reported.
inline constexpr FdEvents kChildExit = static_cast<FdEvents>(1u << 8);

struct PollEvent {
  std::uint64_t token = 0;
  FdEvents events = FdEvents::none;
};

// A buffer lent to a poller for one read of an fd (Poller::read_into): `size` bytes at `data`,
// and how to free it (`release(data)`) if the read's result reaches nobody — its watch was
// removed, or the poller destroyed, while the kernel still held it.
struct ReadBuffer {
  std::byte* data = nullptr;
  std::uint32_t size = 0;
  void (*release)(std::byte* data) noexcept = nullptr;
};

// A read's outcome (Poller::take_read): the buffer, the reader's again, and what the read
// returned — bytes (> 0), 0 at end of file, or -errno.
struct ReadResult {
  ReadBuffer buffer;
  int result = 0;
};

struct PollResult {
  std::size_t count = 0;          // entries written to the caller's span
  bool deadline_reached = false;  // the deadline passed; it is now disarmed
  bool woken = false;             // wake() was called since the last wait
};

class Poller {
 public:
  // Events returned per wait at most (Dart takes 16 per epoll_wait).
  static constexpr std::size_t kMaxEvents = 1024;
  // Tokens at or above this are the poller's own.
  static constexpr std::uint64_t kReservedTokens = ~std::uint64_t{0} - 15;
  // `wait()` limits: only look, or no limit.
  static constexpr MonoTime kNoWait = MonoTime::min();
  static constexpr MonoTime kForever = MonoTime::max();

  virtual ~Poller() = default;
  virtual const char* name() const noexcept = 0;

  // Starts watching `fd`. `interest` may include readable, writable and read_closed (and
  // kChildExit, above); error and hang_up are always reported. oneshot disarms after one report
  // until `modify()`. Errors are the kernel's: EEXIST, EBADF, EPERM (a regular file), ENOMEM,
  // ENOSPC.
  virtual Status add(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept = 0;
  // Replaces interest, mode and token in place (EPOLL_CTL_MOD: never delete-then-add). A
  // condition that already holds is reported after it, whatever the mode. `FdEvents::none` with
  // FdMode::oneshot parks the fd: at most one error/hang-up report, then nothing until modified.
  virtual Status modify(int fd, FdEvents interest, FdMode mode, std::uint64_t token) noexcept = 0;
  // Stops watching. Events already collected for it may still be returned by the next wait().
  virtual Status remove(int fd) noexcept = 0;
  // True when the handler's end may leave its watches to the poller's close instead of a
  // remove() each: closing the poller drops them all (epoll: closing the epoll fd ends every
  // registration). False where remove() does more than forget (io_uring: the cancels it issues
  // are what retire() waits for).
  virtual bool close_drops_watches() const noexcept { return false; }
  // Hands the kernel what add/modify/remove asked for, if the backend queued it (io_uring: the
  // SQEs otherwise wait for the next wait()'s io_uring_enter). The event handler calls it after
  // a pass's commands and before the pass posts anything, so a notice that follows a command
  // also follows the kernel's part of it — as on epoll, whose epoll_ctl is immediate. Never
  // blocks.
  virtual void submit() noexcept {}

  // Reads for the caller (io_uring: IORING_OP_READ), so that readiness and the read are one
  // completion and no read() of the caller's follows. Backends that cannot: reads() is false.
  // It may turn false after a read (the kernel completed one at once with EAGAIN: its reads on
  // an O_NONBLOCK pipe do not wait); the caller then watches the fd with modify() again.
  virtual bool reads() const noexcept { return false; }
  // `fd` (added) gets one read of up to buffer.size bytes into `buffer` instead of its poll: a
  // later wait() reports {token, readable} when it is done, and take_read(fd) hands back the
  // buffer and the result. The buffer is the poller's until then; remove() or modify() before
  // take_read(), or the poller's end, release it (buffer.release) once the kernel is done with
  // it, and the result with it. EBUSY when `fd` has a read in flight or a result not taken;
  // ENOENT, ENOMEM, ENOSYS (reads() false).
  virtual Status read_into(int fd, ReadBuffer buffer, std::uint64_t token) noexcept {
    (void)fd, (void)buffer, (void)token;
    return std::make_error_code(std::errc::function_not_supported);
  }
  // The result of `fd`'s read, if one was reported; the poller holds nothing of it afterwards.
  virtual std::optional<ReadResult> take_read(int fd) noexcept {
    (void)fd;
    return std::nullopt;
  }

  // The driving thread's last call, at the handler's end, after its last remove(): hands back
  // what the kernel still holds of the caller's — buffers lent to read_into() — once the kernel
  // is done with them, waiting for it if need be (io_uring: cancels, and reaps the completions).
  // Only wake() and the destructor may follow. Made on the driving thread because the kernel may
  // let only that one reap (a single-issuer ring refuses io_uring_enter from any other thread);
  // the destructor does the same for a poller that was not retired, as far as its thread can.
  virtual void retire() noexcept {}

  // Arms the one deadline (replacing any earlier one). A deadline in the past fires at once.
  virtual Status set_deadline(MonoTime deadline) noexcept = 0;
  virtual Status clear_deadline() noexcept = 0;

  // Any thread: makes the current or next blocking wait() return. Never blocks.
  virtual void wake() noexcept = 0;

  // Collects up to min(out.size(), kMaxEvents) ready fds. Blocks until an fd is ready, the
  // deadline passes, wake() is called, or `until` (CLOCK_MONOTONIC) — the waiting thread's own
  // limit, e.g. a pool's earliest timer, which is not the armed deadline: nothing is reported for
  // it. `until` at or before now only looks (kNoWait); kForever has no limit. A wait that ends
  // for `until` alone ends at or after it, never before (the kernel's timer slack is the
  // backend's to make up for), and as close after it as the backend can. Interrupted system
  // calls are retried; a backend that cannot retry one returns EINTR, and the caller calls again.
  virtual Result<PollResult> wait(std::span<PollEvent> out, MonoTime until) noexcept = 0;
};

}  // namespace evh::detail
