#include "proc/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <system_error>

#if defined(__SANITIZE_THREAD__)
#include <dlfcn.h>
#endif

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000  // Linux 5.2
#endif

// The child runs in the parent's address space, on the caller's TLS, while the caller is
// suspended: sanitizer bookkeeping there would describe the parent's thread, so the child's
// functions are not instrumented, and they make raw system calls only.
#define EVH_CHILD_CODE __attribute__((noinline, no_sanitize("address", "thread", "undefined")))

namespace evh::detail {
namespace {

constexpr std::size_t kChildStack = 64 * 1024;
constexpr idtype_t kPidfdIdType = static_cast<idtype_t>(3);  // P_PIDFD, Linux 5.4

std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

// The kernel's struct sigaction as rt_sigaction takes it. Only the handler is set (SIG_DFL,
// everything else zero), so the layouts without sa_restorer read the same values.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  std::uint64_t mask;
};
constexpr long kSigsetBytes = 8;  // _NSIG / 8 on Linux

using CloneFn = int (*)(int (*)(void*), void*, int, void*, ...);

// ThreadSanitizer (GCC 12's libtsan) intercepts clone() and treats every clone as a fork: it
// re-initialises its runtime in the child — with CLONE_VM that is the parent's memory — and
// the parent then dies on its next thread start ("starting new threads after multi-threaded
// fork"). The child here runs no instrumented code, so TSan builds call libc's clone itself.
CloneFn libc_clone() noexcept {
#if defined(__SANITIZE_THREAD__)
  static const CloneFn fn = [] {
    void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void* sym = libc != nullptr ? ::dlsym(libc, "clone") : nullptr;
    return sym != nullptr ? reinterpret_cast<CloneFn>(sym) : CloneFn{&::clone};
  }();
  return fn;
#else
  return &::clone;
#endif
}

// Shared between the parent and the child (CLONE_VM): the child writes, the parent reads
// after clone() returned, which CLONE_VFORK orders after the child's exec or exit.
struct ChildShared {
  const ExecPlan* plan;
  bool in_grandchild;
  // Detached only: the real child runs in a private copy of memory, so it reports a failure
  // through this pipe (O_CLOEXEC: exec closes it) rather than through the fields below.
  int report_fd;
  int error;
  int step;
  pid_t grandchild_pid;
  // Detached only: the real child's pidfd, made by the clone that creates it (CLONE_PIDFD), so
  // it names that process and no later holder of its pid. The intermediate shares our fd table
  // (CLONE_FILES), so the fd is ours; -1 when that clone failed.
  int grandchild_pidfd;
};

[[noreturn]] EVH_CHILD_CODE void child_exit(int code) {
  for (;;) syscall(SYS_exit_group, code);
}

[[noreturn]] EVH_CHILD_CODE void child_fail(ChildShared* shared, ChildStep step, int error) {
  if (shared->report_fd >= 0) {
    const int report[2] = {error, static_cast<int>(step)};
    syscall(SYS_write, shared->report_fd, report, sizeof report);
  } else {
    shared->error = error;
    shared->step = static_cast<int>(step);
  }
  child_exit(127);
}

// close_range() over [first, last], with a loop up to max_fd where the call is missing.
EVH_CHILD_CODE void close_fds(unsigned first, unsigned last, int max_fd) {
  if (first > last) return;
  if (syscall(SYS_close_range, first, last, 0u) < 0) {
    for (long fd = first; fd <= last && fd <= max_fd; ++fd) syscall(SYS_close, fd);
  }
}

EVH_CHILD_CODE int child_main(void* arg) {
  ChildShared* shared = static_cast<ChildShared*>(arg);
  const ExecPlan& plan = *shared->plan;

  if (plan.detach && !shared->in_grandchild) {
    // The intermediate: start the real child and exit, so that init reaps it, not us. The
    // real child gets a private copy of memory (fork semantics, without a new stack, so it
    // returns here like fork() does): a second process sharing ours, started from inside
    // the first, left ThreadSanitizer's runtime reporting races in unrelated code later.
    // Detached spawns are rare; the page-table copy is their price.
    shared->in_grandchild = true;
    // x86-64 and arm64 order: flags, stack, parent_tid (where CLONE_PIDFD stores the fd),
    // child_tid, tls.
    const long grandchild =
        syscall(SYS_clone, CLONE_VFORK | CLONE_PIDFD | SIGCHLD, 0, &shared->grandchild_pidfd, 0, 0);
    if (grandchild < 0) {
      shared->error = errno;
      shared->step = static_cast<int>(ChildStep::clone);
      child_exit(127);
    }
    if (grandchild > 0) {  // the intermediate, once the real child has exec'd or exited
      shared->grandchild_pid = static_cast<pid_t>(grandchild);
      child_exit(0);
    }
    // The real child, in its own memory: failures go through report_fd from here on.
    if (shared->report_fd < 3) {
      const long moved = syscall(SYS_fcntl, shared->report_fd, F_DUPFD_CLOEXEC, 3);
      if (moved < 0) child_exit(127);
      shared->report_fd = static_cast<int>(moved);
    }
  }

  // Default dispositions first, then an empty mask: a handler of the parent must never run
  // here, in the parent's memory. The parent blocked every signal before clone().
  KernelSigaction dfl{};
  dfl.handler = SIG_DFL;
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    syscall(SYS_rt_sigaction, sig, &dfl, nullptr, kSigsetBytes);
  }
  const std::uint64_t empty_mask = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, nullptr, kSigsetBytes);

  if (plan.new_session) {
    if (syscall(SYS_setsid) < 0) child_fail(shared, ChildStep::setsid, errno);
  } else if (plan.new_group) {
    if (syscall(SYS_setpgid, 0, 0) < 0) child_fail(shared, ChildStep::setpgid, errno);
  }

  if (plan.parent_death) {
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    // The parent may have died before the line above: we would then belong to init (or a
    // subreaper) and never get the signal. Nobody waits for a report any more.
    if (syscall(SYS_getppid) != plan.parent_pid) child_exit(127);
  }

  // Stdio. First move every source that sits on another stdio number out of the way, so that
  // no dup3 below overwrites a source still needed.
  int src[3] = {plan.stdio[0], plan.stdio[1], plan.stdio[2]};
  for (int i = 0; i < 3; ++i) {
    if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
      const long moved = syscall(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3);
      if (moved < 0) child_fail(shared, ChildStep::dup, errno);
      src[i] = static_cast<int>(moved);
    }
  }
  for (int i = 0; i < 3; ++i) {
    if (src[i] < 0) {
      syscall(SYS_close, i);
    } else if (src[i] == i) {
      // Inherited as it is: only the close-on-exec flag goes. A parent without fd i leaves
      // the child without it too.
      syscall(SYS_fcntl, i, F_SETFD, 0);
    } else if (syscall(SYS_dup3, src[i], i, 0) < 0) {
      child_fail(shared, ChildStep::dup, errno);
    }
  }
  // Everything else goes, whoever opened it and whatever its close-on-exec flag says (but
  // the report pipe of a detached child, which exec closes).
  if (shared->report_fd >= 3) {
    const auto keep = static_cast<unsigned>(shared->report_fd);
    close_fds(3u, keep - 1, plan.max_fd);
    close_fds(keep + 1, ~0u, plan.max_fd);
  } else {
    close_fds(3u, ~0u, plan.max_fd);
  }

  if (plan.cwd != nullptr && syscall(SYS_chdir, plan.cwd) < 0) {
    child_fail(shared, ChildStep::chdir, errno);
  }

  // execvp's rules without its shell fallback: EACCES is remembered while later candidates are
  // tried; "not there" errors move on; anything else stops the search.
  int error = ENOENT;
  bool denied = false;
  for (const char* const* path = plan.paths; *path != nullptr; ++path) {
    syscall(SYS_execve, *path, plan.argv, plan.envp);
    const int e = errno;
    if (e == EACCES) {
      denied = true;
    } else if (e != ENOENT && e != ENOTDIR && e != ESTALE && e != ENODEV && e != ETIMEDOUT) {
      error = e;
      denied = false;
      break;
    }
  }
  child_fail(shared, ChildStep::execve, denied ? EACCES : error);
}

}  // namespace

const char* child_step_name(ChildStep step) noexcept {
  switch (step) {
    case ChildStep::none:
      return "none";
    case ChildStep::setsid:
      return "setsid";
    case ChildStep::setpgid:
      return "setpgid";
    case ChildStep::dup:
      return "dup";
    case ChildStep::chdir:
      return "chdir";
    case ChildStep::execve:
      return "execve";
    case ChildStep::clone:
      return "clone";
  }
  return "?";
}

std::vector<std::string> exec_candidates(const std::string& program, const std::string& path_list) {
  if (program.find('/') != std::string::npos) return {program};
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t colon = path_list.find(':', start);
    const std::size_t len = colon == std::string::npos ? path_list.size() - start : colon - start;
    // Appended piece by piece: g++ 12 warns (-Wrestrict, a false positive) on dir + "/" + name.
    std::string candidate;
    candidate.reserve(len + 2 + program.size());
    if (len == 0) {
      candidate.push_back('.');
    } else {
      candidate.append(path_list, start, len);
    }
    candidate.push_back('/');
    candidate.append(program);
    out.push_back(std::move(candidate));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

namespace {

int decode_status(const siginfo_t& info) noexcept {
  if (info.si_code == CLD_EXITED) return info.si_status;
  return -info.si_status;  // CLD_KILLED, CLD_DUMPED
}

}  // namespace

Result<int> reap_blocking(int pidfd) noexcept {
  siginfo_t info{};
  while (::waitid(kPidfdIdType, static_cast<id_t>(pidfd), &info, WEXITED) != 0) {
    if (errno != EINTR) return errno_code(errno);
  }
  return decode_status(info);
}

Result<std::optional<int>> reap_if_exited(int pidfd) noexcept {
  siginfo_t info{};
  while (::waitid(kPidfdIdType, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) != 0) {
    if (errno != EINTR) return errno_code(errno);
  }
  if (info.si_pid == 0) return std::optional<int>{};
  return std::optional<int>{decode_status(info)};
}

Result<SpawnedChild> spawn_child(const ExecPlan& plan, SpawnFailure* failure) noexcept {
  SpawnFailure ignored;
  if (failure == nullptr) failure = &ignored;
  int report[2] = {-1, -1};
  if (plan.detach && ::pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) {
    failure->step = ChildStep::clone;
    return errno_code(errno);
  }
  const std::size_t mapped = kChildStack;
  void* stack = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    const int e = errno;
    for (int fd : report) {
      if (fd >= 0) ::close(fd);
    }
    failure->step = ChildStep::clone;
    return errno_code(e);
  }
  ChildShared shared{};
  shared.plan = &plan;
  shared.report_fd = report[1];
  shared.grandchild_pidfd = -1;

  // Every signal blocked (glibc's internal ones too, hence the raw call) until the child has
  // put its dispositions back to default; the child inherits this mask.
  const std::uint64_t all = ~std::uint64_t{0};
  std::uint64_t saved = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &saved, kSigsetBytes);
  int pidfd = -1;
  // A detached child's intermediate shares our fd table, so that the pidfd it gets for the
  // real child is ours (see ChildShared::grandchild_pidfd).
  const int files = plan.detach ? CLONE_FILES : 0;
  const pid_t pid =
      libc_clone()(child_main, static_cast<char*>(stack) + kChildStack,
                   CLONE_VM | CLONE_VFORK | CLONE_PIDFD | files | SIGCHLD, &shared, &pidfd);
  const int clone_errno = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved, nullptr, kSigsetBytes);
  ::munmap(stack, mapped);
  if (plan.detach) {
    // The real child has exec'd (closing its copy of the write end) or failed, having
    // written its report first; copies held by other threads' children in the middle of
    // their own spawn do not matter: the read does not wait for end of file.
    ::close(report[1]);
    int got[2] = {0, 0};
    if (pid >= 0 && ::read(report[0], got, sizeof got) == static_cast<ssize_t>(sizeof got)) {
      shared.error = got[0];
      shared.step = got[1];
    }
    ::close(report[0]);
  }
  if (pid < 0) {
    failure->step = ChildStep::clone;
    return errno_code(clone_errno);
  }

  // The child has exec'd or exited (CLONE_VFORK). A failed one, or the detached case's
  // intermediate, is ours to reap now.
  const int error = shared.error;
  if (error != 0 || plan.detach) {
    (void)reap_blocking(pidfd);
    ::close(pidfd);
    if (error != 0) {
      if (shared.grandchild_pidfd >= 0) ::close(shared.grandchild_pidfd);
      failure->step = static_cast<ChildStep>(shared.step);
      return errno_code(error);
    }
    // Not our child: the pidfd only serves kill() and kill_group(). It was made with the
    // child, so it never reaches another process, even once init has reaped this one and its
    // pid is reused (a pidfd_open() here, after the intermediate exited, could name a stranger).
    return SpawnedChild{shared.grandchild_pid, shared.grandchild_pidfd};
  }
  return SpawnedChild{pid, pidfd};
}

}  // namespace evh::detail
