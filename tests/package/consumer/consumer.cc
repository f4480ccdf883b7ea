// Uses an installed evh through its C++ API: an isolate echoes one message back.
#include <evh/runtime.h>
#include <evh/version.h>

#include <chrono>
#include <cstdio>

int main() {
  evh::Runtime rt;
  auto replies = rt.open_receiver();
  evh::SendPort reply_to = *rt.send_port(replies->id());
  auto echo = rt.spawn(evh::make_handler(
      [reply_to](evh::Isolate&, evh::Message& m) { (void)reply_to.post(std::move(m)); }));
  (void)rt.post((*echo)->main_port(), evh::Message::bytes("hello"));
  auto back = replies->receive(std::chrono::seconds(30));
  if (!back || back->text() != "hello") return 1;
  std::printf("consumer (C++, evh %s): echo ok\n", EVH_VERSION_STRING);
  return 0;
}
