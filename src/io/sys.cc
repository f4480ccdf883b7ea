#include "io/sys.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace evh::detail {
namespace {

class LinuxSys final : public Sys {
 public:
  int fcntl_getfd(int fd) noexcept override { return ::fcntl(fd, F_GETFD); }
  int fstat(int fd, struct stat* out) noexcept override { return ::fstat(fd, out); }
  int accept4(int fd, int flags) noexcept override {
    return ::accept4(fd, nullptr, nullptr, flags);
  }
  int close(int fd) noexcept override { return ::close(fd); }
};

}  // namespace

Sys& linux_sys() noexcept {
  // Stateless, so sharing it between runtimes shares nothing.
  static LinuxSys sys;
  return sys;
}

}  // namespace evh::detail
