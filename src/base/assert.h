// EVH_ASSERT(cond, "why"): checked in debug and sanitizer builds, compiled out in release.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace evh::detail {
[[noreturn]] inline void assert_fail(const char* cond, const char* why, const char* file,
                                     int line) noexcept {
  std::fprintf(stderr, "evh: assertion failed at %s:%d: %s (%s)\n", file, line, cond, why);
  std::abort();
}
}  // namespace evh::detail

#if defined(EVH_DEBUG_CHECKS)
#define EVH_ASSERT(cond, why)                                                \
  do {                                                                       \
    if (!(cond)) ::evh::detail::assert_fail(#cond, why, __FILE__, __LINE__); \
  } while (0)
#else
#define EVH_ASSERT(cond, why) \
  do {                        \
  } while (0)
#endif
