// ProcessState: one child — its pipes, its pidfd, its exit — turned into ProcessEvent messages.
// docs/PROCESSES.md has the why.
//
// Who reads what: the child's stdout and stderr are FdReader registrations (io/commands.h): the
// thread driving the event handler — the pool worker the kernel woke — reads a ready pipe and
// posts its data straight to the caller's port. The reaper isolate handles the rest: the pidfd
// (the exit), stdin's room, and every registration's notices. The exit is posted, under mu_, by
// whichever of the two finds the child reaped and both streams at their end; a stream's data is
// posted before its end is recorded under mu_, so the exit comes after it (SEMANTICS 23).
//
// Flow control (issue 14, defect 3): each stream has a credit window — bytes of data messages
// posted and not yet released by whoever received them. A reader with no credit left stops
// reading; the pipe fills and the child blocks in write(); releasing a data message gives the
// credit back and re-arms the stream (a re-arm reports data already buffered). Data held for a
// stream is at most the window plus one read, whatever the child's pace; the memory that holds
// it at most about twice that, plus two read buffers' unused room and a few spare read buffers
// (StreamCredit).
//
// Threads: the immutable fields are set before the state is shared; everything else is guarded
// by mu_. on_message runs on the reaper isolate's turn; on_ready on the driver's holder; the rest
// may be called from any thread.
#pragma once

#include <errno.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/process.h>
#include <evh/runtime.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "io/commands.h"

namespace evh::detail {

inline std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

// The header in front of every process message's bytes.
struct EventHeader {
  static constexpr std::uint32_t kMagic = 0x65767031;  // "evp1"
  std::uint32_t magic = kMagic;
  ProcessEventKind kind = ProcessEventKind::exit;
  std::uint8_t reserved[3] = {};
  std::int32_t pid = 0;
  std::int32_t exit_code = 0;
  std::uint64_t tag = 0;
};
static_assert(sizeof(EventHeader) == 24);
static_assert(sizeof(EventHeader) <= Message::kInlineBytes);

// Sends `signal` to the child behind `pidfd` (never to a recycled pid).
Status pidfd_signal(int pidfd, int signal) noexcept;

struct DataChunk;  // a data message's payload (process_state.cc)

// One stream's credit window, and the buffers its reads go into. Shared by the state and every
// data message of the stream not yet released (a message may outlive the state).
//
// Buffers: a read goes straight into a chunk of read_size() bytes and is posted in it, with no
// copy, when it filled at least half of it, or while the unused room of the stream's unreleased
// messages stays within kUnusedReads buffers (a receiver that keeps up); otherwise it is copied
// into a chunk of its own size, so that a message held for long holds at most about twice its
// bytes. Released chunks of read_size() are
// kept as spares (at most kMaxSpares, until the stream ends) and read into again, so that a busy
// stream allocates, faults in and frees no memory per message.
//
// Growth (SpawnOptions::output_pipe_size): the first read that finds the pipe full — the child
// writes faster than it is read — grows the pipe to `grow_to` once, and read_size() with it; the
// chunks of the old size are freed as they come back.
class StreamCredit {
 public:
  // `read_size`: bytes asked for per read(). `grow_to`: the pipe's size once it is found full
  // (0: never grown). `manager_open`: false once the manager has shut down (it is destroyed
  // before the runtime and its handler): a release after that re-arms nothing.
  StreamCredit(std::size_t window, std::size_t read_size, std::size_t grow_to, EventHandler* eh,
               int fd, PortId port, std::shared_ptr<const std::atomic<bool>> manager_open) noexcept
      : window_(window),
        read_size_(read_size),
        grow_to_(grow_to),
        eh_(eh),
        fd_(fd),
        port_(port),
        manager_open_(std::move(manager_open)) {}
  ~StreamCredit();
  StreamCredit(const StreamCredit&) = delete;
  StreamCredit& operator=(const StreamCredit&) = delete;

  // Any thread; changes only when the reader grows the pipe (then a chunk released on another
  // thread with the old value is freed rather than kept: release() checks under mu_).
  std::size_t read_size() const noexcept { return read_size_.load(std::memory_order_relaxed); }
  // The reader, after a read of `got` bytes: a read that took all the pipe could hold grows the
  // pipe (once, whether the kernel agrees or not).
  void grow_if_full(std::size_t got) noexcept;
  // The reader, before a read: false when the window is full (the stream is then stalled until
  // a release re-arms it).
  bool take_room() noexcept;
  // The reader: `n` bytes are about to be posted (in a copy made to their size).
  void add(std::size_t n) noexcept;
  // The reader: `n` bytes were read into a buffer of `capacity`. True when they are to be posted
  // in that buffer (then counted, with the buffer's unused room); false when they are to be
  // copied into a buffer of their size (then add(n) follows).
  bool add_in_place(std::size_t n, std::size_t capacity) noexcept;
  // The reader: a spare chunk of read_size() to read into, or null (then it makes one).
  DataChunk* take_spare() noexcept;
  // Any thread: `chunk` (of read_size(), not in a message) is kept as a spare, or freed.
  void put_spare(DataChunk* chunk) noexcept;
  // Any thread, when a data message is released: gives its `n` bytes and its buffer's `unused`
  // room back, and its chunk to the spares (`chunk` of read_size()) or null; re-arms the stream
  // if it was stalled.
  void release(std::size_t n, std::size_t unused, DataChunk* chunk) noexcept;
  // The stream is over (end of file, or its registration ended): releases re-arm nothing, and
  // no spare is kept.
  void end() noexcept;
  std::size_t outstanding() const noexcept;

 private:
  static constexpr int kMaxSpares = 4;
  // Read buffers' worth of unused room that the stream's unreleased messages may hold between
  // them (add_in_place).
  static constexpr std::size_t kUnusedReads = 2;

  mutable std::mutex mu_;
  const std::size_t window_;  // 0: unlimited
  std::atomic<std::size_t> read_size_;
  std::size_t grow_to_;  // the reader's: 0 once grown (or never to be)
  std::size_t outstanding_ = 0;
  std::size_t unused_ = 0;  // room in the buffers of messages posted and not released
  bool stalled_ = false;
  bool ended_ = false;
  DataChunk* spares_[kMaxSpares] = {};  // guarded by mu_
  int spare_count_ = 0;                 // guarded by mu_
  EventHandler* const eh_;
  const int fd_;
  const PortId port_;
  const std::shared_ptr<const std::atomic<bool>> manager_open_;
};

// The bytes one read of the pipe `fd` asks for: more than the pipe holds.
std::size_t stream_read_size(int fd) noexcept;

// A data message: a native payload (so that its release gives the credit back) holding the
// header and a copy of the bytes, read back by decode_process_event().
Message make_data_message(std::shared_ptr<StreamCredit> credit, const EventHeader& header,
                          std::span<const std::byte> data);
// The finalizer of those messages, and the header-and-bytes of one (for the decoder).
void release_data_message(void* chunk) noexcept;
std::span<const std::byte> data_message_bytes(const void* chunk) noexcept;

class ProcessManagerImpl;

// One child. Immutable fields are set before the state is shared; the rest is guarded by mu_.
class ProcessState final : public IsolateResource, public FdReader {
 public:
  ProcessState(Runtime& rt, EventHandler* eh, std::shared_ptr<ProcessManagerImpl> manager)
      : rt_(rt), eh_(eh), manager_(std::move(manager)) {}
  ~ProcessState();

  void on_isolate_exit(Isolate&, ExitReason) noexcept override {
    std::lock_guard lock(mu_);
    if (!reaped_ && pidfd_ >= 0) (void)pidfd_signal(pidfd_, SIGKILL);
  }

  // The reaper isolate's handler.
  void on_message(Isolate& self, Message& m) noexcept;
  // FdReader: stdout or stderr is ready; on the thread driving the event handler.
  void on_ready(int fd, FdEvents events) noexcept override;
  // FdReader's ring reads (io_uring): the poller reads stdout and stderr into the stream's
  // buffers itself, so a readiness and its read are one completion; the data is posted as by
  // read_stream().
  bool ring_reads() const noexcept override { return true; }
  ReadBuffer read_buffer(int fd) noexcept override;
  void on_read(int fd, ReadBuffer buffer, int result) noexcept override;

  // Any thread.
  Result<std::size_t> write_stdin(std::span<const std::byte> bytes) noexcept;
  void close_stdin() noexcept;
  Status kill(int signal) noexcept;
  Status kill_group(int signal) noexcept;
  std::optional<int> exit_code() const noexcept {
    std::lock_guard lock(mu_);
    return reaped_ ? std::optional<int>(exit_code_) : std::nullopt;
  }

  // Manager shutdown: SIGKILL and reap, waiting at most `limit` for the child to die.
  void kill_and_reap(std::chrono::milliseconds limit) noexcept;

  // The reaper isolate's handler is being freed: at the reaper's own end, or at the runtime's
  // shutdown — either way while the Runtime still lives, and after its event handler let go of
  // the registrations. From here on the state holds nothing of the runtime's (no SendPort, no
  // IsolateRef, no EventHandler*), so a Process handle may outlive the Runtime: its calls that
  // need the runtime say `Errc::shutting_down`; kill() still works through the pidfd.
  void on_reaper_gone() noexcept;

  // Set once, before the state is shared.
  pid_t pid_ = -1;
  std::uint64_t tag_ = 0;
  bool detached_ = false;
  bool new_group_ = false;
  bool stdin_is_pipe_ = false;
  SendPort events_;
  PortId reaper_ = PortId::none;
  IsolateRef tie_;  // the isolate the child is tied to, or empty
  // stdout's and stderr's credit, set with their fds (before the state is shared).
  std::shared_ptr<StreamCredit> credit_[2];

  // Guarded by mu_ from the moment the state is shared.
  int pidfd_ = -1;
  int stdin_fd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;

 private:
  friend class ProcessManagerImpl;
  enum Stream : int { kOut = 1, kErr = 2 };

  // Which of the child's streams `fd` still is (under mu_); none once it has ended.
  std::optional<Stream> stream_of(int fd) const noexcept;

  void post_event(ProcessEventKind kind, int exit_code = 0) noexcept;
  // On the driver's holder. `hung_up`: the writer is gone, so no later edge will announce the
  // end of file; read until read() says so.
  void read_stream(Stream stream, int fd, bool hung_up) noexcept;
  // A stream reached its end (on the driver's holder): post the exit if it is the last thing
  // missing, and have the reaper end if nothing is left for it.
  void stream_ended() noexcept;
  // mu_ held: posts the exit once the child is reaped and both streams ended; true when the tie
  // is to be detached (outside mu_).
  bool finish_locked() noexcept;
  // mu_ held: `fd` (stdout's or stderr's) is closed or handed over; its credit ends.
  void end_stream_locked(int* fd) noexcept;
  void on_pidfd_ready() noexcept;
  void end_registration(int fd) noexcept;  // mu_ held
  void hand_over(int fd) noexcept;         // mu_ held: close_fd(), or close() if refused
  void maybe_finish(Isolate& self) noexcept;
  void record_reaped(int code) noexcept;  // mu_ held

  Runtime& rt_;
  EventHandler* eh_;
  std::shared_ptr<ProcessManagerImpl> manager_;

  mutable std::mutex mu_;
  bool reaped_ = false;
  int exit_code_ = 0;
  bool stdin_registered_ = false;  // stdin_fd_ is registered (writable, oneshot)
  bool stdin_armed_ = false;       // and armed: a stdin_ready will follow
  bool stdin_gone_ = false;        // closed because the child was done: writes say EPIPE
  int registrations_ = 0;          // live registrations on reaper_
  bool exit_posted_ = false;
  bool port_closed_ = false;
  bool tie_attached_ = false;
  bool inert_ = false;               // on_reaper_gone() ran: eh_, events_ and tie_ are gone
  std::vector<int> deferred_close_;  // handed over while the handler was shutting down
};

}  // namespace evh::detail
