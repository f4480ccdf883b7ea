// IsolateLife: the rarely used parts of an isolate's life, kept out of the isolate's three cache
// lines and created on first use — its ports other than the main one, the resources attached
// to it, its exit and error listeners, its pause capabilities, its pending immediate pings, and
// the IsolateMutexes it holds.
//
// Each group comes with the operations on it; IsolateImpl sequences them (kill, the drain at
// the next boundary) and keeps the hot atomics some of them update (`paused_`,
// `interrupt_`), which are passed in so that they change under the same lock as the record.
//
// Threads: the extra ports are guarded by their own spin lock (delivery to an extra port reads
// them); everything else but the held locks by `mu_`, taken by calls from any thread and by the
// exit path, which calls each resource with it held so that detach() can wait out a running
// call. The held locks are touched only by the isolate's own turn (lock, unlock, the exit).
#pragma once

#include <evh/isolate.h>
#include <evh/isolate_mutex.h>
#include <evh/message.h>

#include <atomic>
#include <boost/intrusive/list.hpp>
#include <boost/intrusive/member_value_traits.hpp>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "base/intrusive.h"
#include "isolate/isolate_impl.h"
#include "sync/spin.h"

namespace evh::detail {

class PortState;
class IsolateTimers;

// Tiny spin lock on an atomic<bool>: guards the rarely changed list of extra ports.
class FlagLock {
 public:
  explicit FlagLock(std::atomic<bool>& flag) noexcept : flag_(flag) {
    Backoff backoff;
    // acquire: pairs with the release in the destructor of the previous holder.
    while (flag_.exchange(true, std::memory_order_acquire)) backoff.snooze();
  }
  ~FlagLock() { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool>& flag_;
};

// The intrusive lists that run through public types (see base/intrusive.h).
struct IsolateResourceAccess {
  using List =
      boost::intrusive::list<IsolateResource,
                             boost::intrusive::value_traits<boost::intrusive::member_value_traits<
                                 IsolateResource, LinkNodeTraits<IsolateResource::Link>,
                                 &IsolateResource::link_, boost::intrusive::normal_link>>,
                             boost::intrusive::constant_time_size<false>>;
  static bool attached(const IsolateResource& r) noexcept { return r.attached_; }
  static void set_attached(IsolateResource& r, bool attached) noexcept { r.attached_ = attached; }
};

struct IsolateMutexAccess {
  using List =
      boost::intrusive::list<IsolateMutex,
                             boost::intrusive::value_traits<boost::intrusive::member_value_traits<
                                 IsolateMutex, LinkNodeTraits<IsolateMutex::Link>,
                                 &IsolateMutex::link_, boost::intrusive::normal_link>>,
                             boost::intrusive::constant_time_size<false>>;
  // The holder is exiting: release `m` with the owner-died mark and wake one waiter
  // (isolate_mutex.cc).
  static void release_dead(IsolateMutex& m) noexcept;
};

// Control messages: queued OOB with port PortId::none, a ControlRequest as native payload.
enum ControlKind : int { kControlPing = 1, kControlCheckExit = 2, kControlAnswerPings = 3 };

class IsolateLife {
 public:
  struct Ping {
    PortId reply;
    Message response;
  };

  explicit IsolateLife(ErrorsFatal errors_fatal) noexcept : errors_fatal_(errors_fatal) {}
  ~IsolateLife();

  // ---- ports other than the main one (timer port included)
  // Adds `port` (taking over the caller's reference) unless `closing` is set. Checked under the
  // lock: kill() sets `closing` before it takes the lock to close the ports, so either it sees
  // this port or this sees the flag.
  bool add_port(PortState* port, const std::atomic<bool>& closing);
  // Removes the port named `id` and returns it (with the record's reference), or null.
  PortState* remove_port(PortId id) noexcept;
  // Every port, with the record's references (the exit closes them).
  std::vector<PortState*> take_ports() noexcept;
  // Whether `id` is one of these ports and still open.
  bool port_open(PortId id) noexcept;
  // Whether a port other than `except` (the timer port) is open: someone can still post.
  bool has_port_other_than(PortId except) noexcept;

  // ---- attached resources
  // `Errc::isolate_dead` after the exit began; `Errc::invalid_argument` when already attached.
  Status attach(IsolateResource& resource) noexcept;
  bool detach(IsolateResource& resource) noexcept;
  // The exit: tells every resource, each unlinked first, with the lock held.
  void release_resources(Isolate& isolate, ExitReason reason) noexcept;

  // ---- listeners
  // False once the exit began (the caller tells an exit listener at once).
  bool add_listener(ListenerKind kind, PortId port);
  bool remove_listener(ListenerKind kind, PortId port) noexcept;
  // The exit: from now on nothing is added; returns the exit listeners (each told once) and
  // releases pending pings unanswered.
  std::vector<PortId> exit_listeners_at_exit() noexcept;
  // The error listeners to tell now, and whether errors are fatal.
  std::vector<PortId> error_listeners(ErrorsFatal& fatal);
  void set_errors_fatal(ErrorsFatal fatal) noexcept;

  // ---- pause capabilities; `paused` is the isolate's flag (some capability pauses it),
  // changed under the lock
  // False when `capability` already pauses the isolate.
  bool add_pause(std::uint64_t capability, std::atomic<bool>& paused);
  // How many capabilities paused the isolate before the removal, or nothing when `capability`
  // pauses nothing.
  std::optional<std::uint32_t> remove_pause(std::uint64_t capability,
                                            std::atomic<bool>& paused) noexcept;

  // ---- immediate pings; `interrupt` is the isolate's interrupt word, `bit` the ping's
  // False once the exit began (the response is released by the caller's copy).
  bool queue_ping(PortId reply, Message& response, std::atomic<std::uint8_t>& interrupt,
                  std::uint8_t bit);
  std::vector<Ping> take_pings(std::atomic<std::uint8_t>& interrupt, std::uint8_t bit) noexcept;

  // ---- IsolateMutexes held (own turn only)
  IsolateMutexAccess::List& held_locks() noexcept { return held_; }
  // The lock word the isolate's turn sleeps on, or null: set and cleared by the waiter, read by
  // an immediate kill to wake it (IsolateImpl::wake_lock_waiter). Both under lock_wait_mu(), so
  // the word (in the caller's IsolateMutex) is alive while the killer touches it.
  std::mutex& lock_wait_mu() noexcept { return lock_wait_mu_; }
  std::atomic<std::uint32_t>*& lock_wait() noexcept { return lock_wait_; }

  // ---- the mailbox's high-water mark (IsolateOptions); set at spawn, then own turn only
  struct HighWater {
    std::uint64_t mark = 0;
    MailboxHighWaterFn fn = nullptr;
    bool armed = true;  // false from a call until the depth fell to half the mark
  };
  HighWater& high_water() noexcept { return high_water_; }

  // ---- what the isolate keeps here because an idle isolate never needs it (the layout in
  // isolate_impl.h). The isolate uses them directly; each says who writes it.
  struct Microtask {
    MicrotaskFn fn;
    void* arg;
    DropFn drop;
  };
  std::atomic<MpscQueue*> oob{nullptr};  // created by the first OOB post (any thread, a CAS)
  std::vector<Microtask> microtasks;     // own turn
  // Created by the turn's first timer start (release), read by timer paths and stats (acquire).
  std::atomic<IsolateTimers*> timers{nullptr};
  std::atomic<std::uint64_t> dropped{0};     // written by the turn or the drain, read by stats
  std::atomic<std::uint32_t> exceptions{0};  // written by the turn, read by stats
  TaskRunner* runner = nullptr;  // the isolate's own runner (set at spawn, then read only)
  std::uint32_t budget = 0;      // its own budget (likewise)
  PackedFn packed = nullptr;     // a packed handler's on_packed (likewise)

 private:
  std::atomic<bool> ports_lock_{false};
  std::vector<PortState*> extra_ports_;  // guarded by ports_lock_

  std::mutex mu_;
  IsolateResourceAccess::List resources_;
  bool exited_ = false;  // the exit path has begun: attach() and add_listener() fail
  std::vector<PortId> exit_listeners_;
  std::vector<PortId> error_listeners_;
  std::vector<std::uint64_t> pauses_;  // the capabilities pausing the isolate
  std::vector<Ping> immediate_pings_;  // answered at the next safe point or boundary
  ErrorsFatal errors_fatal_;

  IsolateMutexAccess::List held_;
  HighWater high_water_;
  std::mutex lock_wait_mu_;
  std::atomic<std::uint32_t>* lock_wait_ = nullptr;  // guarded by lock_wait_mu_
};

}  // namespace evh::detail
