// Shutting a runtime down from inside one of its own isolates: a stated error, not a hang.
#include <evh/runtime.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace evh {
namespace {

// Defect 8 (issue 14): Runtime::shutdown() (or the destructor) called from an isolate's handler
// waited for that handler's own turn to end, and hung without a word. Every build now says what
// happened and aborts.
TEST(RuntimeShutdownDeathTest, ShutdownFromInsideAnIsolateIsReportedNotAHang) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Runtime rt;
        Receiver rx = std::move(rt.open_receiver()).value();
        auto iso = rt.spawn(make_handler([&rt](Isolate&, Message&) { rt.shutdown(); }));
        if (iso.ok()) (void)rt.post((*iso)->main_port(), Message::u64(1));
        (void)rx.receive(test::kLongWait);  // nothing comes: the handler ends the process
      },
      "Runtime::shutdown\\(\\) called from inside one of the runtime's isolates");
}

// The same for the destructor, reached through an owner that an isolate drops.
TEST(RuntimeShutdownDeathTest, DestructionFromInsideAnIsolateIsReportedNotAHang) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto* rt = new Runtime();
        Receiver rx = std::move(rt->open_receiver()).value();
        auto iso = rt->spawn(make_handler([rt](Isolate&, Message&) { delete rt; }));
        if (iso.ok()) (void)rt->post((*iso)->main_port(), Message::u64(1));
        (void)rx.receive(test::kLongWait);
      },
      "Runtime::~Runtime\\(\\) called from inside one of the runtime's isolates");
}

// From a plain thread it is what it always was.
TEST(RuntimeShutdown, FromAPlainThreadStillShutsDown) {
  Runtime rt;
  auto iso = rt.spawn(make_handler([](Isolate&, Message&) {}));
  ASSERT_TRUE(iso.ok());
  rt.shutdown();
  EXPECT_EQ(rt.post((*iso)->main_port(), Message::u64(1)).error(), Errc::shutting_down);
}

}  // namespace
}  // namespace evh
