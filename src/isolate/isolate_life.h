// IsolateLife: the rarely used parts of an isolate's life, kept out of the isolate's four cache
// lines and created on first use — attached resources, exit and error listeners, pause
// capabilities and the IsolateMutexes the isolate holds.
#pragma once

#include <evh/isolate.h>
#include <evh/isolate_mutex.h>
#include <evh/message.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "sync/spin.h"

namespace evh::detail {

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

// Control messages: queued OOB with port PortId::none, a ControlRequest as native payload.
enum ControlKind : int { kControlPing = 1, kControlCheckExit = 2, kControlAnswerPings = 3 };

class PortState;

struct IsolateLife {
  // The isolate's open ports other than its main port (timer port included), guarded by the
  // isolate's ports_lock_ (not `mu`): delivery to an extra port looks here.
  std::vector<PortState*> extra_ports;

  // Guards everything below except `held`. Taken by attach/detach (any thread) and by the exit
  // path, which calls each resource with it held so that detach() can wait out a running call.
  std::mutex mu;
  IsolateResource* resources = nullptr;  // intrusive list of attached resources
  bool exited = false;                   // the exit path has begun: attach() fails

  // Control plane.
  std::vector<PortId> exit_listeners;
  std::vector<PortId> error_listeners;
  std::vector<std::uint64_t> pauses;  // the capabilities pausing the isolate
  struct Ping {
    PortId reply;
    Message response;
  };
  std::vector<Ping> immediate_pings;  // answered at the next safe point or boundary
  bool errors_fatal = false;

  // The IsolateMutexes the isolate holds (intrusive list through the mutexes). Touched only by
  // the isolate's own turn — lock, unlock and the exit — so it needs no lock.
  IsolateMutex* held = nullptr;
};

}  // namespace evh::detail
