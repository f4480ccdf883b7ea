// An IsolateMutex waiter and an immediate kill: the kill wakes the waiter; it does not poll.
#include <evh/isolate_mutex.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;

std::string task_file(long tid, const char* name) {
  return "/proc/self/task/" + std::to_string(tid) + "/" + name;
}

// The thread's scheduler state letter (R, S, D, ...), from /proc.
char task_state(long tid) {
  std::ifstream in(task_file(tid, "stat"));
  std::string line;
  std::getline(in, line);
  const auto paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

// How many times the thread has gone to sleep of its own accord.
long voluntary_switches(long tid) {
  std::ifstream in(task_file(tid, "status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(24));
  }
  return -1;
}

// Defect 8 (issue 14): a waiter slept in slices of 10 ms and looked for a kill between them (the
// kill could not know which word it slept on), so it cost a wakeup every 10 ms and noticed an
// immediate kill only at the end of its slice. Now it sleeps until something happens, and the
// kill wakes it. The check: while nothing happens the waiter's thread does not wake at all (an
// observation window, not a synchronisation: the slices would wake it about five times), and the
// kill ends its wait with isolate_dead.
TEST(IsolateMutexWake, ImmediateKillWakesAWaiterThatOtherwiseSleeps) {
  IsolateMutex mu;  // outlives the runtime, whose end releases it from the holder
  Runtime rt;
  auto rx = rt.open_receiver();
  SendPort out = *rt.send_port(rx->id());
  auto holder = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    (void)out.post(Message::u64(mu.lock(self).ok() ? 1 : 0));  // held across messages
  }));
  auto waiter = rt.spawn(make_handler([&, out](Isolate& self, Message&) {
    (void)out.post(Message::u64(static_cast<std::uint64_t>(::syscall(SYS_gettid))));
    Status s = mu.lock(self);
    (void)out.post(Message::u64(1000 + static_cast<std::uint64_t>(s.error().value())));
  }));
  ASSERT_TRUE(holder.ok() && waiter.ok());
  ASSERT_TRUE(rt.post((*holder)->main_port(), Message::u64(0)).ok());
  ASSERT_EQ(test::expect_receive(*rx).as_u64(), 1u);
  ASSERT_TRUE(rt.post((*waiter)->main_port(), Message::u64(0)).ok());
  const long tid = static_cast<long>(test::expect_receive(*rx).as_u64());
  // Its thread goes to sleep on the lock (after a short spin).
  const auto until = std::chrono::steady_clock::now() + test::kLongWait;
  while (task_state(tid) != 'S' && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();  // polling a deadline, not synchronising
  }
  ASSERT_EQ(task_state(tid), 'S');
  const long before = voluntary_switches(tid);
  std::this_thread::sleep_for(50ms);  // the observation window
  EXPECT_EQ(voluntary_switches(tid), before) << "the waiter woke up while nothing happened";
  (*waiter)->kill(KillPriority::immediate);
  EXPECT_EQ(test::expect_receive(*rx).as_u64(),
            1000u + static_cast<std::uint64_t>(Errc::isolate_dead));
  EXPECT_EQ(mu.owner(), holder->get());
}

}  // namespace
}  // namespace evh
