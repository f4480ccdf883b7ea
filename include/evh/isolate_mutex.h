// evh/isolate_mutex.h — a lock that knows which isolate holds it.
//
// The problem it solves: an isolate killed while holding an ordinary mutex leaves it locked for
// ever, and every other isolate that needs it hangs (a Rust mutex behind Dart FFI). An
// IsolateMutex is held by an isolate, not a thread. When its holder exits — killed, normal exit,
// error, runtime shutdown — the lock is released as part of the exit (SEMANTICS 9), and the next
// isolate to take it gets `Errc::owner_died` *with the lock held*: the protected state may be
// half-updated, so the taker repairs it and calls `mark_consistent()`. Unlocking without doing
// so makes the lock `not_recoverable` for everyone (the model of POSIX robust mutexes).
//
// Threads: lock, try_lock, try_lock_for, unlock and mark_consistent are for the named isolate's
// own turn (its message handler, microtask or timer callback); every build checks it, and a call
// from anywhere else returns `Errc::wrong_thread` and does nothing. The lock
// is not recursive. A waiting isolate blocks its worker thread, like any mutex; prefer
// `try_lock_for` where a bound is wanted. The mutex must not be destroyed while held or waited on.
//
// Cost: uncontended lock + unlock is two atomic read-modify-writes plus a list link in the
// holder; a contended one parks on a futex.
#pragma once

#include <evh/error.h>
#include <evh/export.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace evh {

class Isolate;

namespace detail {
struct IsolateMutexAccess;
}

class EVH_API IsolateMutex {
 public:
  IsolateMutex() noexcept = default;
  ~IsolateMutex();
  IsolateMutex(const IsolateMutex&) = delete;
  IsolateMutex& operator=(const IsolateMutex&) = delete;

  // Blocks until `self` holds the lock. Returns ok; or `Errc::owner_died` (held — see above);
  // `Errc::not_recoverable` (not held); `Errc::would_deadlock` (self already holds it);
  // `Errc::isolate_dead` (not held: self was killed with KillPriority::immediate while waiting
  // or before the call — it is unwinding and must not enter the critical section).
  Status lock(Isolate& self) noexcept;
  // As lock(), but gives up after `timeout` with `Errc::timed_out` (not held).
  Status try_lock_for(Isolate& self, std::chrono::nanoseconds timeout) noexcept;
  // Does not wait: `Errc::busy` when another isolate holds it.
  Status try_lock(Isolate& self) noexcept;
  // `Errc::not_owner` when self does not hold it.
  Status unlock(Isolate& self) noexcept;
  // After owner_died: the state is repaired. `Errc::not_owner` when self does not hold it;
  // `Errc::invalid_argument` when there was no owner_died to clear.
  Status mark_consistent(Isolate& self) noexcept;

  // Any thread; a snapshot.
  bool is_locked() const noexcept;
  Isolate* owner() const noexcept { return owner_.load(std::memory_order_acquire); }

 private:
  friend struct detail::IsolateMutexAccess;
  Status acquire(Isolate& self, std::chrono::nanoseconds timeout) noexcept;  // < 0: no limit

  std::atomic<std::uint32_t> word_{0};
  std::atomic<Isolate*> owner_{nullptr};
  // The holder's list of held locks runs through this link (touched only by the holder's turn;
  // an internal intrusive list: a plain link here, so that no library type appears in this
  // header).
  struct Link {
    Link* prev = nullptr;
    Link* next = nullptr;
  };
  Link link_;
};

}  // namespace evh
