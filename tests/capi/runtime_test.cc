// The C API's runtimes, versions, errors, posts, messages and receivers (evh.h only).
#include <evh/evh.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "capi_test_util.h"

namespace evh_capi_test {
namespace {

// The linked library says the version the headers say.
TEST(CapiVersion, LibraryMatchesHeaders) {
  EXPECT_EQ(evh_version(), static_cast<unsigned>(EVH_VERSION_HEX));
  EXPECT_STREQ(evh_version_string(), EVH_VERSION_STRING);
  EXPECT_EQ(EVH_VERSION_HEX,
            (EVH_VERSION_MAJOR << 16) | (EVH_VERSION_MINOR << 8) | EVH_VERSION_PATCH);
}

// Every code has its own words; kernel codes get the kernel's.
TEST(CapiErrors, StrerrorNamesEveryCode) {
  const int codes[] = {
      EVH_OK,          EVH_EINVAL,       EVH_ENOMEM,        EVH_ETIMEDOUT,       EVH_EAGAIN,
      EVH_EBUSY,       EVH_EDEADLK,      EVH_EOWNERDEAD,    EVH_ENOTRECOVERABLE, EVH_EPERM,
      EVH_EPORTCLOSED, EVH_EUNKNOWNPORT, EVH_ESHUTTINGDOWN, EVH_EDEAD,           EVH_EWRONGTHREAD,
      EVH_EFOREIGN,    EVH_EUNKNOWN,     EVH_EOPTIONS};
  std::set<std::string> seen;
  for (int c : codes) {
    const char* s = evh_strerror(c);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(seen.insert(s).second) << "two codes read the same: " << s;
  }
  EXPECT_STREQ(evh_strerror(-EBADF), "Bad file descriptor");
  EXPECT_STREQ(evh_strerror(12345), "unknown error");
  EXPECT_STREQ(evh_strerror(-999999), "unknown error");
}

// evh_now is CLOCK_MONOTONIC: it never goes back.
TEST(CapiTime, NowNeverGoesBack) {
  int64_t last = evh_now();
  EXPECT_GT(last, 0);
  for (int i = 0; i < 1000; ++i) {
    const int64_t t = evh_now();
    EXPECT_GE(t, last);
    last = t;
  }
}

TEST(CapiRuntime, CreateWithDefaultsAndOptions) {
  { Runtime rt; }
  evh_runtime_options o;
  evh_runtime_options_init(&o);
  EXPECT_EQ(o.default_budget, 64u);
  EXPECT_EQ(o.worker_idle_timeout_ns, INT64_C(5'000'000'000));
  o.max_workers = 2;
  Runtime rt(&o);
  evh_runtime_stats s{};
  ASSERT_EQ(evh_runtime_stats_get(rt, &s), EVH_OK);
  EXPECT_EQ(s.isolates_live, 0u);
}

// Bad options are refused with EVH_EINVAL and nothing is created.
TEST(CapiRuntime, CreateRefusesBadOptions) {
  evh_runtime* rt = reinterpret_cast<evh_runtime*>(&rt);  // must be reset to NULL
  EXPECT_EQ(evh_runtime_create(nullptr, nullptr), EVH_EINVAL);
  evh_runtime_options o;
  const auto refused = [&](auto change) {
    evh_runtime_options_init(&o);
    change(o);
    const int e = evh_runtime_create(&o, &rt);
    EXPECT_EQ(rt, nullptr);
    return e == EVH_EINVAL;
  };
  EXPECT_TRUE(refused([](evh_runtime_options& x) { x.worker_idle_timeout_ns = -1; }));
  EXPECT_TRUE(refused([](evh_runtime_options& x) { x.spin_before_park_ns = -5; }));
  EXPECT_TRUE(refused([](evh_runtime_options& x) { x.time_slice_ns = INT64_MAX; }));
  EXPECT_TRUE(refused([](evh_runtime_options& x) { x.default_budget = 0; }));
}

// A NULL or foreign pointer where a handle belongs is EVH_EINVAL, never a crash.
TEST(CapiRuntime, NullAndNonHandlesAreInvalid) {
  alignas(64) unsigned char junk[256] = {};
  auto* fake_rt = reinterpret_cast<evh_runtime*>(junk);
  auto* fake_iso = reinterpret_cast<evh_isolate*>(junk);
  auto* fake_rx = reinterpret_cast<evh_receiver*>(junk);
  for (evh_runtime* rt : {static_cast<evh_runtime*>(nullptr), fake_rt}) {
    EXPECT_EQ(evh_runtime_shutdown(rt), EVH_EINVAL);
    EXPECT_EQ(evh_runtime_destroy(rt), EVH_EINVAL);
    evh_runtime_stats s;
    EXPECT_EQ(evh_runtime_stats_get(rt, &s), EVH_EINVAL);
    EXPECT_EQ(evh_post(rt, 1, "x", 1, 0), EVH_EINVAL);
    evh_receiver* r = nullptr;
    EXPECT_EQ(evh_receiver_open(rt, &r), EVH_EINVAL);
    EXPECT_EQ(evh_fd_add(rt, 0, 1, EVH_READABLE, nullptr), EVH_EINVAL);
    EXPECT_EQ(evh_port_set_timeout(rt, 1, 0), EVH_EINVAL);
    evh_runner* runner = nullptr;
    EXPECT_EQ(evh_runner_dedicated(rt, "x", &runner), EVH_EINVAL);
  }
  for (evh_isolate* iso : {static_cast<evh_isolate*>(nullptr), fake_iso}) {
    EXPECT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_release(iso), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_retain(iso), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_main_port(iso), 0u);
    EXPECT_EQ(evh_isolate_is_dead(iso), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_ping(iso, 1, nullptr, 0, EVH_IMMEDIATE), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_pause(iso, 0, nullptr), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_resume(iso, 1), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_add_exit_listener(iso, 1), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_close_port(iso, 1), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_handle_interrupts(iso), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_report_error(iso, "x"), EVH_EINVAL);
    EXPECT_EQ(evh_isolate_interrupt_requested(iso), 0);
    evh_port_id p = 7;
    EXPECT_EQ(evh_isolate_open_port(iso, &p), EVH_EINVAL);
    EXPECT_EQ(p, 0u);
  }
  for (evh_receiver* rx : {static_cast<evh_receiver*>(nullptr), fake_rx}) {
    evh_message* m = nullptr;
    EXPECT_EQ(evh_receiver_receive(rx, 0, &m), EVH_EINVAL);
    EXPECT_EQ(evh_receiver_try_receive(rx, &m), EVH_EINVAL);
    EXPECT_EQ(evh_receiver_close(rx), EVH_EINVAL);
    EXPECT_EQ(evh_receiver_destroy(rx), EVH_EINVAL);
    EXPECT_EQ(evh_receiver_port(rx), 0u);
  }
  // A NULL message reads as empty.
  size_t n = 9;
  EXPECT_EQ(evh_message_kind(nullptr), EVH_MESSAGE_EMPTY);
  EXPECT_EQ(evh_message_data(nullptr, &n), nullptr);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(evh_message_port(nullptr), 0u);
  EXPECT_EQ(evh_message_take_native(nullptr), nullptr);
  evh_message_destroy(nullptr);
}

// evh_runtime_destroy refuses, doing nothing, while a handle taken from the runtime is held.
TEST(CapiRuntime, DestroyRefusedWhileHandlesHeld) {
  evh_runtime* rt = nullptr;
  ASSERT_EQ(evh_runtime_create(nullptr, &rt), EVH_OK);
  evh_receiver* rx = nullptr;
  ASSERT_EQ(evh_receiver_open(rt, &rx), EVH_OK);
  evh_isolate* iso = nullptr;
  ASSERT_EQ(evh_isolate_spawn(
                rt, [](evh_isolate*, evh_message*, void*) {}, nullptr, nullptr, nullptr, &iso),
            EVH_OK);
  ASSERT_EQ(evh_isolate_retain(iso), EVH_OK);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_EBUSY);
  EXPECT_EQ(evh_receiver_destroy(rx), EVH_OK);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_EBUSY);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_EBUSY);  // the retained reference
  // Handles may be released after shutdown.
  EXPECT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(evh_isolate_is_dead(iso), 1);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_OK);
}

// After shutdown every call fails with a clear code; releases still work.
TEST(CapiRuntime, CallsAfterShutdownFail) {
  Runtime rt;
  Receiver rx(rt);
  int destroyed = 0;
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(evh_runtime_shutdown(rt), EVH_OK);  // idempotent
  Finalized f;
  EXPECT_EQ(evh_post_native(rt, rx.port(), &f, &Finalized::finalize, 0), EVH_ESHUTTINGDOWN);
  EXPECT_EQ(f.get(), 1);
  evh_isolate* iso = nullptr;
  EXPECT_EQ(evh_isolate_spawn(
                rt, [](evh_isolate*, evh_message*, void*) {}, &destroyed,
                [](void* d) noexcept { ++*static_cast<int*>(d); }, nullptr, &iso),
            EVH_ESHUTTINGDOWN);
  EXPECT_EQ(iso, nullptr);
  EXPECT_EQ(destroyed, 1);
  evh_receiver* r2 = nullptr;
  EXPECT_EQ(evh_receiver_open(rt, &r2), EVH_ESHUTTINGDOWN);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_EQ(evh_fd_add(rt, fds[0], rx.port(), EVH_READABLE, nullptr), EVH_ESHUTTINGDOWN);
  close(fds[0]);
  close(fds[1]);
  // A receiver is its owner thread's: shutdown does not close it (nothing more will arrive).
  evh_message* m = nullptr;
  EXPECT_EQ(evh_receiver_receive(rx.r, 0, &m), EVH_ETIMEDOUT);
  evh_runner* runner = nullptr;
  EXPECT_EQ(evh_runner_dedicated(rt, "late", &runner), EVH_ESHUTTINGDOWN);
}

// Every kind of handle may be released after shutdown, in any order, and then the runtime freed.
TEST(CapiRuntime, HandlesReleasedAfterShutdown) {
  evh_runtime* rt = nullptr;
  ASSERT_EQ(evh_runtime_create(nullptr, &rt), EVH_OK);
  evh_receiver* rx = nullptr;
  ASSERT_EQ(evh_receiver_open(rt, &rx), EVH_OK);
  evh_isolate* iso = nullptr;
  ASSERT_EQ(evh_isolate_spawn(
                rt, [](evh_isolate*, evh_message*, void*) {}, nullptr, nullptr, nullptr, &iso),
            EVH_OK);
  evh_signal_watcher* w = nullptr;
  ASSERT_EQ(evh_signal_watch(rt, SIGUSR1, evh_receiver_port(rx), &w), EVH_OK);
  const char* argv[] = {"sleep", "100", nullptr};
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  o.argv = argv;
  o.events = evh_receiver_port(rx);
  evh_process* p = nullptr;
  ASSERT_EQ(evh_process_spawn(rt, &o, &p), EVH_OK);
  evh_mutex* mu = nullptr;
  ASSERT_EQ(evh_mutex_create(&mu), EVH_OK);

  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);  // kills and reaps the child
  int code = 0;
  EXPECT_EQ(evh_process_exit_code(p, &code), EVH_OK);
  EXPECT_EQ(code, -SIGKILL);
  EXPECT_EQ(evh_process_write_stdin(p, "x", 1), -EPIPE);
  evh_process* p2 = nullptr;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p2), EVH_ESHUTTINGDOWN);
  evh_signal_watcher* w2 = nullptr;
  EXPECT_EQ(evh_signal_watch(rt, SIGUSR1, evh_receiver_port(rx), &w2), EVH_ESHUTTINGDOWN);
  EXPECT_EQ(evh_isolate_is_dead(iso), 1);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_EBUSY);
  EXPECT_EQ(evh_signal_destroy(w), EVH_OK);
  EXPECT_EQ(evh_process_release(p), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
  EXPECT_EQ(evh_receiver_destroy(rx), EVH_OK);
  EXPECT_EQ(evh_mutex_destroy(mu), EVH_OK);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_OK);
}

// Bytes round-trip through a receiver, short (inline) and long (heap); OOB overtakes.
TEST(CapiPost, BytesArriveInOrderAndOobOvertakes) {
  Runtime rt;
  Receiver rx(rt);
  const std::string big(1000, 'x');
  ASSERT_EQ(post_text(rt, rx.port(), "one"), EVH_OK);
  ASSERT_EQ(post_text(rt, rx.port(), big), EVH_OK);
  ASSERT_EQ(evh_post(rt, rx.port(), nullptr, 0, 0), EVH_OK);
  ASSERT_EQ(post_text(rt, rx.port(), "oob", EVH_POST_OOB), EVH_OK);
  EXPECT_EQ(rx.text(), "oob");
  EXPECT_EQ(rx.text(), "one");
  evh_message* m = rx.next();
  EXPECT_EQ(evh_message_kind(m), EVH_MESSAGE_BYTES);
  EXPECT_EQ(evh_message_port(m), rx.port());
  size_t n = 0;
  EXPECT_EQ(std::string(static_cast<const char*>(evh_message_data(m, &n)), 1000), big);
  EXPECT_EQ(n, 1000u);
  evh_message_destroy(m);
  m = rx.next();
  EXPECT_EQ(evh_message_data(m, &n), nullptr);
  EXPECT_EQ(n, 0u);
  evh_message_destroy(m);
}

// Bad posts get codes: unknown ports, bad flags, NULL data with a size, sizes past 32 bits.
TEST(CapiPost, BadPostsGetCodes) {
  Runtime rt;
  Receiver rx(rt);
  EXPECT_EQ(post_text(rt, 0, "x"), EVH_EUNKNOWNPORT);
  EXPECT_EQ(post_text(rt, rx.port() ^ 1, "x"), EVH_EUNKNOWNPORT);
  EXPECT_EQ(post_text(rt, rx.port(), "x", 0x100), EVH_EINVAL);
  EXPECT_EQ(evh_post(rt, rx.port(), nullptr, 3, 0), EVH_EINVAL);
  const char one = '1';
  EXPECT_EQ(evh_post(rt, rx.port(), &one, size_t{1} << 32, 0), EVH_EINVAL);  // never read
  EXPECT_EQ(evh_receiver_close(rx.r), EVH_OK);
  EXPECT_EQ(post_text(rt, rx.port(), "x"), EVH_EUNKNOWNPORT);  // a closed id is forgotten
  // A port of another runtime is unknown here.
  Runtime other;
  Receiver theirs(other);
  EXPECT_EQ(post_text(rt, theirs.port(), "x"), EVH_EUNKNOWNPORT);
}

// A native payload's finalizer runs exactly once on every path: each kind of failed post (before
// the call returns), a receiver destroyed with it queued, a message destroyed untaken; and never
// when it was taken.
TEST(CapiPost, NativeFinalizedExactlyOnceWhateverHappens) {
  Runtime rt;
  Finalized f;
  EXPECT_EQ(evh_post_native(nullptr, 1, &f, &Finalized::finalize, 0), EVH_EINVAL);
  EXPECT_EQ(f.get(), 1);
  {
    Receiver rx(rt);
    EXPECT_EQ(evh_post_native(rt, rx.port(), &f, &Finalized::finalize, 0x8), EVH_EINVAL);
    EXPECT_EQ(f.get(), 2);
    EXPECT_EQ(evh_post_native(rt, 12345, &f, &Finalized::finalize, 0), EVH_EUNKNOWNPORT);
    EXPECT_EQ(f.get(), 3);
    ASSERT_EQ(evh_post_native(rt, rx.port(), &f, &Finalized::finalize, 0), EVH_OK);
    ASSERT_EQ(evh_post_native(rt, rx.port(), &f, &Finalized::finalize, 0), EVH_OK);
    ASSERT_EQ(evh_post_native(rt, rx.port(), &f, &Finalized::finalize, 0), EVH_OK);
    evh_message* m = rx.next();
    EXPECT_EQ(evh_message_kind(m), EVH_MESSAGE_NATIVE);
    EXPECT_EQ(evh_message_native(m), &f);
    EXPECT_EQ(evh_message_take_native(m), &f);  // ours now
    EXPECT_EQ(evh_message_kind(m), EVH_MESSAGE_EMPTY);
    evh_message_destroy(m);
    EXPECT_EQ(f.get(), 3);
    evh_message_destroy(rx.next());  // untaken: finalized by the destroy
    EXPECT_EQ(f.get(), 4);
  }  // the third is still queued: the receiver's destruction releases it
  EXPECT_EQ(f.get(), 5);
  // Forwarding moves the payload; a failed forward releases it.
  Receiver rx(rt);
  ASSERT_EQ(evh_post_native(rt, rx.port(), &f, &Finalized::finalize, 0), EVH_OK);
  evh_message* m = rx.next();
  EXPECT_EQ(evh_post_message(rt, 777, m, 0), EVH_EUNKNOWNPORT);
  EXPECT_EQ(evh_message_kind(m), EVH_MESSAGE_EMPTY);
  EXPECT_EQ(f.get(), 6);
  evh_message_destroy(m);
  EXPECT_EQ(f.get(), 6);
  EXPECT_EQ(evh_post_message(rt, rx.port(), nullptr, 0), EVH_EINVAL);
}

// Posts from several threads racing with the receiver's close: every payload is finalized
// exactly once, whether it was posted before the close, refused after it, or drained by it.
TEST(CapiPost, FinalizedOnceWhenPostsRaceWithClose) {
  Runtime rt;
  Finalized f;
  constexpr int kThreads = 4, kEach = 2000;
  {
    Receiver rx(rt);
    const evh_port_id port = rx.port();
    std::atomic<bool> go{false};
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; ++t) {
      posters.emplace_back([&] {
        while (!go.load(std::memory_order_acquire)) {
        }
        for (int i = 0; i < kEach; ++i) {
          // Accepted or refused (EVH_EUNKNOWNPORT after the close): finalized once either way.
          (void)evh_post_native(rt, port, &f, &Finalized::finalize, i % 7 == 0 ? EVH_POST_OOB : 0);
        }
      });
    }
    go.store(true, std::memory_order_release);
    // Take some, then close while the posters are still at it.
    for (int i = 0; i < 100; ++i) evh_message_destroy(rx.next());
    EXPECT_EQ(evh_receiver_close(rx.r), EVH_OK);
    for (auto& t : posters) t.join();
  }
  EXPECT_EQ(f.get(), kThreads * kEach);
}

// Receivers: timeouts, EVH_FOREVER, try_receive, close.
TEST(CapiReceiver, TimeoutsAndClose) {
  Runtime rt;
  Receiver rx(rt);
  evh_message* m = reinterpret_cast<evh_message*>(&m);
  EXPECT_EQ(evh_receiver_receive(rx.r, 0, &m), EVH_ETIMEDOUT);
  EXPECT_EQ(m, nullptr);
  EXPECT_EQ(evh_receiver_receive(rx.r, -1, &m), EVH_EINVAL);
  EXPECT_EQ(evh_receiver_receive(rx.r, 0, nullptr), EVH_EINVAL);
  EXPECT_EQ(evh_receiver_try_receive(rx.r, &m), EVH_ETIMEDOUT);
  ASSERT_EQ(post_text(rt, rx.port(), "queued"), EVH_OK);
  ASSERT_EQ(evh_receiver_receive(rx.r, EVH_FOREVER, &m), EVH_OK);  // no limit: must not overflow
  evh_message_destroy(m);
  ASSERT_EQ(post_text(rt, rx.port(), "queued"), EVH_OK);
  ASSERT_EQ(evh_receiver_receive(rx.r, INT64_MAX - 1, &m), EVH_OK);
  evh_message_destroy(m);
  EXPECT_EQ(evh_receiver_close(rx.r), EVH_OK);
  EXPECT_EQ(evh_receiver_close(rx.r), EVH_OK);
  EXPECT_EQ(evh_receiver_receive(rx.r, 0, &m), EVH_EPORTCLOSED);
  EXPECT_NE(rx.port(), 0u);  // its id stays readable
}

// Decoders refuse messages that are not theirs.
TEST(CapiMessage, DecodersRefuseOtherMessages) {
  Runtime rt;
  Receiver rx(rt);
  ASSERT_EQ(post_text(rt, rx.port(), "plain bytes"), EVH_OK);
  evh_message* m = rx.next();
  evh_io_event io;
  evh_process_event pe;
  evh_signal_event se;
  evh_isolate_exit ie;
  char what[8];
  EXPECT_EQ(evh_message_io_event(m, &io), EVH_EINVAL);
  EXPECT_EQ(evh_message_process_event(m, &pe), EVH_EINVAL);
  EXPECT_EQ(evh_message_signal_event(m, &se), EVH_EINVAL);
  EXPECT_EQ(evh_message_isolate_exit(m, &ie), EVH_EINVAL);
  EXPECT_EQ(evh_message_isolate_error(m, nullptr, what, sizeof what), EVH_EINVAL);
  EXPECT_EQ(evh_message_isolate_error(m, nullptr, nullptr, 4), EVH_EINVAL);
  EXPECT_EQ(evh_message_io_event(m, nullptr), EVH_EINVAL);
  EXPECT_EQ(evh_message_io_event(nullptr, &io), EVH_EINVAL);
  evh_message_destroy(m);
}

}  // namespace
}  // namespace evh_capi_test
