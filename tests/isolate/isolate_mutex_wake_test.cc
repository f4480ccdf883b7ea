// An IsolateMutex waiter and an immediate kill: the kill wakes the waiter; it does not poll.
#include <evh/isolate_mutex.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "test_util.h"

namespace evh {
namespace {

std::string task_file(long tid, const char* name) {
  return "/proc/self/task/" + std::to_string(tid) + "/" + name;
}

// The system call a thread is blocked in, as the kernel reports it in /proc (the number and its
// six arguments), or nothing when the thread is running.
struct BlockedCall {
  long nr = -1;
  std::array<std::uint64_t, 6> args{};
};
std::optional<BlockedCall> blocked_call(long tid) {
  std::ifstream in(task_file(tid, "syscall"));
  std::string word;
  if (!(in >> word) || word == "running") return std::nullopt;
  BlockedCall c;
  c.nr = std::stol(word);
  if (c.nr < 0) return std::nullopt;  // blocked, but not in a system call
  for (auto& a : c.args) {
    if (!(in >> word)) return std::nullopt;
    a = std::stoull(word, nullptr, 16);
  }
  return c;
}

// Defect 8 (issue 14): a waiter slept in slices of 10 ms and looked for a kill between them (the
// kill could not know which word it slept on), so it cost a wakeup every 10 ms and noticed an
// immediate kill only at the end of its slice. Now it sleeps until something happens, and the
// kill wakes it. The check reads what the kernel says the waiter's thread is blocked in: a
// FUTEX_WAIT on the mutex's word with no timeout — it cannot wake unless someone wakes it (the
// slices passed a 10 ms timeout there) — and then the kill ends its wait with isolate_dead.
// (It used to watch the thread's context switches through a 50 ms window, which a loaded machine
// could fail: any other reason to sleep in it counted.)
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
  // Its thread goes to sleep on the lock's word (after a short spin).
  const auto word = reinterpret_cast<std::uintptr_t>(&mu);  // the mutex's first member
  auto on_the_word = [&](const std::optional<BlockedCall>& c) {
    return c && c->nr == SYS_futex && c->args[0] >= word && c->args[0] < word + sizeof mu &&
           (static_cast<int>(c->args[1]) & FUTEX_CMD_MASK) == FUTEX_WAIT;
  };
  std::optional<BlockedCall> call = blocked_call(tid);
  const auto until = std::chrono::steady_clock::now() + test::kLongWait;
  while (!on_the_word(call) && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();  // polling a deadline, not synchronising
    call = blocked_call(tid);
  }
  ASSERT_TRUE(on_the_word(call)) << "the waiter never slept on the lock";
  EXPECT_EQ(call->args[3], 0u) << "the waiter sleeps with a timeout: it polls";
  (*waiter)->kill(KillPriority::immediate);
  EXPECT_EQ(test::expect_receive(*rx).as_u64(),
            1000u + static_cast<std::uint64_t>(Errc::isolate_dead));
  EXPECT_EQ(mu.owner(), holder->get());
}

}  // namespace
}  // namespace evh
