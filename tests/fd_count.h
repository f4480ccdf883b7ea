// tests/fd_count.h — how many fds this process has open (/proc/self/fd), for leak checks in the
// tests and the fuzz targets alike (no gtest here, so a fuzz target can include it).
#pragma once

#include <dirent.h>

namespace evh::test {

// -1 when /proc is not readable.
inline int count_open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace evh::test
