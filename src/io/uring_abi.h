// What UringPoller's two files share of the kernel's io_uring ABI: the raw system calls (evh
// links no liburing, io/uring_poller.h says why) and the values newer than the uapi header of
// Debian 12 (linux-libc-dev 6.1), each in one place. Private to src/io/uring_*.cc.
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

}  // namespace evh::detail::uring
