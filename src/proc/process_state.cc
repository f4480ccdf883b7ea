// ProcessState: a child's streams, stdin, signals and exit (see process_state.h). The data
// messages and the credit window are in stream_data.cc.
#include "proc/process_state.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "base/assert.h"
#include "io/event_handler.h"
#include "proc/data_chunk.h"
#include "proc/process_manager.h"
#include "proc/spawn.h"

namespace evh {
namespace detail {
namespace {

// Reads per stream per readiness, so that a child writing without pause cannot keep the
// driver's holder (and so every other fd) to itself; the stream is then re-armed, and the next
// pass reads on.
constexpr int kReadsPerTurn = 16;
// pidfd_send_signal's flag for "the process group the pidfd's process leads" (Linux 6.9).
constexpr unsigned kPidfdSignalProcessGroup = 1u << 2;  // PIDFD_SIGNAL_PROCESS_GROUP
// The u64 message a stream's end posts to the reaper when nothing else is left for it: look
// whether to end (maybe_finish).
constexpr std::uint64_t kFinishMagic = 0x6576706600000000ull;  // "evpf"

// write() that turns a vanished reader into EPIPE without SIGPIPE, whose default disposition
// would end the process: SIGPIPE is blocked in this thread for the call, and the one the write
// raised is taken back out before the mask is restored. (Pipes have no MSG_NOSIGNAL.)
ssize_t write_no_sigpipe(int fd, const std::byte* data, std::size_t size) noexcept {
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigset_t saved;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &saved);
  ssize_t n;
  do {
    n = ::write(fd, data, size);
  } while (n < 0 && errno == EINTR);
  const int error = errno;
  if (n < 0 && error == EPIPE) {
    const timespec zero{};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  errno = error;
  return n;
}

}  // namespace

Status pidfd_signal(int pidfd, int signal) noexcept {
  if (syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) != 0) return errno_code(errno);
  return {};
}

ProcessState::~ProcessState() {
  if (tie_attached_ && tie_) (void)tie_->detach(*this);
  // Data messages may outlive the state: their release must not re-arm a stream of a handler
  // that may be gone.
  for (const auto& c : credit_) {
    if (c) c->end();
  }
  for (int fd : {pidfd_, stdin_fd_, out_fd_, err_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  // Only reached once no registration is left (the reaper ends after its final notices, or
  // the runtime's shutdown joined the event handler first).
  for (int fd : deferred_close_) ::close(fd);
}

void ProcessState::post_event(ProcessEventKind kind, int exit_code) noexcept {
  EventHeader h;
  h.kind = kind;
  h.pid = pid_;
  h.exit_code = exit_code;
  h.tag = tag_;
  (void)events_.post(Message::bytes(std::as_bytes(std::span<const EventHeader>(&h, 1))));
}

void ProcessState::hand_over(int fd) noexcept {
  // The I/O thread closes it after it stopped watching it.
  const Status s = eh_->close_fd(fd, reaper_);
  if (s.ok()) return;
  if (s.error() == Errc::shutting_down) {
    // The registration lives until the handler's teardown ends it (epoll_ctl on this fd):
    // closing it now would race with that. Closed on the `unregistered` notice, or at the end.
    deferred_close_.push_back(fd);
    return;
  }
  ::close(fd);
  --registrations_;
}

void ProcessState::end_registration(int fd) noexcept {
  (void)fd;
  --registrations_;
  EVH_ASSERT(registrations_ >= 0, "one final notice per registration");
}

void ProcessState::record_reaped(int code) noexcept {
  reaped_ = true;
  exit_code_ = code;
}

void ProcessState::end_stream_locked(int* fd) noexcept {
  StreamCredit* c = fd == &out_fd_ ? credit_[0].get() : fd == &err_fd_ ? credit_[1].get() : nullptr;
  if (c != nullptr) c->end();
  *fd = -1;
}

std::optional<ProcessState::Stream> ProcessState::stream_of(int fd) const noexcept {
  std::lock_guard lock(mu_);
  if (fd >= 0 && fd == out_fd_) return kOut;
  if (fd >= 0 && fd == err_fd_) return kErr;
  return std::nullopt;
}

void ProcessState::on_ready(int fd, FdEvents events) noexcept {
  const std::optional<Stream> of = stream_of(fd);
  if (!of) return;  // already at its end
  const Stream stream = *of;
  // The fd stays open while it is registered: only its registration's end closes it, and that
  // runs on the driver's holder, which is this thread.
  read_stream(stream, fd, any(events & (FdEvents::hang_up | FdEvents::error)));
}

void ProcessState::read_stream(Stream stream, int fd, bool hung_up) noexcept {
  EventHeader h;
  h.kind = stream == kOut ? ProcessEventKind::stdout_data : ProcessEventKind::stderr_data;
  h.pid = pid_;
  h.tag = tag_;
  const std::shared_ptr<StreamCredit>& credit = credit_[stream - 1];
  DataChunk* chunk = nullptr;  // the buffer of the next read, kept across this pass's reads
  bool eof = false;
  bool rearm = false;
  for (int i = 0;; ++i) {
    if (i == kReadsPerTurn) {
      // More may be waiting: re-arm, and the next pass reads on (after other fds had a turn).
      rearm = true;
      break;
    }
    // No credit: leave the rest in the pipe (the child blocks once it is full); the release
    // that makes room re-arms the stream.
    if (!credit->take_room()) break;
    const std::size_t want = credit->read_size();  // grows with the pipe (grow_if_full)
    if (chunk != nullptr && chunk->capacity != want) {
      free_chunk(chunk);
      chunk = nullptr;
    }
    if (chunk == nullptr) chunk = credit->take_spare();
    try {
      if (chunk == nullptr) chunk = new_chunk(want);
    } catch (const std::bad_alloc&) {
      // Nothing to read into: the data would be lost, and so the order of what follows. End
      // the stream here.
      eof = true;
      break;
    }
    const ssize_t n = ::read(fd, chunk->data(), want);
    if (n > 0) {
      const auto size = static_cast<std::size_t>(n);
      Message m;
      try {
        m = data_message_from_read(chunk, credit, h, size);
      } catch (const std::bad_alloc&) {
        eof = true;  // as above: the data is lost, and so would be the order
        break;
      }
      (void)events_.post(std::move(m));
      credit->grow_if_full(size);
      // Drained, and the writer is still there: its next write or close is a new edge.
      if (size < want && !hung_up) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    eof = true;  // 0, or an error that ends the stream (EIO)
    break;
  }
  if (chunk != nullptr) credit->put_spare(chunk);
  if (rearm) (void)eh_->modify_fd(fd, reaper_, FdEvents::readable);
  if (!eof) return;
  {
    std::lock_guard lock(mu_);
    end_stream_locked(stream == kOut ? &out_fd_ : &err_fd_);
    hand_over(fd);
  }
  stream_ended();
}

ReadBuffer ProcessState::read_buffer(int fd) noexcept {
  const std::optional<Stream> of = stream_of(fd);
  if (!of) return {};  // at its end
  const Stream stream = *of;
  const std::shared_ptr<StreamCredit>& credit = credit_[stream - 1];
  // No credit: nothing read until a release makes room and re-arms the stream (modify_fd).
  if (!credit->take_room()) return {};
  DataChunk* chunk = credit->take_spare();
  try {
    if (chunk == nullptr) chunk = new_chunk(credit->read_size());
  } catch (const std::bad_alloc&) {
    // Nothing to read into: as in read_stream(), the stream ends here. A read of 0 bytes
    // returns 0, which on_read() takes for the end.
    static std::byte none;
    return ReadBuffer{&none, 0, nullptr};
  }
  return ReadBuffer{chunk->data(), static_cast<std::uint32_t>(credit->read_size()),
                    &release_read_buffer};
}

void ProcessState::on_read(int fd, ReadBuffer buffer, int result) noexcept {
  DataChunk* chunk = buffer.release != nullptr ? chunk_of(buffer.data) : nullptr;
  const std::optional<Stream> of = stream_of(fd);
  if (!of) {
    if (chunk != nullptr) free_chunk(chunk);
    return;  // already at its end
  }
  const Stream stream = *of;
  const std::shared_ptr<StreamCredit>& credit = credit_[stream - 1];
  // Nothing read (EAGAIN: the poller reads no more, and readiness takes over).
  bool eof = result <= 0 && result != -EAGAIN && result != -EINTR;
  if (result > 0) {
    EventHeader h;
    h.kind = stream == kOut ? ProcessEventKind::stdout_data : ProcessEventKind::stderr_data;
    h.pid = pid_;
    h.tag = tag_;
    const auto size = static_cast<std::size_t>(result);
    Message m;
    try {
      m = data_message_from_read(chunk, credit, h, size);
    } catch (const std::bad_alloc&) {
      eof = true;  // the data is lost, and so would be the order of what follows
    }
    if (!eof) {
      (void)events_.post(std::move(m));
      credit->grow_if_full(size);
    }
  }
  if (chunk != nullptr) credit->put_spare(chunk);
  if (!eof) return;
  {
    std::lock_guard lock(mu_);
    end_stream_locked(stream == kOut ? &out_fd_ : &err_fd_);
    hand_over(fd);
  }
  stream_ended();
}

void ProcessState::stream_ended() noexcept {
  bool detach_tie = false;
  bool wake_reaper = false;
  {
    std::lock_guard lock(mu_);
    detach_tie = finish_locked();
    // The reaper ends once the exit is out and no registration is left; the last final notice
    // usually tells it, but a stream handed over without one (the handler refused the close)
    // leaves it to this message.
    wake_reaper = exit_posted_ && registrations_ == 0 && !port_closed_;
  }
  if (detach_tie && tie_) (void)tie_->detach(*this);
  if (wake_reaper) (void)rt_.post(reaper_, Message::u64(kFinishMagic));
}

void ProcessState::on_pidfd_ready() noexcept {
  bool now_reaped = false;
  {
    std::lock_guard lock(mu_);
    if (pidfd_ < 0) return;
    if (!reaped_) {
      auto r = reap_if_exited(pidfd_);
      if (r.ok() && !r->has_value()) {
        // Not yet (a poll's report can come early): re-arm.
        (void)EventHandlerAccess::impl(*eh_).watch_child_exit(pidfd_, reaper_, CommandKind::modify);
        return;
      }
      // ECHILD: someone else reaped it (an embedder's waitpid(-1)); the code is lost.
      record_reaped(r.ok() ? **r : -SIGKILL);
      now_reaped = true;
    }
    const int fd = pidfd_;
    pidfd_ = -1;
    hand_over(fd);
  }
  if (now_reaped) manager_->reaped(this);
}

bool ProcessState::finish_locked() noexcept {
  bool detach_tie = false;
  if (!exit_posted_ && reaped_ && out_fd_ < 0 && err_fd_ < 0) {
    exit_posted_ = true;
    post_event(ProcessEventKind::exit, exit_code_);
    // Nothing reads the child's stdin any more that we care about.
    if (stdin_fd_ >= 0) {
      const int fd = stdin_fd_;
      stdin_fd_ = -1;
      stdin_gone_ = true;
      if (stdin_registered_) {
        hand_over(fd);
      } else {
        ::close(fd);
      }
    }
    detach_tie = tie_attached_;
    tie_attached_ = false;
  }
  return detach_tie;
}

void ProcessState::maybe_finish(Isolate& self) noexcept {
  bool detach_tie = false;
  {
    std::lock_guard lock(mu_);
    detach_tie = finish_locked();
    if (exit_posted_ && registrations_ == 0 && !port_closed_) {
      port_closed_ = true;
      // The reaper is done: it ends after this message (its main port is still open, so the
      // exit rule alone would not end it).
      self.kill(KillPriority::before_next_event);
    }
  }
  // Outside mu_: detach() waits for a running on_isolate_exit, which takes mu_.
  if (detach_tie && tie_) (void)tie_->detach(*this);
}

void ProcessState::on_message(Isolate& self, Message& m) noexcept {
  if (auto ev = decode_io_event(m)) {
    switch (ev->notice) {
      case IoNotice::ready: {
        // stdout and stderr are read on the driver's holder (on_ready), not here.
        int pidfd, in;
        {
          std::lock_guard lock(mu_);
          pidfd = pidfd_;
          in = stdin_fd_;
        }
        if (ev->fd == pidfd && pidfd >= 0) {
          on_pidfd_ready();
          maybe_finish(self);
        } else if (ev->fd == in && in >= 0) {
          {
            std::lock_guard lock(mu_);
            stdin_armed_ = false;
          }
          post_event(ProcessEventKind::stdin_ready);
        }
        return;
      }
      case IoNotice::closed:
      case IoNotice::unregistered: {
        std::lock_guard lock(mu_);
        end_registration(ev->fd);
        if (ev->notice == IoNotice::unregistered) {
          // The handler shut down: the fd is ours again.
          // A child not yet reaped keeps its pidfd: the manager's end still kills and reaps
          // it through it (the runtime may shut down before the manager does).
          for (int* fd : {&out_fd_, &err_fd_, &pidfd_, &stdin_fd_}) {
            if (fd == &pidfd_ && !reaped_) continue;
            if (*fd == ev->fd) {
              ::close(*fd);
              end_stream_locked(fd);
            }
          }
          if (std::erase(deferred_close_, ev->fd) != 0) ::close(ev->fd);
        }
        break;
      }
      case IoNotice::error: {
        // A registration the I/O thread refused (or a close of one that had ended): that
        // registration produces nothing more. Treat its stream as ended.
        std::lock_guard lock(mu_);
        for (int* fd : {&out_fd_, &err_fd_, &stdin_fd_}) {
          if (*fd == ev->fd) {
            ::close(*fd);
            end_stream_locked(fd);
            end_registration(ev->fd);
          }
        }
        if (pidfd_ == ev->fd && !reaped_) {
          // Without the watch the exit would go unnoticed: end the child now.
          (void)pidfd_signal(pidfd_, SIGKILL);
          auto code = reap_blocking(pidfd_);
          record_reaped(code.ok() ? *code : -SIGKILL);
          ::close(pidfd_);
          pidfd_ = -1;
          end_registration(ev->fd);
          manager_->reaped(this);
        }
        break;
      }
      case IoNotice::timeout:
        return;
    }
    maybe_finish(self);
    return;
  }
  if (m.as_u64() == kFinishMagic) maybe_finish(self);
}

Result<std::size_t> ProcessState::write_stdin(std::span<const std::byte> bytes) noexcept {
  if (!stdin_is_pipe_) return Errc::invalid_argument;
  std::lock_guard lock(mu_);
  if (stdin_fd_ < 0) return errno_code(stdin_gone_ ? EPIPE : EBADF);
  // Without the event handler no stdin_ready could follow a short write. A reaped child reads
  // nothing any more: that says EPIPE, as it did while the runtime lived.
  if (inert_) return reaped_ ? Result<std::size_t>(errno_code(EPIPE)) : Errc::shutting_down;
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write_no_sigpipe(stdin_fd_, bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      break;
    } else {
      if (done > 0) return done;
      return errno_code(errno);  // EPIPE: the child closed its end
    }
  }
  if (done < bytes.size() && !stdin_armed_) {
    // Tell the caller when there is room again: one oneshot watch, re-armed per short write.
    Status s = stdin_registered_
                   ? eh_->modify_fd(stdin_fd_, reaper_, FdEvents::writable)
                   : eh_->add_fd(stdin_fd_, reaper_, FdEvents::writable, {.mode = FdMode::oneshot});
    if (s.ok()) {
      if (!stdin_registered_) ++registrations_;
      stdin_registered_ = true;
      stdin_armed_ = true;
    }
  }
  return done;
}

void ProcessState::close_stdin() noexcept {
  std::lock_guard lock(mu_);
  if (stdin_fd_ < 0) return;
  const int fd = stdin_fd_;
  stdin_fd_ = -1;
  if (stdin_registered_ && !inert_) {
    hand_over(fd);
  } else {
    ::close(fd);  // never registered, or the handler has let go of it (on_reaper_gone)
  }
}

void ProcessState::on_reaper_gone() noexcept {
  bool detach_tie = false;
  SendPort events;
  {
    std::lock_guard lock(mu_);
    if (inert_) return;
    inert_ = true;
    eh_ = nullptr;
    events = std::move(events_);  // released below, outside mu_
    detach_tie = tie_attached_;
    tie_attached_ = false;
  }
  // Outside mu_: detach() waits for a running on_isolate_exit, which takes mu_.
  if (detach_tie && tie_) (void)tie_->detach(*this);
  tie_ = IsolateRef();
}

Status ProcessState::kill(int signal) noexcept {
  std::lock_guard lock(mu_);
  if (reaped_ || pidfd_ < 0) return errno_code(ESRCH);
  return pidfd_signal(pidfd_, signal);
}

Status ProcessState::kill_group(int signal) noexcept {
  if (!new_group_) return Errc::invalid_argument;
  // Checked here: the kernel's EINVAL for a bad signal would read as "no group flag" below.
  if (signal < 0 || signal > SIGRTMAX) return errno_code(EINVAL);
  std::lock_guard lock(mu_);
  if (reaped_ || pidfd_ < 0) return errno_code(ESRCH);
  // The group the pidfd's process leads (Linux 6.9): a recycled pid is a different process,
  // whose group the pidfd does not name, so this never reaches it.
  if (syscall(SYS_pidfd_send_signal, pidfd_, signal, nullptr, kPidfdSignalProcessGroup) == 0) {
    return {};
  }
  if (errno != EINVAL || detached_) return errno_code(errno == EINVAL ? ENOSYS : errno);
  // An older kernel. Our own child is not reaped yet (reaped_ is false under mu_, and reaping
  // takes mu_), so its pid cannot have been reused and -pid is still its group. A detached
  // child is init's to reap: there, kill(-pid) could reach a stranger, so it is refused above.
  if (::kill(-pid_, signal) != 0) return errno_code(errno);
  return {};
}

void ProcessState::kill_and_reap(std::chrono::milliseconds limit) noexcept {
  int watch = -1;
  {
    std::lock_guard lock(mu_);
    if (reaped_ || pidfd_ < 0) return;
    (void)pidfd_signal(pidfd_, SIGKILL);
    // A dup to wait on outside the lock: the reaper may hand pidfd_ over meanwhile.
    watch = ::fcntl(pidfd_, F_DUPFD_CLOEXEC, 0);
  }
  if (watch >= 0) {
    pollfd p{watch, POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(limit.count())) < 0 && errno == EINTR) {
    }
    ::close(watch);
  }
  bool now_reaped = false;
  {
    std::lock_guard lock(mu_);
    if (reaped_ || pidfd_ < 0) return;
    auto r = reap_if_exited(pidfd_);
    if (r.ok() && r->has_value()) {
      record_reaped(**r);
      now_reaped = true;
    }
  }
  if (now_reaped) manager_->reaped(this);
}

}  // namespace detail
}  // namespace evh
