#include "runtime/io_backend.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "io/epoll_poller.h"

namespace evh::detail {

const char* backend_name(IoBackend backend) noexcept {
  switch (backend) {
    case IoBackend::automatic:
      return "auto";
    case IoBackend::epoll:
      return "epoll";
    case IoBackend::uring:
      return "io_uring";
  }
  return "?";
}

BackendChoice choose_backend(IoBackend requested) {
  std::string source = "RuntimeOptions::io_backend";
  if (const char* env = std::getenv("EVH_BACKEND"); env != nullptr && env[0] != '\0') {
    if (std::strcmp(env, "epoll") == 0) {
      requested = IoBackend::epoll;
    } else if (std::strcmp(env, "uring") == 0 || std::strcmp(env, "io_uring") == 0) {
      requested = IoBackend::uring;
    } else if (std::strcmp(env, "auto") == 0) {
      requested = IoBackend::automatic;
    } else {
      throw std::invalid_argument(std::string("evh: EVH_BACKEND=") + env +
                                  ": expected epoll, uring or auto");
    }
    source = std::string("EVH_BACKEND=") + env;
  }
  BackendChoice c;
  if (requested == IoBackend::epoll) {
    c.backend = IoBackend::epoll;
    c.reason = source + " asks for epoll";
    return c;
  }
  // The strictest ring evh sets up (one issuer, deferred task work): if it passes, both do.
  std::string why;
  UringOptions probe;
  probe.issuer = UringIssuer::single;
  probe.sq_entries = 4;
  probe.cq_entries = 8;
  auto ring = UringPoller::create(probe, &why);
  if (ring) {
    c.backend = IoBackend::uring;
    c.reason = requested == IoBackend::uring ? source + " asks for io_uring"
                                             : "auto: the io_uring probe passed";
    return c;
  }
  if (requested == IoBackend::uring) {
    throw std::system_error(ring.error(),
                            "evh: " + source + " asks for io_uring, which is unavailable: " + why);
  }
  c.backend = IoBackend::epoll;
  c.reason = "auto: io_uring unavailable, epoll instead: " + why;
  return c;
}

Result<std::unique_ptr<Poller>> make_poller(IoBackend backend, UringIssuer issuer) noexcept {
  if (backend == IoBackend::uring) {
    UringOptions o;
    o.issuer = issuer;
    auto p = UringPoller::create(o);
    if (!p) return p.error();
    return std::unique_ptr<Poller>(std::move(p).value());
  }
  auto p = EpollPoller::create();
  if (!p) return p.error();
  return std::unique_ptr<Poller>(std::move(p).value());
}

}  // namespace evh::detail
