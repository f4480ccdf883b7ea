// ProcessState: a child's streams, stdin, signals and exit (see process_state.h).
#include "proc/process_state.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "base/assert.h"
#include "proc/process_manager.h"
#include "proc/spawn.h"

namespace evh {
namespace detail {
namespace {

// Bytes asked for per read(); one message each. More than a default pipe holds (64 KiB), so
// one read drains it and a short read says so without an extra EAGAIN read; less than
// malloc's mmap threshold (128 KiB), so a message's copy stays off the mmap path. Pipes are
// not grown: a 1 MiB pipe ring pushed the data out of the caches and measured no faster.
constexpr std::size_t kChunk = 120 * 1024;
// Reads per stream per message, so that a child writing without pause cannot keep the reaper
// (and its worker) to itself; the rest continues in a message the reaper posts to itself.
constexpr int kReadsPerTurn = 16;
// pidfd_send_signal's flag for "the process group the pidfd's process leads" (Linux 6.9).
constexpr unsigned kPidfdSignalProcessGroup = 1u << 2;  // PIDFD_SIGNAL_PROCESS_GROUP
// The u64 payload of that message: the magic in the high half, the stream (1, 2) in the low.
constexpr std::uint64_t kContinueMagic = 0x6576706300000000ull;  // "evpc"

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

void ProcessState::read_stream(Isolate& self, Stream stream, bool hung_up) noexcept {
  std::byte buf[sizeof(EventHeader) + kChunk];
  EventHeader h;
  h.kind = stream == kOut ? ProcessEventKind::stdout_data : ProcessEventKind::stderr_data;
  h.pid = pid_;
  h.tag = tag_;
  std::memcpy(buf, &h, sizeof h);
  int fd;
  {
    std::lock_guard lock(mu_);
    fd = stream == kOut ? out_fd_ : err_fd_;
  }
  if (fd < 0) return;  // already at end of file (a late notice or continue)
  bool eof = false;
  for (int i = 0;; ++i) {
    if (i == kReadsPerTurn) {
      (void)rt_.post(self.main_port(),
                     Message::u64(kContinueMagic | static_cast<unsigned>(stream)));
      return;
    }
    const ssize_t n = ::read(fd, buf + sizeof h, kChunk);
    if (n > 0) {
      (void)events_.post(Message::bytes(std::span<const std::byte>(buf, sizeof h + n)));
      // Drained, and the writer is still there: its next write or close is a new edge.
      if (static_cast<std::size_t>(n) < kChunk && !hung_up) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    eof = true;  // 0, or an error that ends the stream (EIO)
    break;
  }
  if (!eof) return;
  {
    std::lock_guard lock(mu_);
    (stream == kOut ? out_fd_ : err_fd_) = -1;
    hand_over(fd);
  }
  maybe_finish(self);
}

void ProcessState::on_pidfd_ready() noexcept {
  bool now_reaped = false;
  {
    std::lock_guard lock(mu_);
    if (pidfd_ < 0) return;
    if (!reaped_) {
      auto r = reap_if_exited(pidfd_);
      if (r.ok() && !r->has_value()) {
        (void)eh_->modify_fd(pidfd_, reaper_, FdEvents::readable);  // not yet: re-arm
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

void ProcessState::maybe_finish(Isolate& self) noexcept {
  bool detach_tie = false;
  {
    std::lock_guard lock(mu_);
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
        int out, err, pidfd, in;
        {
          std::lock_guard lock(mu_);
          out = out_fd_;
          err = err_fd_;
          pidfd = pidfd_;
          in = stdin_fd_;
        }
        const bool hung_up = any(ev->events & (FdEvents::hang_up | FdEvents::error));
        if (ev->fd == out && out >= 0) {
          read_stream(self, kOut, hung_up);
        } else if (ev->fd == err && err >= 0) {
          read_stream(self, kErr, hung_up);
        } else if (ev->fd == pidfd && pidfd >= 0) {
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
              *fd = -1;
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
            *fd = -1;
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
  const std::uint64_t v = m.as_u64();
  if ((v & 0xffffffff00000000ull) == kContinueMagic) {
    read_stream(self, static_cast<Stream>(v & 3), /*hung_up=*/true);  // no shortcut here
  }
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
