// ProcessState: one child — its pipes, its pidfd, its exit — and the reaper isolate's handler
// that turns their readiness into ProcessEvent messages. docs/PROCESSES.md has the why.
//
// Threads: the immutable fields are set before the state is shared; everything else is guarded
// by mu_. on_message runs on the reaper isolate's turn; the rest may be called from any thread.
#pragma once

#include <errno.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/process.h>
#include <evh/runtime.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

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

class ProcessManagerImpl;

// One child. Immutable fields are set before the state is shared; the rest is guarded by mu_.
class ProcessState final : public IsolateResource {
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

  // Guarded by mu_ from the moment the state is shared.
  int pidfd_ = -1;
  int stdin_fd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;

 private:
  friend class ProcessManagerImpl;
  enum Stream : int { kOut = 1, kErr = 2 };

  void post_event(ProcessEventKind kind, int exit_code = 0) noexcept;
  // `hung_up`: the notice said the writer is gone, so no later edge will announce the end of
  // file; read until read() says so.
  void read_stream(Isolate& self, Stream stream, bool hung_up) noexcept;
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
