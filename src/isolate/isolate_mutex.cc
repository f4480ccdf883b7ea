#include <evh/isolate_mutex.h>

#include <chrono>

#include "base/assert.h"
#include "base/mono_time.h"
#include "isolate/isolate_impl.h"
#include "isolate/isolate_life.h"
#include "sync/futex.h"
#include "sync/spin.h"

namespace evh {
namespace detail {
namespace {

// The lock word. kContended means "someone may sleep on the word": an unlock that clears it
// wakes one sleeper, and a thread that has slept acquires with it set again (it cannot know
// whether others still sleep) — the classic three-state futex mutex, plus two sticky flags.
constexpr std::uint32_t kLocked = 1;
constexpr std::uint32_t kContended = 2;
constexpr std::uint32_t kOwnerDied = 4;       // set by an exit; cleared by mark_consistent()
constexpr std::uint32_t kNotRecoverable = 8;  // terminal

constexpr int kSpins = 128;
// The word's bits from here up count wake-ups by immediate kills: a kill adds one before it
// wakes the word's sleepers, so that a waiter about to sleep on the old value does not sleep.
// Every update of the word keeps them (they wrap harmlessly).
constexpr std::uint32_t kWakeTick = 1u << 8;

// The isolate's waits on `word` for the scope, so that an immediate kill can wake it.
class LockWaitScope {
 public:
  LockWaitScope(IsolateLife& life, std::atomic<std::uint32_t>& word) noexcept : life_(life) {
    std::lock_guard lock(life_.lock_wait_mu());
    life_.lock_wait() = &word;
  }
  ~LockWaitScope() {
    std::lock_guard lock(life_.lock_wait_mu());
    life_.lock_wait() = nullptr;
  }
  LockWaitScope(const LockWaitScope&) = delete;
  LockWaitScope& operator=(const LockWaitScope&) = delete;

 private:
  IsolateLife& life_;
};

}  // namespace

void IsolateMutexAccess::release_dead(IsolateMutex& m) noexcept {
  m.owner_.store(nullptr, std::memory_order_relaxed);
  std::uint32_t w = m.word_.load(std::memory_order_relaxed);
  // release: the next holder sees what the dead one wrote (half-updated as it may be).
  while (!m.word_.compare_exchange_weak(w, (w | kOwnerDied) & ~(kLocked | kContended),
                                        std::memory_order_release, std::memory_order_relaxed)) {
  }
  if ((w & kContended) != 0) futex_wake(m.word_, 1);
}

void IsolateImpl::wake_lock_waiter() noexcept {
  // life(), not life_if_any(): the record (made here if need be, by one CAS either side) is the
  // one whose mutex the waiter registers under, and that mutex orders this with the waiter. If
  // the waiter registered first, this sees the word; if this went first, the kill flag set
  // before it is visible to the waiter's look after its registration.
  IsolateLife& life = this->life();
  std::lock_guard lock(life.lock_wait_mu());
  std::atomic<std::uint32_t>* word = life.lock_wait();
  if (word == nullptr) return;
  word->fetch_add(kWakeTick, std::memory_order_relaxed);
  futex_wake(*word, 1 << 30);  // the others sleeping on it look again and sleep again
}

void IsolateImpl::release_held_locks() noexcept {
  IsolateLife* life = life_if_any();
  if (life == nullptr) return;
  auto& held = life->held_locks();
  while (!held.empty()) {
    IsolateMutex& m = held.front();
    held.pop_front();
    IsolateMutexAccess::release_dead(m);
  }
}

}  // namespace detail

using detail::IsolateImpl;
using detail::kContended;
using detail::kLocked;
using detail::kNotRecoverable;
using detail::kOwnerDied;

IsolateMutex::~IsolateMutex() {
  EVH_ASSERT((word_.load(std::memory_order_relaxed) & kLocked) == 0,
             "an IsolateMutex destroyed while held");
}

bool IsolateMutex::is_locked() const noexcept {
  return (word_.load(std::memory_order_acquire) & kLocked) != 0;
}

Status IsolateMutex::lock(Isolate& self) noexcept {
  return acquire(self, std::chrono::nanoseconds(-1));
}

Status IsolateMutex::try_lock_for(Isolate& self, std::chrono::nanoseconds timeout) noexcept {
  if (timeout.count() < 0) return Errc::invalid_argument;
  return acquire(self, timeout);
}

Status IsolateMutex::try_lock(Isolate& self) noexcept {
  Status s = acquire(self, std::chrono::nanoseconds(0));
  return s.error() == Errc::timed_out ? Status{Errc::busy} : s;
}

Status IsolateMutex::acquire(Isolate& self, std::chrono::nanoseconds timeout) noexcept {
  IsolateImpl& me = IsolateImpl::of(self);
  if (!me.owns_turn()) return Errc::wrong_thread;
  if (owner_.load(std::memory_order_relaxed) == &self) return Errc::would_deadlock;
  if (me.interrupt_requested()) return Errc::isolate_dead;
  const bool bounded = timeout.count() >= 0;
  // Saturated: a timeout past the end of time waits as long as lock() does.
  const auto deadline =
      detail::mono_after(std::chrono::steady_clock::now(), bounded ? timeout : timeout.zero());
  bool slept = false;
  int spins = 0;
  std::uint32_t w = word_.load(std::memory_order_relaxed);
  for (;;) {
    if ((w & kNotRecoverable) != 0) return Errc::not_recoverable;
    if ((w & kLocked) == 0) {
      const std::uint32_t want = w | kLocked | (slept ? kContended : 0);
      // acquire: pairs with the release of the previous holder's unlock (or exit).
      if (word_.compare_exchange_weak(w, want, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        break;
      }
      continue;
    }
    if (bounded && timeout.count() == 0) return Errc::timed_out;
    if (spins < detail::kSpins) {
      ++spins;
      detail::cpu_relax();
      w = word_.load(std::memory_order_relaxed);
      continue;
    }
    if ((w & kContended) == 0) {
      if (!word_.compare_exchange_weak(w, w | kContended, std::memory_order_relaxed)) continue;
      w |= kContended;
    }
    auto slice = std::chrono::nanoseconds(-1);  // no limit: an immediate kill wakes us
    if (bounded) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= left.zero()) return Errc::timed_out;
      slice = std::chrono::duration_cast<std::chrono::nanoseconds>(left);
    }
    {
      // Registered under the life record's mutex, then the kill flag is looked at: a kill
      // either finds the word registered (and wakes it) or set its flag before this look
      // (IsolateImpl::wake_lock_waiter).
      detail::LockWaitScope waiting(me.life(), word_);
      if (me.interrupt_requested()) return Errc::isolate_dead;
      detail::futex_wait(word_, w, slice);
    }
    slept = true;
    if (me.interrupt_requested()) return Errc::isolate_dead;
    w = word_.load(std::memory_order_relaxed);
  }
  owner_.store(&self, std::memory_order_release);
  me.life().held_locks().push_front(*this);
  return (w & kOwnerDied) != 0 ? Status{Errc::owner_died} : Status{};
}

Status IsolateMutex::unlock(Isolate& self) noexcept {
  IsolateImpl& me = IsolateImpl::of(self);
  if (!me.owns_turn()) return Errc::wrong_thread;
  if (owner_.load(std::memory_order_relaxed) != &self) return Errc::not_owner;
  auto& held = me.life().held_locks();
  held.erase(held.iterator_to(*this));
  owner_.store(nullptr, std::memory_order_relaxed);
  std::uint32_t w = word_.load(std::memory_order_relaxed);
  std::uint32_t next = 0;
  do {
    next = w & ~(kLocked | kContended);
    // Unlocked without repair: nobody can trust the state any more.
    if ((w & kOwnerDied) != 0) next = (next & ~kOwnerDied) | kNotRecoverable;
    // release: the next holder sees this holder's writes.
  } while (
      !word_.compare_exchange_weak(w, next, std::memory_order_release, std::memory_order_relaxed));
  if ((next & kNotRecoverable) != 0) {
    detail::futex_wake(word_, 1 << 30);  // every waiter learns it
  } else if ((w & kContended) != 0) {
    detail::futex_wake(word_, 1);
  }
  return {};
}

Status IsolateMutex::mark_consistent(Isolate& self) noexcept {
  if (!IsolateImpl::of(self).owns_turn()) return Errc::wrong_thread;
  if (owner_.load(std::memory_order_relaxed) != &self) return Errc::not_owner;
  if ((word_.load(std::memory_order_relaxed) & kOwnerDied) == 0) return Errc::invalid_argument;
  word_.fetch_and(~kOwnerDied, std::memory_order_relaxed);
  return {};
}

}  // namespace evh
