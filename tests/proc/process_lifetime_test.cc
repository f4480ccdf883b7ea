// Process handles against their Runtime's lifetime and pid reuse: a handle that outlives the
// runtime holds nothing of it, and signals reach only the child they were meant for.
#include <evh/process.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

const char* const kHelper = EVH_PROC_HELPER;

// Defect 2 (issue 14): a Process handle kept a SendPort, an IsolateRef (its tie) and the event
// handler's pointer, all runtime memory, for as long as the handle lived: a handle outliving its
// Runtime released them into freed memory. Now the runtime's shutdown takes them from the state,
// so the tied isolate is freed with the runtime, and the handle's later calls are clear errors.
TEST(ProcessLifetime, HandleOutlivingItsRuntimeHoldsNothingOfIt) {
  auto rt = std::make_unique<Runtime>();
  std::optional<Receiver> rx{std::move(rt->open_receiver()).value()};
  auto pm = std::make_unique<ProcessManager>(*rt);
  IsolateRef tie = *rt->spawn(make_handler([](Isolate&, Message&) {}));
  SpawnOptions o;
  o.argv = {kHelper, "sleep"};
  o.events = rx->id();
  o.tie_to = tie.get();
  auto spawned = pm->spawn(o);
  ASSERT_TRUE(spawned.ok()) << spawned.error().message();
  std::optional<Process> p{std::move(spawned).value()};
  tie = IsolateRef();
  pm.reset();  // kills and reaps the child (the manager goes before the runtime, as required)
  rx.reset();
  rt->shutdown();
  // Every isolate's memory went back with the shutdown: the handle holds no reference.
  EXPECT_EQ(rt->stats().isolates_live, 0u);
  rt.reset();
  // The runtime is gone; the handle answers from what it owns.
  EXPECT_EQ(p->exit_code(), -SIGKILL);
  EXPECT_EQ(p->kill(SIGTERM).error(), std::errc::no_such_process);
  EXPECT_EQ(p->write_stdin("late").error(), std::errc::broken_pipe);  // the child is gone
  p->close_stdin();
  p.reset();  // frees the state: no runtime memory is touched (ASan)
}

// A handle whose child still runs when the runtime shuts down (the runtime's shutdown() before
// the manager's end): writes need the event handler, so they say shutting_down rather than
// writing into a pipe nobody will ever report on.
TEST(ProcessLifetime, WriteAfterRuntimeShutdownIsShuttingDown) {
  Runtime rt;
  std::optional<Receiver> rx{std::move(rt.open_receiver()).value()};
  auto pm = std::make_unique<ProcessManager>(rt);
  SpawnOptions o;
  o.argv = {"cat"};
  o.events = rx->id();
  o.stdout_mode = Stdio::null();
  o.stderr_mode = Stdio::null();
  auto p = pm->spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().message();
  ASSERT_EQ(p->write_stdin("before").value(), 6u);
  rt.shutdown();
  EXPECT_EQ(p->write_stdin("after").error(), Errc::shutting_down);
  p->close_stdin();  // cat reads end of file and exits
  pm.reset();        // and is reaped
  EXPECT_TRUE(p->exit_code().has_value());
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT), -1);
}

// Makes this process the subreaper of its descendants for the scope: a detached child's
// intermediate exits, and the child is then ours to reap, so the test decides when its pid is
// freed.
struct Subreaper {
  Subreaper() { EXPECT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }
  ~Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
};

// A process that takes `pid` (clone3 with set_tid: CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN) and
// leads a session of its own, as any program started from a shell would lead its group: a
// stranger holding a recycled pid. -1 with errno when the kernel or our privileges refuse.
pid_t start_impostor(pid_t pid) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return -1;
  std::int32_t tid = pid;
  clone_args args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<std::uintptr_t>(&tid);
  args.set_tid_size = 1;
  const long got = syscall(SYS_clone3, &args, sizeof args);
  if (got == 0) {  // the impostor: raw system calls only (a copy of a threaded process)
    syscall(SYS_setsid);
    syscall(SYS_write, ready[1], "x", 1);
    for (;;) syscall(SYS_pause);
  }
  const int error = errno;
  ::close(ready[1]);
  if (got > 0) {
    char c;
    while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  ::close(ready[0]);
  errno = error;
  return static_cast<pid_t>(got);
}

// Defect 4 (issue 14): a detached child's pidfd was opened after its intermediate exited, and
// kill_group() sent kill(-pid) unchecked. Here the child exits and is reaped, a stranger takes
// its pid and leads a group of that number: neither kill() nor kill_group() may reach it.
TEST(ProcessLifetime, DetachedChildSignalsNeverReachARecycledPid) {
  Subreaper subreaper;
  Runtime rt;
  auto pm = std::make_unique<ProcessManager>(rt);
  SpawnOptions o;
  o.argv = {kHelper, "exit", "0"};
  o.stdin_mode = o.stdout_mode = o.stderr_mode = Stdio::null();
  o.detach = Detach::yes;
  auto p = pm->spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().message();
  const pid_t pid = p->pid();
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);  // ours to reap, as the subreaper: the pid is free
  const pid_t impostor = start_impostor(pid);
  if (impostor < 0 && (errno == EPERM || errno == ENOSYS)) {
    GTEST_SKIP() << "clone3 set_tid is refused here: " << std::strerror(errno);
  }
  ASSERT_EQ(impostor, pid) << std::strerror(errno);
  ASSERT_EQ(::getpgid(impostor), impostor);
  EXPECT_EQ(p->kill_group(SIGKILL).error(), std::errc::no_such_process);
  EXPECT_EQ(p->kill(SIGKILL).error(), std::errc::no_such_process);
  EXPECT_EQ(::waitpid(impostor, &status, WNOHANG), 0) << "a signal reached the stranger";
  ::kill(impostor, SIGKILL);
  EXPECT_EQ(::waitpid(impostor, &status, 0), impostor);
}

// kill_group() still reaches a detached child's group while the child runs.
TEST(ProcessLifetime, DetachedChildGroupIsReachedThroughItsPidfd) {
  Subreaper subreaper;
  Runtime rt;
  auto pm = std::make_unique<ProcessManager>(rt);
  SpawnOptions o;
  o.argv = {kHelper, "sleep"};
  o.stdin_mode = o.stdout_mode = o.stderr_mode = Stdio::null();
  o.detach = Detach::yes;
  auto p = pm->spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().message();
  pm.reset();  // a detached child is not the manager's to end
  EXPECT_EQ(p->kill_group(100000).error(), std::errc::invalid_argument);  // not "unsupported"
  ASSERT_TRUE(p->kill_group(SIGTERM).ok());
  int status = 0;
  ASSERT_EQ(::waitpid(p->pid(), &status, 0), p->pid());
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

}  // namespace
}  // namespace evh

namespace evh {
namespace {

// Defect 8 (issue 14): with a custom environment that has no PATH, argv[0] was looked up in the
// built-in default only, where process.h promises the parent's PATH first. A program found only
// through the parent's PATH now starts.
TEST(ProcessPath, CustomEnvWithoutPathUsesTheParentsPath) {
  char dir_template[] = "/tmp/evh-path-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  ASSERT_NE(dir, nullptr);
  const std::string link = std::string(dir) + "/evh-path-probe";
  ASSERT_EQ(::symlink(kHelper, link.c_str()), 0);
  const char* old = std::getenv("PATH");
  const std::string saved = old != nullptr ? old : "";
  // Each test runs in a process of its own (gtest_discover_tests): no other thread reads it.
  ::setenv("PATH", (std::string(dir) + ":" + saved).c_str(), 1);
  Runtime rt;
  Receiver rx = std::move(rt.open_receiver()).value();
  std::optional<int> code;
  {
    ProcessManager pm(rt);
    SpawnOptions o;
    o.argv = {"evh-path-probe", "exit", "7"};
    o.env = std::vector<std::string>{"EVH_ONE=1"};
    o.events = rx.id();
    auto p = pm.spawn(o);
    EXPECT_TRUE(p.ok()) << p.error().message();
    while (p.ok() && !code) {
      Message m = test::expect_receive(rx);
      auto ev = decode_process_event(m);
      ASSERT_TRUE(ev.has_value());
      if (ev->kind == ProcessEventKind::exit) code = ev->exit_code;
    }
    // A PATH in the custom environment is the one used: the probe is not in it.
    o.env = std::vector<std::string>{"PATH=/nonexistent"};
    EXPECT_EQ(pm.spawn(o).error(), std::errc::no_such_file_or_directory);
  }
  ::setenv("PATH", saved.c_str(), 1);
  ::unlink(link.c_str());
  ::rmdir(dir);
  EXPECT_EQ(code, 7);
}

}  // namespace
}  // namespace evh
