// Helpers shared by the event-handler tests: fds that close themselves, reading the handler's
// messages from a Receiver, fences, and the backends the typed suites run on.
#pragma once

#include <errno.h>
#include <evh/event_handler.h>
#include <evh/runtime.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "fd_count.h"
#include "io/epoll_poller.h"
#include "io/uring_poller.h"
#include "runtime/runtime_impl.h"
#include "test_util.h"

namespace evh::test {

// A pipe (both ends non-blocking, close-on-exec) closed at the end of the scope unless an end
// was handed over (set to -1).
struct Pipe {
  int r = -1;
  int w = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) ADD_FAILURE() << "pipe2: " << errno;
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  void put(std::size_t n = 1) const {
    std::string bytes(n, 'x');
    ASSERT_EQ(::write(w, bytes.data(), n), static_cast<ssize_t>(n));
  }
  // Reads what is buffered; returns how many bytes.
  std::size_t drain() const {
    char buf[4096];
    std::size_t total = 0;
    for (;;) {
      const ssize_t n = ::read(r, buf, sizeof buf);
      if (n <= 0) return total;
      total += static_cast<std::size_t>(n);
    }
  }
};

inline bool fd_is_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

// A TCP listener on 127.0.0.1 (an ephemeral port), non-blocking.
struct Listener {
  int fd = -1;
  sockaddr_in addr{};
  explicit Listener(int backlog = 64) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "listener: " << errno;
    }
  }
  ~Listener() {
    if (fd >= 0) ::close(fd);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // A blocking connect; the connection waits in the backlog until accepted.
  int connect() const {
    const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || ::connect(c, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "connect: " << errno;
    }
    return c;
  }
};

// The next event-handler message for `rx` (a failed expectation when none comes in time).
inline IoEvent next_event(Receiver& rx) {
  Message m = expect_receive(rx);
  auto ev = decode_io_event(m);
  EXPECT_TRUE(ev.has_value()) << "not an IoEvent: " << m.data().size() << " bytes";
  return ev.value_or(IoEvent{});
}

// Every message the handler posts to `rx` up to a fence: a timeout already due, which the
// handler posts in the pass after it executes the command — after any readiness that pass
// reports. A level fd the handler failed to park, or an edge it failed to consume, shows up
// here. Uses (and ends) the port's one timeout.
inline std::vector<IoEvent> events_until_fence(EventHandler& eh, Receiver& rx) {
  const auto deadline = EventHandler::Clock::now();
  EXPECT_TRUE(eh.set_timeout(rx.id(), deadline).ok());
  const std::int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  std::vector<IoEvent> before;
  for (;;) {
    IoEvent ev = next_event(rx);
    if (ev.magic != IoEvent::kMagic) return before;  // nothing came: already reported
    if (ev.notice == IoNotice::timeout && ev.deadline_ns == ns) return before;
    before.push_back(ev);
  }
}

// ---- who drives the handler ------------------------------------------------------------------

// `pool`: the runtime's own handler, driven by its pool's idle workers (the path every runtime
// takes); `own_thread`: a standalone handler with its own thread (EventHandler::create).
enum class Drive { pool, own_thread };

inline const char* drive_name(Drive d) {
  return d == Drive::pool ? "Pool" : "OwnThread";
}

// A handler under test: the runtime owns a pooled one (it is shut down with the runtime), the
// test owns one with its own thread.
struct HandlerUnderTest {
  std::unique_ptr<EventHandler> owned;
  EventHandler* eh = nullptr;
};

inline Result<HandlerUnderTest> make_handler(Runtime& rt, std::unique_ptr<detail::Poller> poller,
                                             Drive drive, detail::Sys& sys = detail::linux_sys(),
                                             EventHandlerOptions options = {}) {
  HandlerUnderTest h;
  if (drive == Drive::pool) {
    auto eh =
        detail::RuntimeAccess::impl(rt).install_event_handler(std::move(poller), sys, options);
    if (!eh) return eh.error();
    h.eh = *eh;
  } else {
    auto eh = detail::make_event_handler(rt, std::move(poller), options, sys);
    if (!eh) return eh.error();
    h.owned = std::move(eh).value();
    h.eh = h.owned.get();
  }
  return h;
}

// ---- backends ---------------------------------------------------------------------------------

struct EpollBackend {
  static constexpr const char* kName = "epoll";
  static Result<std::unique_ptr<detail::Poller>> make(Drive) {
    auto p = detail::EpollPoller::create();
    if (!p) return p.error();
    return std::unique_ptr<detail::Poller>(std::move(p).value());
  }
};

// io_uring: one issuer (SINGLE_ISSUER | DEFER_TASKRUN) under the handler's own thread, shared
// under a pool whose workers take turns. `make()` fails, with the kernel's reason printed, where
// the kernel refuses io_uring; the typed suites then skip.
struct UringBackend {
  static constexpr const char* kName = "io_uring";
  static Result<std::unique_ptr<detail::Poller>> make(Drive d) {
    detail::UringOptions o;
    o.issuer = d == Drive::own_thread ? detail::UringIssuer::single : detail::UringIssuer::shared;
    std::string why;
    auto p = detail::UringPoller::create(o, &why);
    if (!p) {
      std::fprintf(stderr, "io_uring unavailable: %s\n", why.c_str());
      return p.error();
    }
    return std::unique_ptr<detail::Poller>(std::move(p).value());
  }
};

// A backend driven one way: the type parameter of the typed suites.
template <class Backend, Drive D>
struct On {
  using backend = Backend;
  static constexpr Drive kDrive = D;
  static Result<std::unique_ptr<detail::Poller>> make() { return Backend::make(D); }
};

// Names the typed suites' instances, e.g. EventHandlerTest/EpollPool.
struct OnName {
  template <class T>
  static std::string GetName(int) {
    return std::string(T::backend::kName == std::string("epoll") ? "Epoll" : "Uring") +
           drive_name(T::kDrive);
  }
};

}  // namespace evh::test
