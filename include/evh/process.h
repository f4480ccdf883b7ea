// evh/process.h — child processes whose output, input and exit are port messages.
//
// What it is: a `ProcessManager` starts children without a shell (SEMANTICS 21) and delivers
// what they write to stdout and stderr, and finally their exit status, to a port the caller
// names, as `ProcessEvent` messages (decode them with `decode_process_event()`). The exit is
// learnt through a pidfd watched by the runtime's event handler: no SIGCHLD handler, and no
// thread ever calls `wait()` on a child evh did not start (SEMANTICS 22). docs/PROCESSES.md
// argues the choices (clone with CLONE_VM|CLONE_VFORK, a spawner thread for parent-death ties,
// one small reaper isolate per child).
//
// Ordering: for one child, its stdout and stderr messages come in the order the bytes were
// written to each stream, and the `exit` message comes last, after both streams reached end of
// file (SEMANTICS 23). A grandchild that keeps the child's stdout open therefore holds the exit
// message back until it closes it (Dart's `Process.exitCode` waits the same way).
//
// Threads: every method of ProcessManager and Process may be called from any thread; none
// blocks, except `ProcessManager::spawn()` (for the few hundred microseconds the kernel takes
// to create the child and exec it) and the ProcessManager destructor (which kills and reaps
// the children it still has; see there).
//
// Ownership: the caller owns fds given with `Stdio::from_fd()`; evh dups them into the child
// and never closes them. Every fd evh opens is O_CLOEXEC, and the child receives exactly three
// fds (0, 1, 2): everything else the process has, whoever opened it, is closed in the child
// before exec. A `ProcessManager` must be destroyed before its Runtime. `Process` handles may
// outlive the manager and the Runtime: once the runtime has shut down a handle holds nothing of
// it, `write_stdin()` says `Errc::shutting_down` (or EPIPE when the child is gone), `kill()` still
// reaches a child that runs (through its pidfd) and says `ESRCH` once it is reaped, and
// `exit_code()` keeps what it learnt.
#pragma once

#include <evh/error.h>
#include <evh/export.h>
#include <evh/message.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace evh {

class Isolate;
class Runtime;

namespace detail {
class ProcessState;
class ProcessManagerImpl;
}  // namespace detail

// What one of the child's standard streams is connected to.
enum class StdioKind : std::uint8_t {
  pipe,     // a pipe to the parent: stdout/stderr arrive as messages, stdin is written by Process
  inherit,  // the parent's own fd 0, 1 or 2
  null,     // /dev/null
  fd,       // an fd the caller gives (dup'ed into the child; stays the caller's)
};

struct Stdio {
  StdioKind kind = StdioKind::pipe;
  int fd = -1;  // only for StdioKind::fd

  static constexpr Stdio pipe() noexcept { return {StdioKind::pipe, -1}; }
  static constexpr Stdio inherit() noexcept { return {StdioKind::inherit, -1}; }
  static constexpr Stdio null() noexcept { return {StdioKind::null, -1}; }
  static constexpr Stdio from_fd(int fd) noexcept { return {StdioKind::fd, fd}; }
};

// Whether the child is killed (SIGKILL) when this process dies, however it dies
// (PR_SET_PDEATHSIG, with the getppid() check that closes the race with a parent dying before
// the child set it up). Such children are forked from a thread the manager owns for its whole
// life, because the kernel ties the signal to the forking *thread*, and pool workers idle out.
enum class ParentDeath : std::uint8_t { ignore, kill_child };

// `new_group` puts the child in a process group of its own (pgid = its pid), so that
// `Process::kill_group()` reaches everything it starts and a terminal's Ctrl-C to our group
// does not.
enum class ProcessGroup : std::uint8_t { inherit, new_group };

// A `detached` child is meant to outlive the runtime and this process: it is started through
// an intermediate process that exits at once (so init, not us, reaps it), in a new session, and
// it is never tied. There is no exit message for it and its stdio must not be pipes.
enum class Detach : std::uint8_t { no, yes };

// SpawnOptions::output_pipe_size's default, and the sizes it may take besides 0: F_SETPIPE_SZ's
// floor (one page) and the largest size evh passes it (an int; the kernel refuses more than 2^31
// with EINVAL whoever asks).
inline constexpr std::size_t kDefaultOutputPipeSize = std::size_t{256} << 10;
inline constexpr std::size_t kMinOutputPipeSize = 4096;
inline constexpr std::size_t kMaxOutputPipeSize = std::size_t{1} << 30;
// SpawnOptions::stream_window's default.
inline constexpr std::size_t kDefaultStreamWindow = std::size_t{4} << 20;

// Every field has a default, so designated initializers may name only what they change.
struct SpawnOptions {
  // The program and its arguments. argv[0] without a '/' is looked up in PATH (the child's
  // environment's PATH, else the parent's, else "/usr/local/bin:/usr/bin:/bin"). No shell.
  std::vector<std::string> argv = {};
  // "NAME=value" strings; nullopt: the parent's environment.
  std::optional<std::vector<std::string>> env = std::nullopt;
  // The child's working directory; empty: the parent's.
  std::string cwd = {};
  Stdio stdin_mode = Stdio::pipe();
  Stdio stdout_mode = Stdio::pipe();
  Stdio stderr_mode = Stdio::pipe();
  // Where the child's ProcessEvents go. May be PortId::none only when neither stdout nor
  // stderr is a pipe and nobody needs the exit message (events are then dropped; the child is
  // still reaped).
  PortId events = PortId::none;
  // Copied into every event of this child, to tell children apart on one port.
  std::uint64_t tag = 0;
  ParentDeath parent_death = ParentDeath::ignore;
  ProcessGroup group = ProcessGroup::inherit;
  Detach detach = Detach::no;
  // When set, the child is killed (SIGKILL) when this isolate exits — killed, normal exit,
  // error or runtime shutdown. Implies ParentDeath::kill_child: an isolate cannot outlive its
  // process, so neither should a child tied to it.
  Isolate* tie_to = nullptr;
  // Flow control for stdout and stderr (each on its own): at most this many bytes of a stream's
  // data messages posted and not yet released (destroyed) by their receiver. When the window is
  // full evh stops reading that pipe, the pipe fills, and the child blocks in write() until
  // the receiver releases a data message — so a fast child into a slow reader holds at most
  // the window plus one read (up to the pipe's size: output_pipe_size) per stream. 0: no limit (evh
  // reads as fast as the child writes, whatever the receiver's pace). A receiver that keeps every
  // data message until the exit therefore waits for ever once the child writes more than this.
  std::size_t stream_window = kDefaultStreamWindow;
  // How big the stdout and stderr pipes (those that are Stdio::pipe()) grow, in bytes, once the
  // child fills one — it writes faster than it is read: it is streaming. Each starts at the
  // kernel's default (64 KiB); the first read that finds it full asks the kernel for this size
  // (F_SETPIPE_SZ, which rounds it up to a power-of-two number of pages), and evh reads it in
  // chunks of up to the pipe's size from then on: fewer wakeups, reads and messages per MiB
  // (docs/PROCESSES.md, "Pipe growth"). A child that never fills its pipe costs no more pipe
  // memory. 0: never grown. Refused with `Errc::invalid_argument` unless 0 or
  // kMinOutputPipeSize..kMaxOutputPipeSize (4096..2^30). Where the kernel refuses the size (EPERM
  // above /proc/sys/fs/pipe-max-size, 1 MiB by default, or once the user's pipes exceed
  // /proc/sys/fs/pipe-user-pages-soft, for a process without CAP_SYS_RESOURCE) the pipe keeps its
  // size: a smaller pipe is slower, not wrong.
  std::size_t output_pipe_size = kDefaultOutputPipeSize;
  // When set and spawn() fails, receives what failed in words, e.g. "chdir /nope: No such file
  // or directory" or "execve evh-tool: Permission denied" (the error code says the same errno).
  std::string* error_message = nullptr;
};

// What a message from a child says.
enum class ProcessEventKind : std::uint8_t {
  // Data messages carry a native payload (read it with decode_process_event()); releasing one
  // gives its bytes back to the stream's window (SpawnOptions::stream_window).
  stdout_data = 1,  // `data` is the next chunk of the child's stdout
  stderr_data = 2,  // `data` is the next chunk of the child's stderr
  exit = 3,         // final: the child was reaped; `exit_code` is its code, or -signal
  stdin_ready = 4,  // the stdin pipe has room again after a short `write_stdin()`
};

// A decoded event. `data` borrows the message's bytes: valid while the message owns them.
struct ProcessEvent {
  ProcessEventKind kind = ProcessEventKind::exit;
  pid_t pid = 0;
  std::uint64_t tag = 0;
  int exit_code = 0;  // for exit: the code (0..255) of a normal exit, -s for death by signal s
  std::span<const std::byte> data;

  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
  }
};

// The ProcessEvent a message carries, or nothing when it is not a process message.
EVH_API std::optional<ProcessEvent> decode_process_event(const Message& message) noexcept;

// A handle to one child. Move-only; dropping it does not kill the child (use a tie for that):
// its events keep coming and it is reaped all the same.
class EVH_API Process {
 public:
  Process() noexcept = default;  // empty: its calls fail; ProcessManager::spawn() makes them
  Process(Process&&) noexcept = default;
  Process& operator=(Process&&) noexcept = default;
  ~Process();

  pid_t pid() const noexcept;
  explicit operator bool() const noexcept { return state_ != nullptr; }

  // Writes to the child's stdin pipe without blocking: returns how many bytes the pipe took now
  // (possibly fewer than given, possibly 0). After a short write the events port receives one
  // `stdin_ready` when the pipe has room again. Errors: EPIPE when the child closed its end (or
  // exited), EBADF after close_stdin(), `Errc::invalid_argument` when stdin is not a pipe,
  // `Errc::shutting_down` once the runtime has shut down (while the child runs).
  Result<std::size_t> write_stdin(std::span<const std::byte> bytes) noexcept;
  Result<std::size_t> write_stdin(std::string_view text) noexcept {
    return write_stdin(std::as_bytes(std::span<const char>(text.data(), text.size())));
  }
  // Closes the stdin pipe (the child reads end of file). Idempotent.
  void close_stdin() noexcept;

  // Sends `signal` through the pidfd: never reaches a recycled pid. ESRCH once the child has
  // been reaped.
  Status kill(int signal) noexcept;
  // Sends `signal` to the child's process group (ProcessGroup::new_group only, else
  // `Errc::invalid_argument`); ESRCH once the child has been reaped (for a detached child, which
  // init reaps: once nothing is left in its group). Through the pidfd
  // (PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9): never reaches a group whose leader took a recycled
  // pid. Before 6.9 a detached child's group is refused with ENOSYS (no way to reach it that a
  // recycled pid could not); our own children's groups are still reached, by -pid, while the
  // child is unreaped and its pid therefore taken.
  Status kill_group(int signal) noexcept;

  // The exit code once the child has been reaped (which may be before the exit message is
  // posted: that waits for the streams' end of file).
  std::optional<int> exit_code() const noexcept;

 private:
  friend class detail::ProcessManagerImpl;  // spawns them
  explicit Process(std::shared_ptr<detail::ProcessState> state) noexcept;
  std::shared_ptr<detail::ProcessState> state_;
};

struct ProcessManagerStats {
  std::uint64_t spawned = 0;       // children started (exec succeeded)
  std::uint64_t spawn_failed = 0;  // spawn() calls that returned an error
  std::uint64_t reaped = 0;        // children reaped
  std::uint64_t live = 0;          // started, not yet reaped (detached ones excluded)
};

// Starts children for one Runtime and keeps track of them until they are reaped.
class EVH_API ProcessManager {
 public:
  explicit ProcessManager(Runtime& runtime);
  // Orderly end: new spawns fail with `Errc::shutting_down`; every child not yet reaped and not
  // detached is sent SIGKILL and reaped (waiting at most 10 s per child for it to die); the
  // spawner thread, if started, is joined. Messages for those children may still arrive
  // (their stream data, the exit) while the Runtime lives.
  ~ProcessManager();
  ProcessManager(const ProcessManager&) = delete;
  ProcessManager& operator=(const ProcessManager&) = delete;

  // Starts a child. Errors, with nothing left behind (no fd, no child, no zombie):
  //   `Errc::invalid_argument`: an empty argv, a NUL byte inside an argument, an environment
  //     string or the cwd, a pipe or a tie asked for a detached child, StdioKind::fd with a
  //     negative fd, no events port while stdout or stderr is a pipe;
  //   errno from the kernel while preparing (EMFILE, ENFILE from pipe2, EAGAIN from clone);
  //   errno of the failed step in the child: chdir (ENOENT, ENOTDIR, EACCES) or execve
  //     (ENOENT, EACCES, ENOEXEC, ...). The child has then been reaped; no exit message follows.
  //   `Errc::shutting_down` after the manager or the runtime began shutting down.
  Result<Process> spawn(const SpawnOptions& options);

  ProcessManagerStats stats() const noexcept;
  Runtime& runtime() const noexcept;

 private:
  std::shared_ptr<detail::ProcessManagerImpl> impl_;
};

}  // namespace evh
