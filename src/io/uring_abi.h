// What UringPoller's files share: of the kernel's io_uring ABI, the raw system calls (evh links
// no liburing, io/uring_poller.h says why) and the values newer than the uapi header of Debian 12
// (linux-libc-dev 6.1), each in one place; and how a request's user_data names it. Private to
// src/io/uring_*.cc.
#pragma once

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <system_error>

namespace evh::detail::uring {

// IORING_OP_WAITID (Linux 6.7). Debian 12's <linux/io_uring.h> (linux-libc-dev 6.1) and its
// liburing 2.3 predate it, so the number is the kernel's uapi one — after SENDMSG_ZC (48) and
// READ_MULTISHOT (49) — and the SQE is filled by hand in arm_waitid(). The probe at setup says
// whether this kernel has it.
constexpr std::uint8_t kOpWaitid = 50;
static_assert(IORING_OP_SENDMSG_ZC == 48, "the uapi's opcode numbering, which WAITID follows");
constexpr std::uint32_t kPidfdIdType = 3;  // P_PIDFD (Linux 5.4), waitid's idtype for a pidfd

inline std::error_code errno_code(int e) noexcept {
  return {e, std::generic_category()};
}

// io_uring_enter's flag for an absolute wait timeout, newer (Linux 6.12) than the uapi header of
// Debian 12 (6.1): the value of include/uapi/linux/io_uring.h.
#ifdef IORING_ENTER_ABS_TIMER
constexpr unsigned kEnterAbsTimer = IORING_ENTER_ABS_TIMER;
#else
constexpr unsigned kEnterAbsTimer = 1u << 5;
#endif

inline int sys_register(int fd, unsigned op, void* arg, unsigned n) noexcept {
  return static_cast<int>(::syscall(__NR_io_uring_register, fd, op, arg, n));
}

// user_data: the top two bits say what a completion is for. A poll's (or a WAITID's) carries the
// fd (low 32 bits) and the generation of the request (30 bits), so a completion of a request
// that a remove or a modify replaced is recognised as stale. A read's carries the fd and its
// slot in UringPoller::reads_, which is not reused before the read's completion. (Kind 1 was
// the TIMEOUT's, before a wait's limit became the timeout of its io_uring_enter.)
constexpr int kKindShift = 62;
constexpr std::uint64_t kKindPoll = 0;
constexpr std::uint64_t kKindRead = 1;
constexpr std::uint64_t kKindWake = 2;
constexpr std::uint64_t kKindIgnore = 3;  // the results of ASYNC_CANCEL
constexpr std::uint32_t kMaxGen = (1u << 30) - 1;

constexpr std::uint64_t kind_of(std::uint64_t ud) noexcept {
  return ud >> kKindShift;
}
constexpr std::uint64_t poll_ud(int fd, std::uint32_t gen) noexcept {
  return (std::uint64_t{gen} << 32) | static_cast<std::uint32_t>(fd);
}
constexpr std::uint64_t read_ud(int fd, std::uint32_t slot) noexcept {
  return (kKindRead << kKindShift) | (std::uint64_t{slot} << 32) | static_cast<std::uint32_t>(fd);
}
constexpr std::uint32_t read_slot_of(std::uint64_t ud) noexcept {
  return static_cast<std::uint32_t>(ud >> 32) & kMaxGen;
}
constexpr std::uint64_t kWakeUd = kKindWake << kKindShift;
constexpr std::uint64_t kIgnoreUd = kKindIgnore << kKindShift;

}  // namespace evh::detail::uring
