// tcp_echo: a TCP echo server on 127.0.0.1 whose sockets travel as messages.
//
// An acceptor isolate owns the listening socket: the runtime's event handler tells it when a
// connection is pending (a message carrying an IoEvent), it accepts, and it hands each new
// socket to one of two worker isolates as a native payload — whose finalizer closes the socket
// if the message is never delivered, so no fd leaks whatever happens. A worker takes the socket
// out of the message, registers it (owned: it dies with the worker) and echoes what it reads.
// main() is the client: it connects three times and checks the echoes.
#include <arpa/inet.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// A socket in transit: closed by the finalizer unless the receiver takes it out.
struct OwnedFd {
  int fd;
};
void close_owned(void* p) noexcept {
  auto* o = static_cast<OwnedFd*>(p);
  ::close(o->fd);
  delete o;
}

// Echoes one connection's pending bytes; at end of file ends its registration (which closes it).
void echo_some(evh::EventHandler* eh, evh::PortId port, int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      // Small echoes fit the socket's buffer; a real server would keep the rest and ask for
      // FdEvents::writable.
      (void)!::write(fd, buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || errno != EAGAIN) (void)eh->close_fd(fd, port);
    return;
  }
}

int listen_on_loopback(sockaddr_in& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  addr = sockaddr_in{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: the kernel picks one
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 64) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("tcp_echo: listen");
    std::exit(1);
  }
  return fd;
}

// The client side, plain blocking sockets: sends `text`, reads it back.
std::string round_trip(const sockaddr_in& addr, const std::string& text) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::string back;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())) {
    char buf[256];
    while (back.size() < text.size()) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      back.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return back;
}

}  // namespace

int main() {
  evh::Runtime rt;
  evh::EventHandler* eh = *rt.event_handler();  // started on first use; lives as long as rt

  // [readme:fds]
  // Workers: each takes sockets out of the messages it is sent, and echoes on them.
  std::vector<evh::IsolateRef> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(*rt.spawn(evh::make_handler([eh](evh::Isolate& self, evh::Message& m) {
      if (m.kind() == evh::Message::Kind::native) {  // a new connection
        auto* socket = static_cast<OwnedFd*>(m.take_native());
        const int fd = socket->fd;
        delete socket;
        (void)eh->add_fd(fd, self.main_port(), evh::FdEvents::readable,
                         {.mode = evh::FdMode::edge, .owned = true});  // closed if we die
      } else if (auto ev = evh::decode_io_event(m); ev && ev->notice == evh::IoNotice::ready) {
        echo_some(eh, self.main_port(), ev->fd);
      }
    })));
  }

  // The acceptor: readiness of the listening socket arrives as a message.
  sockaddr_in addr;
  const int listener = listen_on_loopback(addr);
  std::vector<evh::PortId> to_workers{workers[0]->main_port(), workers[1]->main_port()};
  auto acceptor = rt.spawn(evh::make_handler([eh, &rt, listener, to_workers, next = std::size_t{0}](
                                                 evh::Isolate& self, evh::Message& m) mutable {
    auto ev = evh::decode_io_event(m);
    if (!ev || ev->notice != evh::IoNotice::ready) return;
    for (;;) {
      auto fd = eh->accept(listener, self.main_port());  // non-blocking, close-on-exec
      if (!fd) break;                                    // EAGAIN: none left
      (void)rt.post(to_workers[next++ % to_workers.size()],
                    evh::Message::native(new OwnedFd{*fd}, &close_owned));
    }
  }));
  (void)eh->add_fd(listener, (*acceptor)->main_port(), evh::FdEvents::readable,
                   {.mode = evh::FdMode::edge, .owned = true});
  // [readme-end]

  int ok = 0;
  for (const char* text : {"hello", "from", "three clients"}) {
    const std::string back = round_trip(addr, text);
    std::printf("tcp_echo: sent \"%s\", got \"%s\"\n", text, back.c_str());
    if (back == text) ++ok;
  }
  return ok == 3 ? 0 : 1;
}
