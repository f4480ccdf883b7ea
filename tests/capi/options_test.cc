// The C API's options structs: `size` set by the caller's header, a struct of another version
// read as far as both know it, and a struct left unset refused with EVH_EOPTIONS — with nothing
// created and the caller's user data and fd handled as on any other refusal (evh.h, "options
// structs").
#include <evh/evh.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "capi_test_util.h"

namespace evh_capi_test {
namespace {

// A caller built against a newer evh.h: the same struct with a field this library lacks.
template <class T>
struct Newer {
  T known;
  std::uint64_t unknown;
};

void count_destroy(void* n) noexcept {
  static_cast<std::atomic<int>*>(n)->fetch_add(1, std::memory_order_relaxed);
}
void ignore(evh_isolate*, evh_message*, void*) {}

TEST(CapiOptions, TheInitialisersSetTheCallersSize) {
  const evh_isolate_options i = EVH_ISOLATE_OPTIONS_INIT;
  EXPECT_EQ(i.size, sizeof(evh_isolate_options));
  EXPECT_EQ(i.runner, nullptr);
  evh_fd_options f;
  std::memset(&f, 0xAB, sizeof f);
  evh_fd_options_init(&f);
  EXPECT_EQ(f.size, sizeof(evh_fd_options));
  EXPECT_EQ(f.mode, EVH_FD_LEVEL);
  EXPECT_EQ(f.flags, 0u);
  evh_process_options p;
  std::memset(&p, 0xAB, sizeof p);
  evh_process_options_init(&p);
  EXPECT_EQ(p.size, sizeof(evh_process_options));
  EXPECT_EQ(p.argv, nullptr);
  EXPECT_EQ(p.stdio[2].mode, EVH_STDIO_PIPE);
  evh_runtime_options r;
  evh_runtime_options_init(&r);
  EXPECT_EQ(r.size, sizeof(evh_runtime_options));
  EXPECT_EQ(r.default_budget, 64u);
}

// The library fills only the bytes the caller says its struct has: a newer caller's extra field
// is zeroed (its default), an impossible size is left alone.
TEST(CapiOptions, RuntimeDefaultsFillOnlyTheCallersBytes) {
  Newer<evh_runtime_options> n;
  std::memset(&n, 0xAB, sizeof n);
  evh_runtime_options_init_size(&n.known, sizeof n);
  EXPECT_EQ(n.known.size, sizeof n);
  EXPECT_EQ(n.known.default_budget, 64u);
  EXPECT_EQ(n.unknown, 0u);
  evh_runtime_options tiny;
  std::memset(&tiny, 0xAB, sizeof tiny);
  evh_runtime_options_init_size(&tiny, 8);
  EXPECT_EQ(tiny.default_budget, 0xABABABABu);  // untouched
  // Such a struct of a newer caller is accepted: its unknown field is at its default.
  evh_runtime* rt = nullptr;
  ASSERT_EQ(evh_runtime_create(&n.known, &rt), EVH_OK);
  EXPECT_EQ(evh_runtime_destroy(rt), EVH_OK);
}

TEST(CapiOptions, AnUnsetOrForeignRuntimeStructIsRefused) {
  evh_runtime* rt = nullptr;
  evh_runtime_options o;
  evh_runtime_options_init(&o);
  o.size = 0;  // as `evh_runtime_options o = {0};` leaves it
  EXPECT_EQ(evh_runtime_create(&o, &rt), EVH_EOPTIONS);
  EXPECT_EQ(rt, nullptr);
  o.size = offsetof(evh_runtime_options, default_budget);  // shorter than any evh's struct
  EXPECT_EQ(evh_runtime_create(&o, &rt), EVH_EOPTIONS);
  o.size = 1u << 20;  // garbage: refused without reading that far
  EXPECT_EQ(evh_runtime_create(&o, &rt), EVH_EOPTIONS);
  Newer<evh_runtime_options> n;
  evh_runtime_options_init_size(&n.known, sizeof n);
  n.unknown = 7;  // a field this library cannot honour
  EXPECT_EQ(evh_runtime_create(&n.known, &rt), EVH_EOPTIONS);
  EXPECT_EQ(rt, nullptr);
}

// A refused isolate spawn releases the user data exactly once, like every spawn failure.
TEST(CapiOptions, AnUnsetIsolateStructIsRefusedAndTheUserDataReleased) {
  Runtime rt;
  std::atomic<int> destroyed{0};
  evh_isolate* iso = nullptr;
  evh_isolate_options zero;
  std::memset(&zero, 0, sizeof zero);
  EXPECT_EQ(evh_isolate_spawn(rt, &ignore, &destroyed, &count_destroy, &zero, &iso), EVH_EOPTIONS);
  EXPECT_EQ(iso, nullptr);
  EXPECT_EQ(destroyed.load(), 1);
  Newer<evh_isolate_options> n{EVH_ISOLATE_OPTIONS_INIT, 1};
  n.known.size = sizeof n;
  EXPECT_EQ(evh_isolate_spawn(rt, &ignore, &destroyed, &count_destroy, &n.known, &iso),
            EVH_EOPTIONS);
  EXPECT_EQ(destroyed.load(), 2);
  n.unknown = 0;  // the same struct with the unknown field at its default: spawned
  ASSERT_EQ(evh_isolate_spawn(rt, &ignore, &destroyed, &count_destroy, &n.known, &iso), EVH_OK);
  EXPECT_EQ(evh_isolate_kill(iso, EVH_IMMEDIATE), EVH_OK);
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
  ASSERT_EQ(evh_runtime_shutdown(rt), EVH_OK);
  EXPECT_EQ(destroyed.load(), 3);
}

// A refused registration leaves the fd the caller's, even with EVH_FD_OWNED.
TEST(CapiOptions, AnUnsetFdStructIsRefusedAndTheFdStaysOpen) {
  Runtime rt;
  Receiver rx(rt);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  evh_fd_options o;
  std::memset(&o, 0, sizeof o);
  o.flags = EVH_FD_OWNED;
  EXPECT_EQ(evh_fd_add(rt, fds[0], rx.port(), EVH_READABLE, &o), EVH_EOPTIONS);
  EXPECT_EQ(fcntl(fds[0], F_GETFD), FD_CLOEXEC);  // still open, still ours
  close(fds[0]);
  close(fds[1]);
}

TEST(CapiOptions, AnUnsetProcessStructIsRefusedBeforeAnythingStarts) {
  Runtime rt;
  const char* argv[] = {"true", nullptr};
  evh_process_options o;
  std::memset(&o, 0, sizeof o);
  o.argv = argv;
  char error[16] = "untouched";
  o.error = error;
  o.error_capacity = sizeof error;
  evh_process* p = nullptr;
  EXPECT_EQ(evh_process_spawn(rt, &o, &p), EVH_EOPTIONS);
  EXPECT_EQ(p, nullptr);
  EXPECT_STREQ(error, "untouched");  // refused before any of it was read
}

// evh writes exactly the caller's bytes: an older, smaller struct is never written past its
// end (refused when smaller than any evh's), a newer, bigger one gets zeros in what evh lacks.
TEST(CapiOptions, OutputStructsGetExactlyTheCallersBytes) {
  Runtime rt;
  Newer<evh_runtime_stats> n;
  std::memset(&n, 0xAB, sizeof n);
  ASSERT_EQ(evh_runtime_stats_get_size(rt, &n.known, sizeof n), EVH_OK);
  EXPECT_EQ(n.known.isolates_live, 0u);
  EXPECT_EQ(n.unknown, 0u);
  struct Guarded {
    evh_timer_stats stats;
    unsigned char after[16];
  } g;
  std::memset(&g, 0xAB, sizeof g);
  ASSERT_EQ(evh_runtime_timer_stats(rt, &g.stats), EVH_OK);
  for (unsigned char b : g.after) EXPECT_EQ(b, 0xAB);  // nothing written past the struct
  EXPECT_EQ(g.stats.late_max_ns, 0u);
  evh_isolate_stats tiny;
  std::memset(&tiny, 0xAB, sizeof tiny);
  evh_isolate* iso = nullptr;
  std::atomic<int> destroyed{0};
  ASSERT_EQ(evh_isolate_spawn(rt, &ignore, &destroyed, &count_destroy, nullptr, &iso), EVH_OK);
  EXPECT_EQ(evh_isolate_stats_get_size(iso, &tiny, 8), EVH_EINVAL);
  EXPECT_EQ(tiny.handled, 0xABABABABABABABABu);  // untouched
  EXPECT_EQ(evh_isolate_release(iso), EVH_OK);
}

}  // namespace
}  // namespace evh_capi_test
