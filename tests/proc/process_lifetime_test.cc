// Process handles against their Runtime's lifetime and pid reuse: a handle that outlives the
// runtime holds nothing of it, and signals reach only the child they were meant for.
#include <evh/process.h>
#include <evh/runtime.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

}  // namespace
}  // namespace evh
