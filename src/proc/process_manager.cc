// ProcessManagerImpl: spawning a child and keeping it until it is reaped (see process_manager.h).
#include "proc/process_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "io/event_handler.h"
#include "proc/process_state.h"

extern char** environ;

namespace evh {
namespace detail {

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

// The reaper isolate's handler. Freeing it (with the isolate: at the reaper's own end, or at the
// runtime's shutdown) makes the state let go of everything the runtime owns, so that a Process
// handle may outlive the Runtime.
class ReaperHandler {
 public:
  explicit ReaperHandler(std::shared_ptr<ProcessState> state) noexcept : state_(std::move(state)) {}
  ReaperHandler(ReaperHandler&&) noexcept = default;
  ReaperHandler(const ReaperHandler&) = delete;
  ReaperHandler& operator=(const ReaperHandler&) = delete;
  ~ReaperHandler() {
    if (state_) state_->on_reaper_gone();  // null once moved from
  }
  void operator()(Isolate& self, Message& m) noexcept { state_->on_message(self, m); }

 private:
  std::shared_ptr<ProcessState> state_;
};

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
  if (o.output_pipe_size != 0 &&
      (o.output_pipe_size < kMinOutputPipeSize || o.output_pipe_size > kMaxOutputPipeSize)) {
    return fail(Errc::invalid_argument, "output_pipe_size " + std::to_string(o.output_pipe_size) +
                                            " is not 0 (never grow) or 4096..2^30 bytes");
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
  bool env_has_path = false;
  if (o.env) {
    envp_storage.reserve(o.env->size() + 1);
    for (const auto& e : *o.env) {
      envp_storage.push_back(e.c_str());
      if (e.rfind("PATH=", 0) == 0) {
        path_list = e.substr(5);
        env_has_path = true;
      }
    }
    envp_storage.push_back(nullptr);
    envp = envp_storage.data();
  }
  // The child's PATH, else the parent's (as process.h says, and as execvpe looks up PATH in the
  // caller's environment whatever envp holds), else the default.
  if (!env_has_path) {
    if (const char* p = std::getenv("PATH")) path_list = p;
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
  auto reaper = rt_.spawn(make_handler(ReaperHandler(state)));
  if (!reaper) return abandon(reaper.error());
  state->reaper_ = (*reaper)->main_port();
  for (int i = 0; i < 2; ++i) {
    const int fd = i == 0 ? state->out_fd_ : state->err_fd_;
    if (fd >= 0) {
      state->credit_[i] = std::make_shared<StreamCredit>(
          o.stream_window, stream_read_size(fd), o.output_pipe_size, eh, fd, state->reaper_, open_);
    }
  }
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
    EventHandlerImpl& impl = EventHandlerAccess::impl(*eh);
    // The exit: oneshot, readable once the child has exited — through IORING_OP_WAITID where
    // the backend and the kernel have it, else the pidfd's poll; the reaper reaps it.
    Status s = impl.watch_child_exit(state->pidfd_, state->reaper_, CommandKind::add);
    if (s) ++state->registrations_;
    // stdout and stderr are read by the thread that drives the handler, straight to `events`
    // (the state is their FdReader; the reaper hears only their notices).
    for (int fd : {state->out_fd_, state->err_fd_}) {
      if (s && fd >= 0) {
        s = impl.add_reader(fd, state->reaper_, *state, FdEvents::readable, FdMode::edge);
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
  // release: pairs with StreamCredit::release's acquire load.
  open_->store(false, std::memory_order_release);
  {
    std::lock_guard lock(spawner_mu_);
    spawner_stop_ = true;
    spawner_cv_.notify_all();
  }
  if (spawner_.joinable()) spawner_.join();
}

}  // namespace detail

}  // namespace evh
