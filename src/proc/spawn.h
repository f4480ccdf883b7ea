// proc/spawn.h — the kernel-facing half of processes: create a child with clone(CLONE_VM |
// CLONE_VFORK | CLONE_PIDFD), set it up with raw system calls, exec it, and report a failure of
// any step before exec to the caller with its errno.
//
// What may block: `spawn_child()` blocks the calling thread until the child has exec'd or
// failed (CLONE_VFORK), and, after a failure, until the failed child is reaped (it is already
// exiting). Nothing else here blocks.
//
// Memory: the plan is borrowed for the call; the child runs on a stack mapped for the call, in
// the caller's address space, and reads only the plan (built by the caller beforehand: the
// child allocates nothing, takes no lock and touches no libc state).
#pragma once

#include <evh/error.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace evh::detail {

// A step of the child's set-up, for error messages.
enum class ChildStep : int { none = 0, setsid, setpgid, dup, chdir, execve, clone };
const char* child_step_name(ChildStep step) noexcept;

struct ExecPlan {
  // Null-terminated arrays of NUL-terminated strings, owned by the caller.
  const char* const* argv = nullptr;
  const char* const* envp = nullptr;
  // The paths execve tries in order (argv[0] itself, or argv[0] in each PATH directory).
  const char* const* paths = nullptr;
  const char* cwd = nullptr;  // null: stay in the parent's
  // What the child's fds 0, 1 and 2 become: an fd of the parent (dup'ed), or -1 for "leave
  // that number closed".
  int stdio[3] = {-1, -1, -1};
  bool new_group = false;     // setpgid(0, 0)
  bool new_session = false;   // setsid()
  bool parent_death = false;  // PR_SET_PDEATHSIG(SIGKILL) + the getppid() check
  bool detach = false;        // through an intermediate process that exits at once
  pid_t parent_pid = 0;       // getpid() of the parent, for the getppid() check
  int max_fd = 0;             // highest fd to close when close_range() is missing (< 5.9)
};

struct SpawnedChild {
  pid_t pid = -1;
  int pidfd = -1;  // O_CLOEXEC; made with the child (CLONE_PIDFD), detached ones too
};

struct SpawnFailure {
  ChildStep step = ChildStep::none;
};

// Starts the child. On error nothing is left: no child, no zombie, no fd. `failure` (may be
// null) receives the step that failed.
Result<SpawnedChild> spawn_child(const ExecPlan& plan, SpawnFailure* failure) noexcept;

// The candidates execve should try for `program`, following execvp: a name with a '/' is
// itself; otherwise each directory of `path_list` (empty entries mean "."), in order.
std::vector<std::string> exec_candidates(const std::string& program, const std::string& path_list);

// Reaps `pidfd`'s child, waiting for it to exit. Returns the exit code (or -signal).
Result<int> reap_blocking(int pidfd) noexcept;
// Reaps it if it has exited: the code, or nothing when it is still running.
Result<std::optional<int>> reap_if_exited(int pidfd) noexcept;

}  // namespace evh::detail
