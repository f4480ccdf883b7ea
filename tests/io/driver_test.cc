// The runtime's event handler driven by its pool's idle workers (io/driver.h, issue 15): the
// worker the kernel wakes runs the isolate; a post reaches a worker waiting in the poller; an
// event that comes while every worker is busy waits for one, and is never lost; shutdown ends a
// wait in the poller. Real epoll, real TCP sockets on loopback; no sleeps, no timing thresholds.
#include <dirent.h>
#include <evh/event_handler.h>
#include <evh/isolate.h>
#include <evh/runtime.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "io/io_test_util.h"
#include "runtime/runtime_impl.h"
#include "sched/thread_pool.h"

namespace evh {
namespace {

using namespace std::chrono_literals;
using test::next_event;

// A connected TCP pair on loopback: `client` blocking, `server` non-blocking.
struct TcpPair {
  int client = -1;
  int server = -1;
  TcpPair() {
    test::Listener l;
    client = l.connect();
    for (;;) {
      server = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (server >= 0 || errno != EAGAIN) break;
      std::this_thread::yield();  // the handshake completes in the kernel: a few microseconds
    }
    if (server < 0) ADD_FAILURE() << "accept4: " << errno;
  }
  ~TcpPair() {
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }
  TcpPair(const TcpPair&) = delete;
  TcpPair& operator=(const TcpPair&) = delete;
};

void write_byte(int fd) {
  const char c = 'x';
  ASSERT_EQ(::write(fd, &c, 1), 1);
}

// Reads what is buffered on a non-blocking fd.
std::size_t drain(int fd) {
  char buf[256];
  std::size_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return total;
    total += static_cast<std::size_t>(n);
  }
}

// The names of this process's threads.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    names.push_back(name);
  }
  ::closedir(d);
  return names;
}

detail::ThreadPool& pool_of(Runtime& rt) {
  return detail::RuntimeAccess::impl(rt).pool();
}

// Waits (yielding, up to the tests' long wait) until a worker of `rt`'s pool waits in the poller.
bool await_parked_in_poller(Runtime& rt) {
  const auto give_up = std::chrono::steady_clock::now() + test::kLongWait;
  while (!pool_of(rt).stats().driver_parked) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// An isolate that answers each readiness of `fd` with one byte per byte read, written to `fd`.
IsolateHandler echo_handler(int fd) {
  return make_handler([fd](Isolate&, Message& m) {
    auto ev = decode_io_event(m);
    if (!ev || ev->notice != IoNotice::ready) return;
    for (std::size_t n = drain(fd); n > 0; --n) {
      const char c = 'y';
      (void)::write(fd, &c, 1);
    }
  });
}

// The runtime's handler has no thread of its own: no "evh-io" thread appears, and a round trip
// through an isolate works — the pool's workers are the ones that wait in epoll.
TEST(PoolDriver, RuntimeHandlerHasNoThreadOfItsOwn) {
  TcpPair t;
  Runtime rt;
  EventHandler* eh = *rt.event_handler();
  IsolateRef echo = *rt.spawn(echo_handler(t.server));
  ASSERT_TRUE(
      eh->add_fd(t.server, echo->main_port(), FdEvents::readable, {.mode = FdMode::edge}).ok());
  for (int i = 0; i < 100; ++i) {
    write_byte(t.client);
    char c = 0;
    ASSERT_EQ(::read(t.client, &c, 1), 1);
    EXPECT_EQ(c, 'y');
  }
  for (const auto& name : thread_names()) EXPECT_NE(name, "evh-io");
  rt.shutdown();
}

// An fd event that comes while every worker is inside a handler is delivered once one of them
// is free: nobody waits in the poller meanwhile, and the readiness is not lost.
TEST(PoolDriver, EventWhileEveryWorkerIsBusyIsDeliveredWhenOneFrees) {
  constexpr unsigned kWorkers = 2;
  TcpPair t;
  Runtime rt(RuntimeOptions{.max_workers = kWorkers});
  EventHandler* eh = *rt.event_handler();
  std::latch entered(kWorkers);
  std::latch gate(1);
  std::vector<IsolateRef> busy;
  for (unsigned i = 0; i < kWorkers; ++i) {
    busy.push_back(*rt.spawn(make_handler([&](Isolate&, Message&) {
      entered.count_down();
      gate.wait();
    })));
  }
  IsolateRef echo = *rt.spawn(echo_handler(t.server));
  ASSERT_TRUE(
      eh->add_fd(t.server, echo->main_port(), FdEvents::readable, {.mode = FdMode::edge}).ok());
  // The add has run once a round trip works.
  write_byte(t.client);
  char c = 0;
  ASSERT_EQ(::read(t.client, &c, 1), 1);

  for (auto& b : busy) ASSERT_TRUE((*rt.send_port(b->main_port())).post(Message::u64(0)).ok());
  entered.wait();  // every worker is now inside a handler
  write_byte(t.client);
  gate.count_down();
  ASSERT_EQ(::read(t.client, &c, 1), 1);  // blocking: the echo came
  EXPECT_EQ(c, 'y');
  rt.shutdown();
}

// A post to a pool whose only idle worker waits in the poller wakes it through the poller (one
// eventfd write) and runs promptly — within the tests' long wait, not a timing threshold.
TEST(PoolDriver, PostWakesTheWorkerWaitingInThePoller) {
  Runtime rt(RuntimeOptions{.max_workers = 1});
  ASSERT_TRUE(rt.event_handler().ok());
  auto rx = std::move(rt.open_receiver()).value();
  SendPort report = *rt.send_port(rx.id());
  IsolateRef iso = *rt.spawn(make_handler(
      [report](Isolate&, Message& m) { (void)report.post(Message::u64(m.as_u64() + 1)); }));
  SendPort to_iso = *rt.send_port(iso->main_port());
  for (std::uint64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(await_parked_in_poller(rt));
    const std::uint64_t unparks = pool_of(rt).stats().driver_unparks;
    ASSERT_TRUE(to_iso.post(Message::u64(i)).ok());
    Message m = test::expect_receive(rx);
    EXPECT_EQ(m.as_u64(), i + 1);
    EXPECT_GT(pool_of(rt).stats().driver_unparks, unparks);
  }
  rt.shutdown();
}

// Shutdown while the only worker waits in the poller: the wait ends, the live registration hears
// its final `unregistered`, and every worker is gone.
TEST(PoolDriver, ShutdownWhileAWorkerWaitsInThePoller) {
  TcpPair t;
  Runtime rt(RuntimeOptions{.max_workers = 1});
  EventHandler* eh = *rt.event_handler();
  auto rx = std::move(rt.open_receiver()).value();
  ASSERT_TRUE(eh->add_fd(t.server, rx.id(), FdEvents::readable).ok());
  ASSERT_TRUE(test::events_until_fence(*eh, rx).empty());
  ASSERT_TRUE(await_parked_in_poller(rt));
  rt.shutdown();
  EXPECT_EQ(next_event(rx).notice, IoNotice::unregistered);
  EXPECT_EQ(pool_of(rt).stats().live, 0u);
  EXPECT_FALSE(pool_of(rt).stats().driver_parked);
}

// Eight threads register, modify and close fds while readiness flows to an isolate on the pool:
// every command is answered as the contract says, and the echo never loses a byte (TSan clean).
TEST(PoolDriver, EightThreadsRegisterModifyAndCloseWhileEventsFlow) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 40;
  constexpr int kEchoes = 2000;
  TcpPair flow;
  Runtime rt;
  EventHandler* eh = *rt.event_handler();
  IsolateRef echo = *rt.spawn(echo_handler(flow.server));
  ASSERT_TRUE(
      eh->add_fd(flow.server, echo->main_port(), FdEvents::readable, {.mode = FdMode::edge}).ok());

  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::thread flowing([&] {
    for (int i = 0; i < kEchoes; ++i) {
      write_byte(flow.client);
      char c = 0;
      if (::read(flow.client, &c, 1) != 1 || c != 'y') ++failures;
    }
    done.store(true);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto rx = std::move(rt.open_receiver()).value();
      for (int i = 0; i < kRounds; ++i) {
        TcpPair s;
        if (!eh->add_fd(s.server, rx.id(), FdEvents::readable, {.mode = FdMode::oneshot}).ok()) {
          ++failures;
        }
        write_byte(s.client);
        if (next_event(rx).notice != IoNotice::ready) ++failures;
        // Re-armed for writing: a connected socket with room is writable at once.
        if (!eh->modify_fd(s.server, rx.id(), FdEvents::writable).ok()) ++failures;
        const IoEvent w = next_event(rx);
        if (w.notice != IoNotice::ready || !any(w.events & FdEvents::writable)) ++failures;
        if (!eh->close_fd(s.server, rx.id()).ok()) ++failures;
        s.server = -1;  // closed by the handler
        if (next_event(rx).notice != IoNotice::closed) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  flowing.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(failures.load(), 0);
  rt.shutdown();
  EXPECT_EQ(eh->stats().registrations, 0u);
}

}  // namespace
}  // namespace evh
