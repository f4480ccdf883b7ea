// Allocation-failure injection (issue 14): a test-only seam that makes the Nth of the library's
// own allocation sites on one thread fail as if the heap were exhausted.
//
// The allocations evh makes for a call that can report a failure — mailbox and receiver queue
// blocks, the OOB queue, isolate and port records (the slabs), the port map's tables, an
// isolate's extra-port list and timer record, a receiver, the event handler's registration
// records — first pass one of these sites. Disarmed (always, outside tests) a site costs one
// thread-local load and a branch, on a path that is about to allocate anyway. A test arms it on
// its own thread: the Nth site that thread passes from then on fails, whatever the heap would
// have said, and the call takes its failure path (Errc-free: ENOMEM as a std::error_code).
//
// Threads: the countdown is per thread, so a test can aim at the call it makes, and the
// library's own threads are touched only when a test arms them (e.g. from a fake poller's
// callback on the event handler's thread).
#pragma once

#include <cstdint>
#include <new>

namespace evh::detail {

// This thread's countdown: 0 disarmed; n > 0: the nth site from now fails.
extern thread_local std::uint64_t alloc_fault_countdown;

// A site that reports failure by its return value: true means "fail this allocation".
inline bool alloc_site_fails() noexcept {
  std::uint64_t& left = alloc_fault_countdown;
  if (left == 0) [[likely]]
    return false;
  return --left == 0;
}

// A site whose callers handle std::bad_alloc (what the allocation itself would throw).
inline void alloc_site() {
  if (alloc_site_fails()) throw std::bad_alloc();
}

// A path that cannot report the failure (README, "Guarantees and limits" lists them): says so on
// stderr and aborts, as the std::bad_alloc escaping a noexcept function did before.
[[noreturn]] void fatal_out_of_memory(const char* what) noexcept;

// Tests: arms this thread's nth site from now (0 disarms).
inline void arm_alloc_fault(std::uint64_t nth) noexcept {
  alloc_fault_countdown = nth;
}
// Tests: disarms; true when the armed failure happened (the countdown reached its site).
inline bool disarm_alloc_fault() noexcept {
  const bool fired = alloc_fault_countdown == 0;
  alloc_fault_countdown = 0;
  return fired;
}

}  // namespace evh::detail
