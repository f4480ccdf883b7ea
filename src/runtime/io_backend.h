// The choice of the event handler's kernel backend (docs/EVENT_HANDLER.md "Backends"): what
// RuntimeOptions::io_backend asks for, what the environment variable EVH_BACKEND overrides it
// with (an operator's kill switch: no rebuild needed), and what the kernel allows.
//
// Threads: none of its own; the functions are safe from any thread (getenv aside: evh never
// calls setenv).
#pragma once

#include <evh/error.h>
#include <evh/runtime.h>

#include <memory>
#include <string>

#include "io/poller.h"
#include "io/uring_poller.h"

namespace evh::detail {

struct BackendChoice {
  IoBackend backend = IoBackend::epoll;  // epoll or uring, never automatic
  std::string reason;                    // why this one, in a sentence
};

// Resolves `requested` against EVH_BACKEND and probes io_uring (a ring set up with the flags
// evh uses, its opcodes checked, then closed) unless epoll is asked for. automatic: io_uring
// when the probe passes, else epoll with the probe's reason. uring asked for and unavailable:
// std::system_error naming the reason. An EVH_BACKEND that is not epoll, uring or auto:
// std::invalid_argument.
BackendChoice choose_backend(IoBackend requested);

// A poller of the chosen backend. `issuer`: how an io_uring ring will be driven.
Result<std::unique_ptr<Poller>> make_poller(IoBackend backend, UringIssuer issuer) noexcept;

const char* backend_name(IoBackend backend) noexcept;

}  // namespace evh::detail
