// Signals delivered to ports: every watcher hears every occurrence, counts add up, and the
// previous disposition comes back with the last watcher.
#include <evh/runtime.h>
#include <evh/signal.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "test_util.h"

namespace evh {
namespace {

using namespace std::chrono_literals;

void (*disposition(int sig))(int) {
  struct sigaction sa {};
  ::sigaction(sig, nullptr, &sa);
  return sa.sa_handler;
}

// Receives signal events until they add up to `expected` occurrences of `sig`.
std::uint64_t receive_occurrences(Receiver& rx, int sig, std::uint64_t expected) {
  std::uint64_t total = 0;
  while (total < expected) {
    Message m = test::expect_receive(rx);
    auto ev = decode_signal_event(m);
    if (!ev) {
      ADD_FAILURE() << "not a signal event";
      return total;
    }
    EXPECT_EQ(ev->signal, sig);
    EXPECT_GE(ev->count, 1u);
    total += ev->count;
  }
  return total;
}

// SIGUSR1 sent to this process reaches two watchers (in two Runtimes); with both stopped the
// default disposition is back.
TEST(Signal, UsrOneToSelfReachesTwoWatchers) {
  ASSERT_EQ(disposition(SIGUSR1), SIG_DFL);
  Runtime a;
  Runtime b;
  Receiver ra = std::move(a.open_receiver()).value();
  Receiver rb = std::move(b.open_receiver()).value();
  auto wa = SignalWatcher::watch(a, SIGUSR1, ra.id());
  ASSERT_TRUE(wa.ok()) << wa.error().message();
  auto wb = SignalWatcher::watch(b, SIGUSR1, rb.id());
  ASSERT_TRUE(wb.ok()) << wb.error().message();
  EXPECT_NE(disposition(SIGUSR1), SIG_DFL);
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  EXPECT_EQ(receive_occurrences(ra, SIGUSR1, 1), 1u);
  EXPECT_EQ(receive_occurrences(rb, SIGUSR1, 1), 1u);
  wa->stop();
  EXPECT_NE(disposition(SIGUSR1), SIG_DFL);  // wb still watches
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  EXPECT_EQ(receive_occurrences(rb, SIGUSR1, 1), 1u);
  wb->stop();
  EXPECT_EQ(disposition(SIGUSR1), SIG_DFL);
  // The watchers' internal isolates end once their registrations have.
  const auto deadline = std::chrono::steady_clock::now() + test::kLongWait;
  while ((a.stats().isolates_live != 0 || b.stats().isolates_live != 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);  // polling a deadline, not synchronising
  }
  EXPECT_EQ(a.stats().isolates_live, 0u);
  EXPECT_EQ(b.stats().isolates_live, 0u);
}

// Occurrences are counted exactly: coalesced events add up to what was raised; another
// signal's wakeups do not produce events for this one.
TEST(Signal, CountsAddUpAndSignalsStayApart) {
  Runtime rt;
  Receiver r1 = std::move(rt.open_receiver()).value();
  Receiver r2 = std::move(rt.open_receiver()).value();
  auto w1 = SignalWatcher::watch(rt, SIGUSR2, r1.id());
  auto w2 = SignalWatcher::watch(rt, SIGHUP, r2.id());
  ASSERT_TRUE(w1.ok() && w2.ok());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(::raise(SIGUSR2), 0);  // handled before raise returns
  ASSERT_EQ(::raise(SIGHUP), 0);
  EXPECT_EQ(receive_occurrences(r1, SIGUSR2, 5), 5u);
  EXPECT_EQ(receive_occurrences(r2, SIGHUP, 1), 1u);
  w1->stop();
  w2->stop();
  EXPECT_EQ(disposition(SIGUSR2), SIG_DFL);
  EXPECT_EQ(disposition(SIGHUP), SIG_DFL);
}

// A disposition set before the first watcher (SIG_IGN here) is the one restored.
TEST(Signal, PreviousDispositionIsRestored) {
  ASSERT_NE(::signal(SIGWINCH, SIG_IGN), SIG_ERR);
  {
    Runtime rt;
    Receiver rx = std::move(rt.open_receiver()).value();
    auto w = SignalWatcher::watch(rt, SIGWINCH, rx.id());
    ASSERT_TRUE(w.ok());
    ASSERT_EQ(::raise(SIGWINCH), 0);
    EXPECT_EQ(receive_occurrences(rx, SIGWINCH, 1), 1u);
  }  // the watcher's destructor stops it
  EXPECT_EQ(disposition(SIGWINCH), SIG_IGN);
  ::signal(SIGWINCH, SIG_DFL);
}

// Signals that cannot be watched, and bad ports, are refused.
TEST(Signal, BadInputIsRefused) {
  Runtime rt;
  Receiver rx = std::move(rt.open_receiver()).value();
  for (int sig : {0, -1, 65, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, 32}) {
    EXPECT_EQ(SignalWatcher::watch(rt, sig, rx.id()).error(), Errc::invalid_argument) << sig;
  }
  EXPECT_EQ(SignalWatcher::watch(rt, SIGTERM, PortId{12345}).error(), Errc::unknown_port);
  EXPECT_EQ(disposition(SIGTERM), SIG_DFL);
}

}  // namespace
}  // namespace evh
