// echo_isolate: the smallest evh program. A plain thread (main) sends an isolate a message and
// blocks until the isolate's echo comes back.
//
// Build (installed evh): c++ -std=c++20 echo_isolate.cc $(pkg-config --cflags --libs evh)
#include <evh/runtime.h>

#include <chrono>
#include <cstdio>

int main() {
  // [readme:echo]
  evh::Runtime rt;                    // its own pool, ports and ids
  auto replies = rt.open_receiver();  // a port this (plain) thread can block on
  evh::SendPort reply_to = *rt.send_port(replies->id());

  // An isolate that echoes every message back. One thread at a time runs it; it sleeps (no
  // thread, no CPU) while its mailbox is empty.
  auto echo = rt.spawn(evh::make_handler(
      [reply_to](evh::Isolate&, evh::Message& m) { (void)reply_to.post(std::move(m)); }));

  evh::SendPort to_echo = *rt.send_port((*echo)->main_port());
  if (auto st = to_echo.post(evh::Message::u64(42)); !st) {
    // e.g. Errc::port_closed: the payload has already been released, on this thread
  }
  auto back = replies->receive(std::chrono::seconds(10));  // Errc::timed_out if nothing came
  // [readme-end]

  if (!back.ok() || back->as_u64() != 42) {
    std::fprintf(stderr, "echo_isolate: no echo: %s\n", back.error().message().c_str());
    return 1;
  }
  std::printf("echo_isolate: %llu came back\n", static_cast<unsigned long long>(back->as_u64()));
  return 0;
}
