#include "base/alloc_fault.h"

#include <cstdio>
#include <cstdlib>

namespace evh::detail {

thread_local std::uint64_t alloc_fault_countdown = 0;

void fatal_out_of_memory(const char* what) noexcept {
  std::fprintf(stderr, "evh: out of memory for %s, which cannot report it; aborting\n", what);
  std::abort();
}

}  // namespace evh::detail
