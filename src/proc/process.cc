// Processes: the ProcessManager, the per-child state, and the reaper isolate that turns a
// child's pipes and pidfd readiness into ProcessEvent messages. docs/PROCESSES.md has the why.
#include <errno.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/process.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "base/assert.h"
#include "proc/spawn.h"

extern char** environ;

namespace evh {
namespace detail {
namespace {

std::error_code errno_code(int e) noexcept {
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

// Bytes asked for per read(); one message each. More than a default pipe holds (64 KiB), so
// one read drains it and a short read says so without an extra EAGAIN read; less than
// malloc's mmap threshold (128 KiB), so a message's copy stays off the mmap path. Pipes are
// not grown: a 1 MiB pipe ring pushed the data out of the caches and measured no faster.
constexpr std::size_t kChunk = 120 * 1024;
// Reads per stream per message, so that a child writing without pause cannot keep the reaper
// (and its worker) to itself; the rest continues in a message the reaper posts to itself.
constexpr int kReadsPerTurn = 16;
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

Status pidfd_signal(int pidfd, int signal) noexcept {
  if (syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) != 0) return errno_code(errno);
  return {};
}

}  // namespace

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
  std::vector<int> deferred_close_;  // handed over while the handler was shutting down
};

class ProcessManagerImpl : public std::enable_shared_from_this<ProcessManagerImpl> {
 public:
  explicit ProcessManagerImpl(Runtime& rt) : rt_(rt) {}

  Result<Process> spawn(const SpawnOptions& options);
  void shutdown() noexcept;

  void reaped(ProcessState* state) noexcept {
    reaped_count_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    live_.erase(state);
  }

  ProcessManagerStats stats() const noexcept {
    ProcessManagerStats s;
    s.spawned = spawned_.load(std::memory_order_relaxed);
    s.spawn_failed = failed_.load(std::memory_order_relaxed);
    s.reaped = reaped_count_.load(std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    s.live = live_.size();
    return s;
  }

  Runtime& rt_;

 private:
  Result<SpawnedChild> spawn_on_spawner(const ExecPlan& plan, SpawnFailure* failure);
  void spawner_loop() noexcept;

  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> reaped_count_{0};

  mutable std::mutex mu_;
  bool closed_ = false;                                                    // guarded by mu_
  std::unordered_map<ProcessState*, std::shared_ptr<ProcessState>> live_;  // guarded by mu_

  // The spawner thread: forks the children whose parent-death signal must outlive any pool
  // worker. Started on first use, joined at shutdown.
  struct Job {
    const ExecPlan* plan;
    SpawnFailure* failure;
    std::optional<Result<SpawnedChild>> result;
  };
  std::mutex spawner_mu_;
  std::condition_variable spawner_cv_;
  std::deque<Job*> jobs_;  // guarded by spawner_mu_
  bool spawner_stop_ = false;
  std::thread spawner_;
};

// ---- ProcessState -------------------------------------------------------------------------------

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
          for (int* fd : {&out_fd_, &err_fd_, &pidfd_, &stdin_fd_}) {
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
  if (stdin_registered_) {
    hand_over(fd);
  } else {
    ::close(fd);
  }
}

Status ProcessState::kill(int signal) noexcept {
  std::lock_guard lock(mu_);
  if (reaped_ || pidfd_ < 0) return errno_code(ESRCH);
  return pidfd_signal(pidfd_, signal);
}

Status ProcessState::kill_group(int signal) noexcept {
  if (!new_group_) return Errc::invalid_argument;
  std::lock_guard lock(mu_);
  // While the leader is not reaped its pid cannot be reused, so -pid is still its group.
  if (reaped_ || (pidfd_ < 0 && !detached_)) return errno_code(ESRCH);
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

// ---- ProcessManagerImpl -------------------------------------------------------------------------

namespace {

bool has_nul(const std::string& s) noexcept {
  return s.find('\0') != std::string::npos;
}

// Owns fds until released; closes the rest on every early return.
struct FdCloser {
  std::vector<int> fds;
  ~FdCloser() {
    for (int fd : fds) ::close(fd);
  }
  int keep(int fd) {
    fds.push_back(fd);
    return fd;
  }
  void release(int fd) {
    for (auto& f : fds) {
      if (f == fd) f = -1;
    }
    std::erase(fds, -1);
  }
};

// A pipe whose parent end is non-blocking. `child_reads` picks which end the child gets.
Status make_pipe(FdCloser& fds, bool child_reads, int& parent_end, int& child_end) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_code(errno);
  fds.keep(p[0]);
  fds.keep(p[1]);
  parent_end = child_reads ? p[1] : p[0];
  child_end = child_reads ? p[0] : p[1];
  if (::fcntl(parent_end, F_SETFL, O_NONBLOCK) != 0) return errno_code(errno);
  return {};
}

}  // namespace

Result<SpawnedChild> ProcessManagerImpl::spawn_on_spawner(const ExecPlan& plan,
                                                          SpawnFailure* failure) {
  Job job{&plan, failure, std::nullopt};
  std::unique_lock lock(spawner_mu_);
  if (spawner_stop_) return Errc::shutting_down;
  if (!spawner_.joinable()) spawner_ = std::thread([this] { spawner_loop(); });
  jobs_.push_back(&job);
  spawner_cv_.notify_all();
  spawner_cv_.wait(lock, [&] { return job.result.has_value(); });
  return std::move(*job.result);
}

void ProcessManagerImpl::spawner_loop() noexcept {
  std::unique_lock lock(spawner_mu_);
  for (;;) {
    spawner_cv_.wait(lock, [&] { return spawner_stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    Job* job = jobs_.front();
    jobs_.pop_front();
    lock.unlock();
    auto r = spawn_child(*job->plan, job->failure);
    lock.lock();
    job->result.emplace(std::move(r));
    spawner_cv_.notify_all();
  }
}

Result<Process> ProcessManagerImpl::spawn(const SpawnOptions& o) {
  auto fail = [&](std::error_code ec, std::string_view what = {}) -> Result<Process> {
    failed_.fetch_add(1, std::memory_order_relaxed);
    if (o.error_message != nullptr) {
      *o.error_message = what.empty() ? ec.message() : std::string(what) + ": " + ec.message();
    }
    return ec;
  };
  // ---- checks that need no kernel
  if (o.argv.empty() || o.argv[0].empty()) return fail(Errc::invalid_argument);
  for (const auto& a : o.argv) {
    if (has_nul(a)) return fail(Errc::invalid_argument);
  }
  if (o.env) {
    for (const auto& e : *o.env) {
      if (has_nul(e)) return fail(Errc::invalid_argument);
    }
  }
  if (has_nul(o.cwd)) return fail(Errc::invalid_argument);
  const Stdio modes[3] = {o.stdin_mode, o.stdout_mode, o.stderr_mode};
  bool any_pipe = false;
  for (const Stdio& s : modes) {
    if (s.kind == StdioKind::fd && s.fd < 0) return fail(Errc::invalid_argument);
    any_pipe = any_pipe || s.kind == StdioKind::pipe;
  }
  const bool detach = o.detach == Detach::yes;
  const bool tied = o.parent_death == ParentDeath::kill_child || o.tie_to != nullptr;
  if (detach && (any_pipe || tied)) return fail(Errc::invalid_argument);
  if (o.events == PortId::none &&
      (o.stdout_mode.kind == StdioKind::pipe || o.stderr_mode.kind == StdioKind::pipe)) {
    return fail(Errc::invalid_argument);
  }
  {
    std::lock_guard lock(mu_);
    if (closed_) return fail(Errc::shutting_down);
  }
  SendPort events;
  if (o.events != PortId::none) {
    auto sp = rt_.send_port(o.events);
    if (!sp) return fail(sp.error());
    events = std::move(sp).value();
  }
  EventHandler* eh = nullptr;
  if (!detach) {
    auto r = rt_.event_handler();
    if (!r) return fail(r.error());
    eh = *r;
  }

  // ---- the plan: every string and array the child reads, built here
  std::vector<const char*> argv;
  argv.reserve(o.argv.size() + 1);
  for (const auto& a : o.argv) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  std::vector<const char*> envp_storage;
  const char* const* envp = environ;
  std::string path_list;
  if (o.env) {
    envp_storage.reserve(o.env->size() + 1);
    for (const auto& e : *o.env) {
      envp_storage.push_back(e.c_str());
      if (e.rfind("PATH=", 0) == 0) path_list = e.substr(5);
    }
    envp_storage.push_back(nullptr);
    envp = envp_storage.data();
  } else if (const char* p = std::getenv("PATH")) {
    path_list = p;
  }
  if (path_list.empty()) path_list = "/usr/local/bin:/usr/bin:/bin";
  const std::vector<std::string> candidates = exec_candidates(o.argv[0], path_list);
  std::vector<const char*> paths;
  for (const auto& c : candidates) paths.push_back(c.c_str());
  paths.push_back(nullptr);

  ExecPlan plan;
  plan.argv = argv.data();
  plan.envp = envp;
  plan.paths = paths.data();
  plan.cwd = o.cwd.empty() ? nullptr : o.cwd.c_str();
  plan.new_group = o.group == ProcessGroup::new_group;
  plan.new_session = detach;
  plan.parent_death = tied;
  plan.detach = detach;
  plan.parent_pid = ::getpid();
  rlimit rl{};
  plan.max_fd = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                    ? static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20))
                    : 1 << 16;

  // ---- fds: the parent's ends end up in the state; the child's are closed after the spawn
  FdCloser parent_fds;  // released into the state on success
  FdCloser child_fds;   // always closed here
  int parent_end[3] = {-1, -1, -1};
  int null_fd = -1;
  for (int i = 0; i < 3; ++i) {
    switch (modes[i].kind) {
      case StdioKind::pipe: {
        int child_end = -1;
        FdCloser both;
        if (auto s = make_pipe(both, /*child_reads=*/i == 0, parent_end[i], child_end); !s) {
          return fail(s.error());
        }
        both.fds.clear();
        parent_fds.keep(parent_end[i]);
        child_fds.keep(child_end);
        plan.stdio[i] = child_end;
        break;
      }
      case StdioKind::inherit:
        plan.stdio[i] = i;
        break;
      case StdioKind::null:
        if (null_fd < 0) {
          null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
          if (null_fd < 0) return fail(errno_code(errno));
          child_fds.keep(null_fd);
        }
        plan.stdio[i] = null_fd;
        break;
      case StdioKind::fd:
        plan.stdio[i] = modes[i].fd;
        break;
    }
  }

  // ---- the child
  SpawnFailure failure;
  auto child = tied ? spawn_on_spawner(plan, &failure) : spawn_child(plan, &failure);
  if (!child) {
    std::string what = child_step_name(failure.step);
    if (failure.step == ChildStep::chdir) what += " " + o.cwd;
    if (failure.step == ChildStep::execve) what += " " + o.argv[0];
    return fail(child.error(), what);
  }
  if (detach) {
    spawned_.fetch_add(1, std::memory_order_relaxed);
    auto state = std::make_shared<ProcessState>(rt_, nullptr, shared_from_this());
    state->pid_ = child->pid;
    state->tag_ = o.tag;
    state->detached_ = true;
    state->new_group_ = true;  // a session leader leads its group
    state->pidfd_ = child->pidfd;
    // Nothing to reap (init does it); kill() still reaches it through the pidfd.
    return Process(std::move(state));
  }

  auto state = std::make_shared<ProcessState>(rt_, eh, shared_from_this());
  state->pid_ = child->pid;
  state->tag_ = o.tag;
  state->new_group_ = plan.new_group;
  state->stdin_is_pipe_ = modes[0].kind == StdioKind::pipe;
  state->events_ = std::move(events);
  state->pidfd_ = child->pidfd;
  for (int fd : {parent_end[0], parent_end[1], parent_end[2]}) {
    if (fd >= 0) parent_fds.release(fd);
  }
  state->stdin_fd_ = parent_end[0];
  state->out_fd_ = parent_end[1];
  state->err_fd_ = parent_end[2];

  // Something failed after the child started: it must not outlive this call.
  auto abandon = [&](std::error_code ec) -> Result<Process> {
    (void)pidfd_signal(state->pidfd_, SIGKILL);
    (void)reap_blocking(state->pidfd_);
    if (state->tie_attached_) (void)state->tie_->detach(*state);
    state->tie_attached_ = false;
    return fail(ec);
  };
  if (o.tie_to != nullptr) {
    detail::retain(o.tie_to);  // IsolateRef(Isolate*) adopts a reference: take one
    state->tie_ = IsolateRef(o.tie_to);
    if (auto s = o.tie_to->attach(*state); !s) return abandon(s.error());
    state->tie_attached_ = true;
  }
  auto reaper = rt_.spawn(
      make_handler([state](Isolate& self, Message& m) noexcept { state->on_message(self, m); }));
  if (!reaper) return abandon(reaper.error());
  state->reaper_ = (*reaper)->main_port();
  {
    std::lock_guard lock(mu_);
    if (closed_) {
      (*reaper)->destroy();
      return abandon(Errc::shutting_down);
    }
    live_.emplace(state.get(), state);
  }
  // Registered last: a child that already exited, or already wrote, is reported at once.
  {
    std::lock_guard lock(state->mu_);
    Status s =
        eh->add_fd(state->pidfd_, state->reaper_, FdEvents::readable, {.mode = FdMode::oneshot});
    if (s) ++state->registrations_;
    for (int fd : {state->out_fd_, state->err_fd_}) {
      if (s && fd >= 0) {
        s = eh->add_fd(fd, state->reaper_, FdEvents::readable, {.mode = FdMode::edge});
        if (s) ++state->registrations_;
      }
    }
    if (!s) {
      // Only a handler that is shutting down refuses here; it ends the registrations made.
      // The reaper isolate is left to the runtime's shutdown: it closes the fds only after
      // the handler let go of them (on `unregistered`, or when it is freed after the join).
      (void)pidfd_signal(state->pidfd_, SIGKILL);
      auto code = reap_blocking(state->pidfd_);
      state->record_reaped(code.ok() ? *code : -SIGKILL);
    }
    if (!s) {
      std::lock_guard mlock(mu_);
      live_.erase(state.get());
    }
    if (!s) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      return s.error();
    }
  }
  spawned_.fetch_add(1, std::memory_order_relaxed);
  return Process(std::move(state));
}

void ProcessManagerImpl::shutdown() noexcept {
  std::unordered_map<ProcessState*, std::shared_ptr<ProcessState>> live;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    live.swap(live_);
  }
  for (auto& [p, state] : live) state->kill_and_reap(std::chrono::seconds(10));
  {
    std::lock_guard lock(spawner_mu_);
    spawner_stop_ = true;
    spawner_cv_.notify_all();
  }
  if (spawner_.joinable()) spawner_.join();
}

}  // namespace detail

// ---- public API ---------------------------------------------------------------------------------

std::optional<ProcessEvent> decode_process_event(const Message& message) noexcept {
  const auto data = message.data();
  if (data.size() < sizeof(detail::EventHeader)) return std::nullopt;
  detail::EventHeader h;
  std::memcpy(&h, data.data(), sizeof h);
  if (h.magic != detail::EventHeader::kMagic) return std::nullopt;
  if (h.kind < ProcessEventKind::stdout_data || h.kind > ProcessEventKind::stdin_ready) {
    return std::nullopt;
  }
  ProcessEvent ev;
  ev.kind = h.kind;
  ev.pid = h.pid;
  ev.tag = h.tag;
  ev.exit_code = h.exit_code;
  ev.data = data.subspan(sizeof h);
  return ev;
}

Process::Process(std::shared_ptr<detail::ProcessState> state) noexcept : state_(std::move(state)) {}
Process::~Process() = default;

pid_t Process::pid() const noexcept {
  return state_ ? state_->pid_ : -1;
}

Result<std::size_t> Process::write_stdin(std::span<const std::byte> bytes) noexcept {
  if (!state_) return Errc::invalid_argument;
  return state_->write_stdin(bytes);
}

void Process::close_stdin() noexcept {
  if (state_) state_->close_stdin();
}

Status Process::kill(int signal) noexcept {
  if (!state_) return Errc::invalid_argument;
  return state_->kill(signal);
}

Status Process::kill_group(int signal) noexcept {
  if (!state_) return Errc::invalid_argument;
  return state_->kill_group(signal);
}

std::optional<int> Process::exit_code() const noexcept {
  if (!state_) return std::nullopt;
  return state_->exit_code();
}

ProcessManager::ProcessManager(Runtime& runtime)
    : impl_(std::make_shared<detail::ProcessManagerImpl>(runtime)) {}

ProcessManager::~ProcessManager() {
  impl_->shutdown();
}

Result<Process> ProcessManager::spawn(const SpawnOptions& options) {
  return impl_->spawn(options);
}

ProcessManagerStats ProcessManager::stats() const noexcept {
  return impl_->stats();
}

Runtime& ProcessManager::runtime() const noexcept {
  return impl_->rt_;
}

}  // namespace evh
