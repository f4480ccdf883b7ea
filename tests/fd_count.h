// tests/fd_count.h — the fds this process has open (/proc/self/fd), for leak checks in the tests
// and the fuzz targets alike (no gtest here, so a fuzz target can include it).
//
// A leak check compares what is open after with what was open before, fd by fd, and looks again
// until the two settle: a single count is not a leak check when other threads may hold an fd for
// a moment. AddressSanitizer's memory-accessibility probe opens and closes a pipe on whatever
// thread asks (two fds for microseconds; a count that caught one failed an ASan CI run with
// "9 open, 11 before"), and the event handler closes a child's pipes and pidfd just after its
// exit is posted. An fd open at the first look and gone by the last is no leak; a leak stays, so
// the looks never settle and the check fails at its limit.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace evh::test {

// Every open fd with what it is (readlink of /proc/self/fd/N: "pipe:[123]",
// "anon_inode:[eventfd]", a path), the listing's own fd left out. Empty when /proc is not
// readable.
using FdSet = std::map<int, std::string>;

inline FdSet open_fds() {
  FdSet fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int own = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == own) continue;
    char target[256];
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    if (n < 0) continue;  // closed since the listing: not open
    fds.emplace(fd, std::string(target, static_cast<std::size_t>(n)));
  }
  ::closedir(d);
  return fds;
}

// The fds open now that were not open at `before` (a number now naming something else is new),
// "N:target" each. Looked at again — a deadline polled, nothing waited for — until exactly
// `expected` are new, or `limit` has passed; returns the last look's.
inline std::vector<std::string> fds_opened_since(
    const FdSet& before, std::size_t expected = 0,
    std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::vector<std::string> added;
    for (const auto& [fd, what] : open_fds()) {
      const auto it = before.find(fd);
      if (it == before.end() || it->second != what) {
        added.push_back(std::to_string(fd) + ":" + what);
      }
    }
    if (added.size() == expected || std::chrono::steady_clock::now() >= deadline) return added;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling a deadline
  }
}

}  // namespace evh::test
