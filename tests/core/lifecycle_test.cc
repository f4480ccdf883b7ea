// Isolate lifecycle: kill, what it releases, attached resources.
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"

namespace evh {
namespace {

using test::expect_receive;

struct CountingResource final : IsolateResource {
  std::atomic<int> told{0};
  std::atomic<int> reason{-1};
  void on_isolate_exit(Isolate&, ExitReason r) noexcept override {
    reason.store(static_cast<int>(r));
    told.fetch_add(1);
  }
};

// An attached resource is told once, with the reason; a detached one is not told; attaching to
// an exited isolate fails and tells nothing.
TEST(Lifecycle, AttachedResourcesAreToldOnceOnKill) {
  Runtime rt;
  auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
  ASSERT_TRUE(iso.ok());
  CountingResource kept, detached, late;
  ASSERT_TRUE((*iso)->attach(kept).ok());
  ASSERT_TRUE((*iso)->attach(detached).ok());
  EXPECT_EQ((*iso)->attach(kept).error(), make_error_code(Errc::invalid_argument));
  EXPECT_TRUE((*iso)->detach(detached));
  EXPECT_FALSE((*iso)->detach(detached));
  (*iso)->kill();
  (*iso)->kill(KillPriority::before_next_event);  // idempotent
  EXPECT_EQ(kept.told.load(), 1);
  EXPECT_EQ(kept.reason.load(), static_cast<int>(ExitReason::killed));
  EXPECT_EQ(detached.told.load(), 0);
  EXPECT_FALSE((*iso)->detach(kept));
  EXPECT_EQ((*iso)->attach(late).error(), make_error_code(Errc::isolate_dead));
  EXPECT_EQ(late.told.load(), 0);
}

// Runtime shutdown kills the isolates that are left: their resources are told.
TEST(Lifecycle, ShutdownTellsResources) {
  CountingResource r;
  {
    Runtime rt;
    auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
    ASSERT_TRUE(iso.ok());
    ASSERT_TRUE((*iso)->attach(r).ok());
    rt.shutdown();
  }
  EXPECT_EQ(r.told.load(), 1);
}

}  // namespace
}  // namespace evh
