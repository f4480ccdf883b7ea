// Sys: the system calls the event handler makes on fds that are not the poller's own — checking
// an fd a caller hands it, accepting a connection, closing an fd it was given to own.
//
// Each method is the system call itself, with its contract: it returns what the call returns
// (-1 with errno set on failure) and retries nothing. The retry and error handling stay in the
// event handler, so that a test can substitute a Sys that injects EINTR, EAGAIN, EMFILE or any
// other errno into each call and see the handler's own reaction (tests/io/fake_poller.h).
//
// Threads: every method may be called from any thread; `accept4` may be called by the caller
// of EventHandler::accept, the rest by the event handler. None blocks (the fds are
// non-blocking). Memory: nothing is kept across calls.
#pragma once

#include <sys/stat.h>

namespace evh::detail {

class Sys {
 public:
  virtual int fcntl_getfd(int fd) noexcept = 0;              // fcntl(fd, F_GETFD)
  virtual int fstat(int fd, struct stat* out) noexcept = 0;  // fstat(fd, out)
  // accept4(fd, nullptr, nullptr, flags)
  virtual int accept4(int fd, int flags) noexcept = 0;
  // close(fd). On Linux the fd is released even when this fails with EINTR: never call it
  // again for the same fd (it may already name another file).
  virtual int close(int fd) noexcept = 0;

 protected:
  ~Sys() = default;
};

// The kernel's calls. Stateless: one instance serves every event handler.
Sys& linux_sys() noexcept;

}  // namespace evh::detail
