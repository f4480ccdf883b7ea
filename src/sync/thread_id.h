// The calling thread's kernel thread id, read once per thread and cached: a cheap identity for
// "which thread runs this isolate's turn" checks, unique among the threads alive at any moment.
//
// Threads: any thread; each reads its own cached value (no shared state).
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace evh::detail {

inline std::int32_t this_thread_id() noexcept {
  thread_local std::int32_t id = 0;  // 0: not read yet (no thread has tid 0)
  if (id == 0) [[unlikely]]
    id = static_cast<std::int32_t>(::syscall(SYS_gettid));
  return id;
}

}  // namespace evh::detail
