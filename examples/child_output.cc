// child_output: a child process's output streamed into an isolate. The child is started without
// a shell; its stdout arrives at the isolate as messages, chunk by chunk, in order, and its exit
// comes last, after the output has been fully read.
#include <evh/process.h>
#include <evh/runtime.h>

#include <chrono>
#include <cstdio>
#include <string>

int main() {
  evh::Runtime rt;
  auto replies = rt.open_receiver();
  evh::SendPort reply_to = *rt.send_port(replies->id());

  // [readme:process]
  evh::ProcessManager processes(rt);  // destroy it before the Runtime
  auto sink = rt.spawn(
      evh::make_handler([reply_to, out = std::string()](evh::Isolate&, evh::Message& m) mutable {
        auto ev = evh::decode_process_event(m);
        if (!ev) return;
        if (ev->kind == evh::ProcessEventKind::stdout_data) {
          out.append(ev->text());                              // the next chunk, in order
        } else if (ev->kind == evh::ProcessEventKind::exit) {  // always after the last chunk
          (void)reply_to.post(evh::Message::bytes(out + " exit " + std::to_string(ev->exit_code)));
        }
      }));
  auto child = processes.spawn({.argv = {"echo", "hello from a child"},  // no shell; PATH lookup
                                .stdin_mode = evh::Stdio::null(),
                                .events = (*sink)->main_port(),
                                .tie_to = sink->get()});  // killed if the isolate ends first
  if (!child) {
    // e.g. ENOENT or EACCES from exec, as a std::error_code: nothing started, no exit follows
  }
  // child->write_stdin(bytes) never blocks (a `stdin_ready` message says when there is room
  // again); child->kill(SIGTERM) goes through the pidfd; an exit by signal s reports -s.
  // [readme-end]

  if (!child) {
    std::fprintf(stderr, "child_output: spawn: %s\n", child.error().message().c_str());
    return 1;
  }
  auto m = replies->receive(std::chrono::seconds(30));
  if (!m) {
    std::fprintf(stderr, "child_output: %s\n", m.error().message().c_str());
    return 1;
  }
  const std::string text(m->text());
  std::printf("child_output: %s\n", text.c_str());
  return text == "hello from a child\n exit 0" ? 0 : 1;
}
