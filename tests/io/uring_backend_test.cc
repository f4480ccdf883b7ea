// The io_uring backend on its own (UringPoller) and the choice of backend: the probe, the
// fallback to epoll when io_uring is forbidden, and the EVH_BACKEND kill switch. The checks that
// need their own environment or a seccomp filter run in a child: this test binary, started
// again with EVH_TEST_BACKEND_CHILD naming the check (BackendChild.Check below).
#include <errno.h>
#include <evh/runtime.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "io/io_test_util.h"
#include "io/uring_poller.h"

extern char** environ;

namespace evh {
namespace {

using detail::Poller;
using detail::PollEvent;
using detail::UringIssuer;
using detail::UringOptions;
using detail::UringPoller;
using test::Pipe;

std::unique_ptr<UringPoller> make_uring(UringOptions o = {}) {
  std::string why;
  auto p = UringPoller::create(o, &why);
  if (!p) return nullptr;
  return std::move(p).value();
}

#define REQUIRE_URING(p)                             \
  if (!(p)) {                                        \
    std::string why;                                 \
    (void)UringPoller::create({}, &why);             \
    GTEST_SKIP() << "io_uring unavailable: " << why; \
  }

// Waits (no limit) until every token in `want` has been reported at least once; the tokens
// reported, with repeats.
std::multiset<std::uint64_t> collect(Poller& p, const std::set<std::uint64_t>& want) {
  std::multiset<std::uint64_t> seen;
  std::set<std::uint64_t> missing = want;
  PollEvent events[4];  // small on purpose: completions left over wait for the next wait
  while (!missing.empty()) {
    auto r = p.wait(events, Poller::kForever);
    EXPECT_TRUE(r.ok());
    if (!r) break;
    for (std::size_t i = 0; i < r->count; ++i) {
      seen.insert(events[i].token);
      missing.erase(events[i].token);
    }
  }
  return seen;
}

// A multishot poll the kernel ends — here because its completion found the CQ full — is armed
// again, and nothing that happened meanwhile is lost: every pipe is reported, and reported again
// after new data.
TEST(UringPoller, MultishotEndedByAFullCqIsRearmedWithNoLostEvent) {
  UringOptions o;
  o.sq_entries = 4;
  o.cq_entries = 8;
  auto p = make_uring(o);
  REQUIRE_URING(p);
  constexpr int kPipes = 40;
  std::vector<std::unique_ptr<Pipe>> pipes;
  std::set<std::uint64_t> all;
  for (int i = 0; i < kPipes; ++i) {
    pipes.push_back(std::make_unique<Pipe>());
    ASSERT_TRUE(p->add(pipes.back()->r, FdEvents::readable, FdMode::edge, i).ok());
    all.insert(i);
  }
  // Arm every poll, nothing ready yet.
  PollEvent events[4];
  ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());
  for (int round = 0; round < 3; ++round) {
    for (auto& pipe : pipes) pipe->put();
    (void)collect(*p, all);
    for (auto& pipe : pipes) pipe->drain();
  }
  // 40 completions into an 8-entry CQ: the kernel ended multishots, and they were re-armed.
  EXPECT_GT(p->rearms(), 0u);
}

// The thread that armed a poll exits: the kernel cancels its requests. A shared ring (pool
// workers take turns driving it) arms them again from the next thread that waits.
TEST(UringPoller, PollsOfAnExitedThreadAreRearmed) {
  auto p = make_uring();
  REQUIRE_URING(p);
  Pipe a;
  std::thread([&] {
    ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 7).ok());
    PollEvent events[4];
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // submits the poll from this thread
  }).join();
  a.put();
  auto seen = collect(*p, {7});
  EXPECT_EQ(seen.count(7), 1u);
  EXPECT_GT(p->rearms(), 0u);
}

// The -ECANCELED re-arm does not report old data again (EdgeReportsNewDataOnce's contract). The
// thread that armed an edge fd's multishot poll reports data and exits, the data unread. Its
// exit does not end the poll (only requests that hold a ring's file are cancelled then): nothing
// is completed until the fd's next wake-up, which cannot run as the dead thread's task work and
// comes back -ECANCELED — a wake-up that was not reported. So the re-arm reports new data, once.
TEST(UringPoller, EdgePollOfAnExitedThreadReportsOnlyNewData) {
  auto p = make_uring();
  REQUIRE_URING(p);
  Pipe a;
  std::thread([&] {
    ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 7).ok());
    PollEvent events[4];
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // the multishot is this thread's
    a.put();
    EXPECT_EQ(collect(*p, {7}).count(7), 1u);
  }).join();
  PollEvent events[4];
  for (int i = 0; i < 3; ++i) {
    auto r = p->wait(events, Poller::kNoWait);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->count, 0u) << "the unread byte reported again, with nothing new";
  }
  EXPECT_EQ(p->rearms(), 0u);  // nothing ended the poll yet
  a.put();                     // new data: its wake-up comes back -ECANCELED, then a report
  EXPECT_EQ(collect(*p, {7}).count(7), 1u);
  EXPECT_EQ(p->rearms(), 1u);
  EXPECT_EQ(a.drain(), 2u);
  a.put();  // the poll is this thread's now
  EXPECT_EQ(collect(*p, {7}).count(7), 1u);
  EXPECT_EQ(p->rearms(), 1u);
}

// ---- the ring registered per thread (IORING_REGISTER_RING_FDS) ---------------------------------

// A wait that sleeps — nothing is ready, so it ends at its limit, 1 ms on — which registers the
// ring with the calling thread; then `pipe`'s data, reported under `token`. A registered index
// that names no ring fails the wait (EBADF), and one that names another ring never reports.
void sleep_then_report(UringPoller& p, const Pipe& pipe, std::uint64_t token) {
  PollEvent events[4];
  const auto until = detail::MonoClock::now() + std::chrono::milliseconds(1);
  auto r = p.wait(events, until);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->count, 0u);
  pipe.put();
  EXPECT_EQ(collect(p, {token}).count(token), 1u);
  EXPECT_EQ(pipe.drain(), 1u);
}

// Pool workers take turns waiting in the shared ring: each registers it with itself, at its
// first wait that sleeps, and is served through its own index from then on (a second wait
// registers nothing more); a worker that exits takes its registration with it and a new one
// registers its own. Threads of their own, whose tables start empty.
TEST(UringPoller, EachThreadThatWaitsRegistersTheSharedRingOnce) {
  auto p = make_uring();
  REQUIRE_URING(p);
  Pipe a;
  ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::level, 7).ok());
  for (std::uint64_t n = 1; n <= 3; ++n) {
    std::thread([&] {
      sleep_then_report(*p, a, 7);
      sleep_then_report(*p, a, 7);
    }).join();  // the thread exits: its registration goes with it
    EXPECT_EQ(p->ring_registrations(), n);
  }
}

// A thread keeps its registration of a ring whose poller another thread destroyed (the kernel's
// table is its own); the next poller — whose ring likely gets the same fd number — must not be
// taken for it: this thread registers the new ring and is served by it.
TEST(UringPoller, RingOfADestroyedPollerIsNotTakenForTheNextOne) {
  auto first = make_uring();
  REQUIRE_URING(first);
  Pipe a;
  ASSERT_TRUE(first->add(a.r, FdEvents::readable, FdMode::level, 1).ok());
  std::atomic<int> step{0};
  std::unique_ptr<UringPoller> second;
  std::thread t([&] {
    sleep_then_report(*first, a, 1);
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();  // the main thread swaps the pollers
    sleep_then_report(*second, a, 2);
    EXPECT_EQ(second->ring_registrations(), 1u);
  });
  while (step.load() != 1) std::this_thread::yield();
  EXPECT_EQ(first->ring_registrations(), 1u);
  first.reset();  // on this thread: t's registration still holds the old ring
  second = make_uring();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->add(a.r, FdEvents::readable, FdMode::level, 2).ok());
  step.store(2);
  t.join();
}

// More rings than a thread keeps registered (four): the rest are waited in through their fds,
// and every one reports. On a thread of its own, whose table starts empty; the pollers are
// destroyed on it, which drops its registrations.
TEST(UringPoller, RingsBeyondTheThreadsTableWaitByTheirFd) {
  REQUIRE_URING(make_uring());
  std::thread([] {
    constexpr int kRings = 6;
    std::vector<std::unique_ptr<UringPoller>> rings;
    std::vector<std::unique_ptr<Pipe>> pipes;
    for (int i = 0; i < kRings; ++i) {
      rings.push_back(make_uring());
      ASSERT_NE(rings.back(), nullptr);
      pipes.push_back(std::make_unique<Pipe>());
      ASSERT_TRUE(rings.back()->add(pipes.back()->r, FdEvents::readable, FdMode::level, 9).ok());
    }
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < kRings; ++i) sleep_then_report(*rings[i], *pipes[i], 9);
    }
    std::uint64_t registered = 0;
    for (auto& r : rings) registered += r->ring_registrations();
    EXPECT_EQ(registered, 4u);
  }).join();
}

// A completion already in the ring when its fd is removed and added again under a new token is
// never reported under the old token.
TEST(UringPoller, CompletionRacingARemoveIsDropped) {
  auto p = make_uring();
  REQUIRE_URING(p);
  for (int round = 0; round < 50; ++round) {
    Pipe a;
    ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 1).ok());
    PollEvent events[4];
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());
    a.put();  // the completion is posted now (or at the next enter)
    ASSERT_TRUE(p->remove(a.r).ok());
    ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 2).ok());
    auto seen = collect(*p, {2});
    EXPECT_EQ(seen.count(1), 0u) << round;
    ASSERT_TRUE(p->remove(a.r).ok());
  }
}

// Ring reads (Poller::read_into): a buffer lent for one read, and how many times it came back.
struct LentBuffer {
  static inline int released = 0;
  std::byte bytes[64] = {};
  detail::ReadBuffer lend() {
    return detail::ReadBuffer{bytes, sizeof bytes, [](std::byte*) noexcept { ++released; }};
  }
};

// Waits, a short limit at a time, until `fd`'s read has reported; its result.
std::optional<detail::ReadResult> wait_for_read(UringPoller& p, int fd) {
  PollEvent events[4];
  for (int i = 0; i < 500; ++i) {
    auto r = p.wait(events, detail::MonoClock::now() + std::chrono::milliseconds(10));
    EXPECT_TRUE(r.ok());
    if (!r) return std::nullopt;
    if (auto done = p.take_read(fd)) return done;
  }
  return std::nullopt;
}

// A pipe's readiness and its read are one completion: the data is in the lent buffer when the
// wait reports the fd, its end of file is a result of 0, and nothing is read() by the caller.
TEST(UringPoller, ReadIntoAPipeReportsTheDataAndTheEnd) {
  auto p = make_uring();
  REQUIRE_URING(p);
  ASSERT_TRUE(p->reads());
  Pipe a;
  LentBuffer buf;
  LentBuffer::released = 0;
  ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 7).ok());
  ASSERT_TRUE(p->read_into(a.r, buf.lend(), 7).ok());
  EXPECT_EQ(p->read_into(a.r, buf.lend(), 7).error(), std::errc::device_or_resource_busy);
  EXPECT_FALSE(p->take_read(a.r).has_value());  // in flight: nothing yet
  ASSERT_EQ(::write(a.w, "hello", 5), 5);
  PollEvent events[4];
  auto r = p->wait(events, Poller::kForever);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->count, 1u);
  EXPECT_EQ(events[0].token, 7u);
  EXPECT_TRUE(any(events[0].events & FdEvents::readable));
  auto done = p->take_read(a.r);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->result, 5);
  EXPECT_EQ(done->buffer.data, buf.bytes);
  EXPECT_EQ(std::memcmp(buf.bytes, "hello", 5), 0);
  EXPECT_FALSE(p->take_read(a.r).has_value());  // taken once
  EXPECT_EQ(a.drain(), 0u);                     // the ring read it all

  ASSERT_TRUE(p->read_into(a.r, buf.lend(), 7).ok());
  ::close(a.w);
  a.w = -1;
  done = wait_for_read(*p, a.r);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->result, 0);  // end of file
  ASSERT_TRUE(p->remove(a.r).ok());
  EXPECT_EQ(LentBuffer::released,
            0);  // every result was taken: the buffer was never the poller's to free
}

// A read whose watch goes while it is in flight keeps its buffer until the kernel is done with
// it, then releases it once — whether a later wait or the poller's end reaps the completion.
TEST(UringPoller, ReadOfARemovedWatchReleasesItsBufferOnce) {
  for (const bool destroy_first : {false, true}) {
    auto p = make_uring();
    REQUIRE_URING(p);
    Pipe a;
    LentBuffer buf;
    LentBuffer::released = 0;
    ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 1).ok());
    ASSERT_TRUE(p->read_into(a.r, buf.lend(), 1).ok());
    PollEvent events[4];
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // the read is in the kernel now
    ASSERT_TRUE(p->remove(a.r).ok());
    EXPECT_EQ(LentBuffer::released, 0);  // the kernel may still hold it
    if (destroy_first) {
      p.reset();
    } else {
      for (int i = 0; i < 500 && LentBuffer::released == 0; ++i) {
        ASSERT_TRUE(p->wait(events, detail::MonoClock::now() + std::chrono::milliseconds(10)).ok());
      }
      p.reset();
    }
    EXPECT_EQ(LentBuffer::released, 1) << destroy_first;
  }
}

// Regression: on a single-issuer ring the poller's end ran on the thread that joined the issuer,
// where the kernel refuses io_uring_enter (EEXIST), so a read orphaned there was never reaped and
// its buffer never released. retire(), the issuer's last call, reaps it; the destructor on
// another thread then finds nothing left, and releases nothing twice.
TEST(UringPoller, RetireOnTheIssuerReleasesAReadInFlightOnce) {
  for (const bool removed : {true, false}) {
    SCOPED_TRACE(removed ? "watch removed first" : "watch still live");
    UringOptions o;
    o.issuer = UringIssuer::single;
    auto p = make_uring(o);
    REQUIRE_URING(p);
    Pipe a;
    LentBuffer buf;
    LentBuffer::released = 0;
    std::thread issuer([&] {
      ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 1).ok());
      ASSERT_TRUE(p->read_into(a.r, buf.lend(), 1).ok());
      PollEvent events[4];
      ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // enables the ring: the read goes in
      if (removed) {
        ASSERT_TRUE(p->remove(a.r).ok());
      }
      EXPECT_EQ(LentBuffer::released, 0);  // the kernel holds it
      p->retire();
    });
    issuer.join();
    EXPECT_EQ(LentBuffer::released, 1);
    p.reset();  // on a thread the ring refuses
    EXPECT_EQ(LentBuffer::released, 1);
    a.put();
    EXPECT_EQ(a.drain(), 1u);  // nobody reads the pipe any more
  }
}

// A result not taken when its watch is removed or modified goes back to the buffer's owner.
TEST(UringPoller, ReadResultNotTakenIsReleasedByRemove) {
  auto p = make_uring();
  REQUIRE_URING(p);
  Pipe a;
  LentBuffer buf;
  LentBuffer::released = 0;
  ASSERT_TRUE(p->add(a.r, FdEvents::readable, FdMode::edge, 1).ok());
  ASSERT_TRUE(p->read_into(a.r, buf.lend(), 1).ok());
  a.put(3);
  PollEvent events[4];
  auto r = p->wait(events, Poller::kForever);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->count, 1u);
  EXPECT_EQ(LentBuffer::released, 0);
  ASSERT_TRUE(p->modify(a.r, FdEvents::readable, FdMode::edge, 1).ok());  // back to a poll
  EXPECT_EQ(LentBuffer::released, 1);
  EXPECT_FALSE(p->take_read(a.r).has_value());
  ASSERT_TRUE(p->remove(a.r).ok());
  EXPECT_EQ(LentBuffer::released, 1);
}

// Regression: remove() used IORING_OP_POLL_REMOVE, which the kernel refuses with -EALREADY while
// a wake-up of the poll has its completion queued as task work — and then leaves the poll armed,
// holding the file, for the ring's whole life (a closed pipe end that never closes, a writer that
// never sees EPIPE). Here the wake-up is pending for sure: a single-issuer ring defers task work
// to its issuer's next io_uring_enter, which is the one that submits the removal.
TEST(UringPoller, RemoveWhileAWakeupIsPendingReleasesTheFile) {
  UringOptions o;
  o.issuer = UringIssuer::single;
  auto p = make_uring(o);
  REQUIRE_URING(p);
  for (FdMode mode : {FdMode::edge, FdMode::level}) {
    SCOPED_TRACE(static_cast<int>(mode));
    Pipe a;
    ASSERT_TRUE(p->add(a.r, FdEvents::readable, mode, 1).ok());
    PollEvent events[4];
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // armed; nothing to read yet
    a.put();  // the poll's wake-up: its completion waits as this thread's task work
    ASSERT_TRUE(p->remove(a.r).ok());
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // submits the removal, then the task work
    ::close(a.r);
    a.r = -1;
    // The ring no longer holds the read end, so the pipe has no reader left.
    pollfd w{a.w, POLLOUT, 0};
    ASSERT_EQ(::poll(&w, 1, 0), 1);
    EXPECT_NE(w.revents & POLLERR, 0) << "the removed poll still holds the pipe's read end";
  }
}

// Level: a condition that still holds is reported again at the next wait (as epoll's level
// mode); oneshot: once, until modified.
TEST(UringPoller, LevelRepeatsOneshotDoesNot) {
  auto p = make_uring();
  REQUIRE_URING(p);
  Pipe lvl, one;
  ASSERT_TRUE(p->add(lvl.r, FdEvents::readable, FdMode::level, 1).ok());
  ASSERT_TRUE(p->add(one.r, FdEvents::readable, FdMode::oneshot, 2).ok());
  lvl.put();
  one.put();
  EXPECT_EQ(collect(*p, {1, 2}).count(2), 1u);
  EXPECT_EQ(collect(*p, {1}).count(2), 0u);
  EXPECT_EQ(collect(*p, {1}).count(2), 0u);
  ASSERT_TRUE(p->modify(one.r, FdEvents::readable, FdMode::oneshot, 3).ok());
  EXPECT_EQ(collect(*p, {1, 3}).count(3), 1u);
}

// The deadline and a wait's own limit are the time limit of the waiting io_uring_enter, given as
// an absolute time (6.12) or as the time left: never early either way, the deadline reported and
// the caller's limit not; a wake ends a wait at once.
TEST(UringPoller, DeadlineAndLimitNeverEarlyAndWakeEndsAWait) {
  for (const auto limit : {detail::UringTimeLimit::absolute, detail::UringTimeLimit::relative}) {
    SCOPED_TRACE(limit == detail::UringTimeLimit::absolute ? "absolute" : "relative");
    UringOptions o;
    o.time_limit = limit;
    auto p = make_uring(o);
    REQUIRE_URING(p);
    PollEvent events[4];
    for (auto d : {std::chrono::microseconds(50), std::chrono::microseconds(2000)}) {
      const auto at = detail::MonoClock::now() + d;
      ASSERT_TRUE(p->set_deadline(at).ok());
      bool reached = false;
      while (!reached) {
        auto r = p->wait(events, Poller::kForever);
        ASSERT_TRUE(r.ok());
        reached = r->deadline_reached;
      }
      EXPECT_GE(detail::MonoClock::now(), at);
      // The caller's limit alone: the wait returns at or after it, with nothing reported.
      const auto until = detail::MonoClock::now() + d;
      auto r = p->wait(events, until);
      ASSERT_TRUE(r.ok());
      EXPECT_GE(detail::MonoClock::now(), until);
      EXPECT_EQ(r->count, 0u);
      EXPECT_FALSE(r->deadline_reached);
    }
    // A deadline before the caller's limit ends the wait first, reported.
    const auto deadline = detail::MonoClock::now() + std::chrono::microseconds(200);
    ASSERT_TRUE(p->set_deadline(deadline).ok());
    auto r = p->wait(events, deadline + std::chrono::seconds(60));
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->deadline_reached);
    EXPECT_GE(detail::MonoClock::now(), deadline);
    std::thread waker([&] { p->wake(); });
    auto woken = p->wait(events, Poller::kForever);
    waker.join();
    ASSERT_TRUE(woken.ok());
    EXPECT_TRUE(woken->woken);
  }
}

// ---- a child's exit: IORING_OP_WAITID
// ------------------------------------------------------------

// A child that waits until killed (tests/proc/helper_main.cc), and its pidfd.
struct Sleeper {
  pid_t pid = -1;
  int pidfd = -1;
  Sleeper() {
    char* argv[] = {const_cast<char*>(EVH_PROC_HELPER), const_cast<char*>("sleep"), nullptr};
    if (::posix_spawn(&pid, EVH_PROC_HELPER, nullptr, nullptr, argv, environ) != 0) {
      ADD_FAILURE() << "posix_spawn";
      return;
    }
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) ADD_FAILURE() << "pidfd_open: " << errno;
  }
  ~Sleeper() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);  // ECHILD when the test reaped it
    }
    if (pidfd >= 0) ::close(pidfd);
  }
  // Reaps it: waitid's siginfo.
  siginfo_t reap(int options = WEXITED) {
    siginfo_t info{};
    if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, options) != 0) {
      ADD_FAILURE() << "waitid: " << errno;
    }
    if (info.si_pid == pid) pid = -1;
    return info;
  }
};

#define REQUIRE_WAITID(p) \
  if (!(p)->has_waitid()) GTEST_SKIP() << "this kernel has no IORING_OP_WAITID (Linux 6.7)";

// An exit watch is a WAITID: nothing while the child runs, readable once it has died — and the
// ring leaves it unreaped (WNOWAIT), so its reaper still gets the status.
TEST(UringPoller, ChildExitIsAWaitidThatLeavesTheChildUnreaped) {
  auto p = make_uring();
  REQUIRE_URING(p);
  REQUIRE_WAITID(p);
  Sleeper child;
  ASSERT_GE(child.pidfd, 0);
  ASSERT_TRUE(
      p->add(child.pidfd, FdEvents::readable | detail::kChildExit, FdMode::oneshot, 7).ok());
  EXPECT_EQ(p->exit_waits(), 1u);
  PollEvent events[4];
  auto running = p->wait(events, Poller::kNoWait);  // submits the WAITID; the child is running
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->count, 0u);
  ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
  auto died = p->wait(events, Poller::kForever);
  ASSERT_TRUE(died.ok());
  ASSERT_EQ(died->count, 1u);
  EXPECT_EQ(events[0].token, 7u);
  EXPECT_TRUE(events[0].events == FdEvents::readable);
  const siginfo_t info = child.reap(WEXITED | WNOHANG);
  EXPECT_EQ(info.si_code, CLD_KILLED) << "the ring reaped the child";
  EXPECT_EQ(info.si_status, SIGKILL);
  // Oneshot: nothing more until modified.
  auto after = p->wait(events, Poller::kNoWait);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->count, 0u);
  EXPECT_TRUE(p->remove(child.pidfd).ok());
}

// An exit watch removed while its WAITID is in flight is cancelled: nothing is reported, and the
// child is left to whoever reaps it.
TEST(UringPoller, ExitWatchRemovedBeforeTheExitLeavesTheChildToItsReaper) {
  auto p = make_uring();
  REQUIRE_URING(p);
  REQUIRE_WAITID(p);
  Sleeper child;
  ASSERT_GE(child.pidfd, 0);
  ASSERT_TRUE(
      p->add(child.pidfd, FdEvents::readable | detail::kChildExit, FdMode::oneshot, 7).ok());
  PollEvent events[4];
  ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // in flight
  ASSERT_TRUE(p->remove(child.pidfd).ok());
  ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());  // the cancel is submitted
  ASSERT_EQ(::kill(child.pid, SIGTERM), 0);
  const siginfo_t info = child.reap();  // blocks until it has died
  EXPECT_EQ(info.si_code, CLD_KILLED);
  EXPECT_EQ(info.si_status, SIGTERM);
  auto r = p->wait(events, Poller::kNoWait);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 0u) << "a removed exit watch reported";
}

// The thread that armed a WAITID exits (a pool worker idling out): the exit is still reported,
// and the child is still left unreaped. (On 6.18 the kernel does not cancel the WAITID at the
// thread's exit; the wake-up's task work then runs without the thread and completes it, with 0 or
// -ECHILD — both reported as readable, and the reaper's own waitid() says which.)
TEST(UringPoller, ExitWatchOfAnExitedThreadStillReports) {
  auto p = make_uring();
  REQUIRE_URING(p);
  REQUIRE_WAITID(p);
  Sleeper child;
  ASSERT_GE(child.pidfd, 0);
  std::thread([&] {
    ASSERT_TRUE(
        p->add(child.pidfd, FdEvents::readable | detail::kChildExit, FdMode::oneshot, 7).ok());
    PollEvent events[4];
    ASSERT_TRUE(p->wait(events, Poller::kNoWait).ok());
  }).join();
  ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
  EXPECT_EQ(collect(*p, {7}).count(7), 1u);
  const siginfo_t info = child.reap(WEXITED | WNOHANG);
  EXPECT_EQ(info.si_code, CLD_KILLED) << "the ring reaped the child";
  EXPECT_EQ(info.si_status, SIGKILL);
}

// An exit watch on an fd the kernel will not wait on (a pipe: no pidfd) falls back to the fd's
// poll, which reports as any poll does.
TEST(UringPoller, ExitWatchTheKernelRefusesFallsBackToThePoll) {
  auto p = make_uring();
  REQUIRE_URING(p);
  REQUIRE_WAITID(p);
  Pipe a;
  ASSERT_TRUE(p->add(a.r, FdEvents::readable | detail::kChildExit, FdMode::oneshot, 9).ok());
  PollEvent events[4];
  auto r = p->wait(events, Poller::kNoWait);  // the WAITID is refused; the poll is armed
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 0u);
  a.put();
  EXPECT_EQ(collect(*p, {9}).count(9), 1u);
}

// ---- the choice of backend, in a child process --------------------------------------------------

// Makes io_uring_setup fail with EPERM in this process, as a container's seccomp profile does.
bool forbid_io_uring() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0;
}

// The child's side: skipped unless started by RunChild.
TEST(BackendChild, Check) {
  const char* mode = std::getenv("EVH_TEST_BACKEND_CHILD");
  if (mode == nullptr) GTEST_SKIP() << "runs only as the child of the BackendChoice tests";
  const std::string m = mode;
  if (m == "epoll") {
    // EVH_BACKEND=epoll: the kill switch wins over RuntimeOptions.
    Runtime rt(RuntimeOptions{.io_backend = IoBackend::uring});
    EXPECT_STREQ(rt.stats().io_backend, "epoll");
    EXPECT_NE(std::strstr(rt.stats().io_backend_reason, "EVH_BACKEND=epoll"), nullptr);
    auto eh = rt.event_handler();
    ASSERT_TRUE(eh.ok());
    EXPECT_STREQ((*eh)->backend(), "epoll");
  } else if (m == "forbidden-auto") {
    ASSERT_TRUE(forbid_io_uring());
    Pipe p;  // outlives the runtime: the handler's worker may touch it until shutdown
    Runtime rt;
    EXPECT_STREQ(rt.stats().io_backend, "epoll");
    EXPECT_NE(std::strstr(rt.stats().io_backend_reason, "forbidden"), nullptr)
        << rt.stats().io_backend_reason;
    auto eh = rt.event_handler();
    ASSERT_TRUE(eh.ok());
    EXPECT_STREQ((*eh)->backend(), "epoll");
    // It works: an fd event arrives.
    auto rx = std::move(rt.open_receiver()).value();
    ASSERT_TRUE((*eh)->add_fd(p.r, rx.id(), FdEvents::readable).ok());
    p.put();
    EXPECT_EQ(test::next_event(rx).notice, IoNotice::ready);
  } else if (m == "forbidden-uring") {
    ASSERT_TRUE(forbid_io_uring());
    try {
      Runtime rt;  // EVH_BACKEND=uring
      ADD_FAILURE() << "io_uring asked for and forbidden, yet the runtime started on "
                    << rt.stats().io_backend;
    } catch (const std::system_error& e) {
      EXPECT_NE(std::strstr(e.what(), "forbidden"), nullptr) << e.what();
    }
  } else if (m == "bad") {
    EXPECT_THROW(Runtime rt, std::invalid_argument);
  } else {
    FAIL() << "unknown child mode " << m;
  }
}

// Starts this binary again running BackendChild.Check with `mode` and EVH_BACKEND=`backend`
// (unset when null); its exit status.
int run_child(const char* mode, const char* backend) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "EVH_BACKEND=", 12) == 0) continue;
    if (std::strncmp(*e, "GTEST_", 6) == 0) continue;
    env.emplace_back(*e);
  }
  env.push_back(std::string("EVH_TEST_BACKEND_CHILD=") + mode);
  if (backend != nullptr) env.push_back(std::string("EVH_BACKEND=") + backend);
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  std::string filter = "--gtest_filter=BackendChild.Check";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid;
  if (::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()) != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(BackendChoice, EvhBackendEpollIsHonoured) {
  EXPECT_EQ(run_child("epoll", "epoll"), 0);
}

TEST(BackendChoice, AutoFallsBackToEpollWhenIoUringIsForbidden) {
  EXPECT_EQ(run_child("forbidden-auto", nullptr), 0);
}

TEST(BackendChoice, UringAskedForButForbiddenIsAClearError) {
  EXPECT_EQ(run_child("forbidden-uring", "uring"), 0);
}

TEST(BackendChoice, UnknownEvhBackendIsRefused) {
  EXPECT_EQ(run_child("bad", "kqueue"), 0);
}

// On this kernel (io_uring allowed), auto picks it; the stats say so and why.
TEST(BackendChoice, AutoPicksIoUringWhereTheProbePasses) {
  if (std::getenv("EVH_BACKEND") != nullptr) GTEST_SKIP() << "EVH_BACKEND is set";
  std::string why;
  if (!UringPoller::create({}, &why)) GTEST_SKIP() << "io_uring unavailable: " << why;
  Runtime rt;
  EXPECT_STREQ(rt.stats().io_backend, "io_uring");
  EXPECT_STRNE(rt.stats().io_backend_reason, "");
  auto eh = rt.event_handler();
  ASSERT_TRUE(eh.ok());
  EXPECT_STREQ((*eh)->backend(), "io_uring");
}

}  // namespace
}  // namespace evh
