#include <evh/runtime.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace evh {
namespace {

// A SendPort posts like the id does, and reports port_closed after its isolate is destroyed,
// releasing the refused payload on the posting thread before post() returns.
TEST(SendPort, FailsAfterCloseAndReleasesPayload) {
  Runtime rt;
  auto rx = rt.open_receiver();
  ASSERT_TRUE(rx.ok());
  auto reply = rt.send_port(rx->id());
  ASSERT_TRUE(reply.ok());
  SendPort to_rx = *reply;
  auto iso =
      rt.spawn(make_handler([to_rx](Isolate&, Message& m) { (void)to_rx.post(std::move(m)); }));
  ASSERT_TRUE(iso.ok());
  auto sp = rt.send_port((*iso)->main_port());
  ASSERT_TRUE(sp.ok());
  ASSERT_TRUE(sp->post(Message::u64(5)).ok());
  EXPECT_EQ(test::expect_receive(*rx).as_u64(), 5u);

  (*iso)->destroy();
  test::ReleaseCounter c;
  auto st = sp->post(c.make());
  EXPECT_EQ(st.error(), Errc::port_closed);
  EXPECT_EQ(c.finalized, 1u);
  // By id: the id is forgotten once closed.
  EXPECT_EQ(rt.post((*iso)->main_port(), c.make()).error(), Errc::unknown_port);
  EXPECT_EQ(c.finalized, 2u);
}

// An empty SendPort and the id 0 are rejected with clear codes.
TEST(SendPort, EmptyAndZero) {
  Runtime rt;
  SendPort empty;
  test::ReleaseCounter c;
  EXPECT_EQ(empty.post(c.make()).error(), Errc::unknown_port);
  EXPECT_EQ(rt.post(PortId::none, c.make()).error(), Errc::unknown_port);
  EXPECT_FALSE(rt.send_port(PortId::none).ok());
  EXPECT_EQ(c.finalized, 2u);
  EXPECT_EQ(make_error_code(Errc::port_closed).message(), "the destination port is closed");
}

}  // namespace
}  // namespace evh
