// IsolateImpl: an isolate's mailbox, its turn and its state machine — and the hub its other
// parts hang from: its timers (IsolateTimers, isolate_timers.h) and its rarely used life record
// (IsolateLife, isolate_life.h), each created on first use. The runtime that owns it is reached
// only through IsolateHost (isolate_host.h).
//
// Files: isolate_turn.cc (enqueue, schedule, the run loop, delivery, microtasks),
// isolate_life.cc (ports, kill, the drain at the next boundary, the exit rule, resources),
// isolate_control.cc (pings, pauses, listeners, control messages), isolate_timers.cc (the timer
// glue), isolate_api.cc (the public face).
//
// State (`state_`): idle → scheduled (by the producer that finds the mailbox idle after its push,
// or by resume()/destroy()) → running a turn on the runner → idle again, or → dead (terminal,
// after destroy() has drained the queues). Exactly one MessageHandlerTask exists per isolate:
// the isolate itself is the Task, and it is queued on its runner only by the thread that moved
// the state from idle to scheduled.
//
// The lost-wakeup argument: a producer does CAS(tail.pos) [seq_cst] then load(state_) [seq_cst];
// the finishing turn does store(state_, idle) [seq_cst] then load(tail.pos) [seq_cst]. In the
// single total order of seq_cst operations one of the two loads sees the other's write, so
// either the producer sees idle and schedules, or the turn sees the message and carries on.
// pause/resume and destroy use the same pattern with `paused_` and `dead_requested_`.
//
// References (`refs_`): one for the runtime's registry until destroy(), one per PortState
// naming it (ports retain their target; a closed port lives on while SendPorts name it), one per
// IsolateRef, and one while a turn is queued or running (taken by whoever schedules it, dropped
// at the end of the turn).
//
// Threads: methods documented "own turn" run only on the thread running the isolate's turn;
// the others are thread-safe.
#pragma once

#include <evh/isolate.h>

#include <atomic>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "base/mpsc_queue.h"
#include "isolate/isolate_host.h"
#include "port/port.h"
#include "sync/thread_id.h"

namespace evh::detail {

class IsolateTimers;
class IsolateLife;

// Which listeners (exit or error) a control-plane call is about.
enum class ListenerKind : std::uint8_t { exit, error };

class IsolateImpl final : public Isolate, public Task, public PortTarget {
 public:
  IsolateImpl(IsolateHost& host, TaskRunner& runner, IsolateHandler handler,
              const IsolateOptions& options, std::uint32_t budget);
  ~IsolateImpl();  // via release() only; the memory goes back to the host

  static IsolateImpl& of(Isolate& i) noexcept { return static_cast<IsolateImpl&>(i); }
  static const IsolateImpl& of(const Isolate& i) noexcept {
    return static_cast<const IsolateImpl&>(i);
  }

  // Task
  void run() noexcept override;
  // PortTarget
  void retain() noexcept override { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept override;
  bool enqueue(Message&& message, Priority priority) noexcept override;
  std::size_t enqueue_batch(std::span<Message> messages, Priority priority) noexcept override;
  std::size_t enqueue_packed(PortId port, const std::byte* data, std::uint32_t each,
                             std::size_t count, Priority priority) noexcept override;
  // The push, and the claim of the turn when the isolate was idle (its reference taken); the
  // runner's post() is left to finish_enqueue(), outside the caller's lock.
  Enqueued enqueue_under_lock(Message&& message, Priority priority) noexcept override;
  void finish_enqueue() noexcept override;

  // Sets the main port's id (once, by spawn, before anyone can post). The isolate holds no
  // reference to the main port's PortState (that would be a cycle: ports retain their target);
  // it keeps the port's open/closed state in `main_closed_` for delivery to check.
  void set_main_port(PortId id) noexcept { main_port_id_ = id; }

  // ---- the public API's calls (any thread unless noted)
  PortId main_port_id() const noexcept { return main_port_id_; }
  void* data() const noexcept { return data_; }
  IsolateHost& host() const noexcept {
    return *reinterpret_cast<IsolateHost*>(host_word_ & ~std::uintptr_t{kOwnRunner});
  }
  IsolateStats stats() const noexcept;
  bool is_dead() const noexcept { return closing_.load(std::memory_order_acquire); }
  // Control plane (isolate_control.cc).
  PauseCapability pause(PauseCapability capability) noexcept;
  Status resume(PauseCapability capability) noexcept;
  Status ping(PortId reply, Message response, ControlPriority priority) noexcept;
  Status add_listener(ListenerKind kind, PortId port) noexcept;
  Status remove_listener(ListenerKind kind, PortId port) noexcept;
  void set_errors_fatal(ErrorsFatal fatal) noexcept;
  bool interrupt_requested() const noexcept {
    return interrupt_.load(std::memory_order_acquire) != 0;
  }
  Status handle_interrupts() noexcept;  // own turn
  // Life (isolate_life.cc).
  void kill(KillPriority priority, ExitReason reason = ExitReason::killed) noexcept;
  void destroy() noexcept { kill(KillPriority::immediate); }
  // Blocks until the queues have been drained after destroy().
  void wait_dead() noexcept;
  Status attach(IsolateResource& resource) noexcept;
  bool detach(IsolateResource& resource) noexcept;
  Result<PortId> open_port();  // own turn
  Status close_port(PortId port) noexcept;
  Status schedule_microtask(MicrotaskFn fn, void* arg, DropFn drop);  // own turn
  // Timers (isolate_timers.cc), own turn.
  Status start_timer(Timer& t, std::int64_t delay_ns, std::int64_t period_ns, TimerFn fn,
                     Slack slack);
  Status start_timer_at(Timer& t, std::int64_t deadline_ns, std::int64_t period_ns, TimerFn fn,
                        Slack slack);
  std::int64_t cached_now_ns() noexcept;
  Status cancel_timer(Timer& t) noexcept;
  TimerStats timer_stats() const noexcept;  // any thread: a snapshot

  // ---- for the isolate's parts (its timers, its life record, IsolateMutex)
  // True on the thread running this isolate's turn (a message, a microtask, a timer callback):
  // the check every "own turn" call makes, in every build. One relaxed load and a thread-local
  // read; another thread never sees its own id here (it clears what it stored).
  bool owns_turn() const noexcept {
    return running_on_.load(std::memory_order_relaxed) == this_thread_id();
  }
  bool kill_requested() const noexcept {
    return (interrupt_.load(std::memory_order_acquire) & kInterruptKill) != 0;
  }
  // The turn should stop before its next callback: the isolate was killed.
  bool stop_requested() const noexcept { return dead_requested_.load(std::memory_order_acquire); }
  // Another task waits for this isolate's runner: a long timer loop should give way.
  bool runner_busy() const noexcept { return runner().work_is_waiting(); }
  // A message (or control request) waits that this turn could handle now.
  bool has_work() noexcept;
  // An exception escaped a callback of this isolate (call from inside the catch).
  void report_exception() noexcept;
  void run_microtasks() noexcept;
  // Changes once per message (and per timer callback): what cached_now() is keyed on.
  std::uint64_t message_stamp() const noexcept { return handled_.load(std::memory_order_relaxed); }
  // Queues a message to one of this isolate's own ports (a self-post), bypassing the map.
  void post_to_self(PortId port, Message message, Priority priority) noexcept;
  // The rarely used record, created on first use; null until then (life_if_any).
  IsolateLife& life() noexcept;      // made on first use; out of memory ends the process
  IsolateLife* try_life() noexcept;  // the same, or null when out of memory
  IsolateLife* life_if_any() const noexcept { return life_.load(std::memory_order_acquire); }
  // Wakes this isolate's turn if it sleeps on an IsolateMutex (an immediate kill).
  void wake_lock_waiter() noexcept;

  // The runner and budget (messages per turn) the isolate was spawned with.
  TaskRunner& runner() const noexcept;
  std::uint32_t budget() const noexcept;

 private:
  enum : std::uint32_t { kIdle = 0, kScheduled = 1, kDead = 2 };
  // spawn_bits_: the isolate has a runner, a budget, of its own (in the life record), or a
  // high-water mark to watch.
  static constexpr std::uint8_t kOwnRunner = 1;
  static constexpr std::uint8_t kOwnBudget = 2;
  static constexpr std::uint8_t kWatchDepth = 4;
  static constexpr std::uint8_t kBatchHandler = 8;    // handler_.batch is set, not handler_.one
  static constexpr std::uint8_t kPackedHandler = 16;  // and life().packed (with kBatchHandler)
  static constexpr std::uint8_t kInterruptKill = 1;
  static constexpr std::uint8_t kInterruptPing = 2;
  // Moves idle → scheduled and queues the turn; false when not idle (already scheduled or dead).
  bool try_schedule() noexcept;
  // The first half of try_schedule(): idle → scheduled, and the turn's reference; the caller
  // then posts the isolate to its runner.
  bool claim_turn() noexcept;
  // Creates it (and the life record) on first use; null when either cannot be allocated.
  MpscQueue* oob_queue() noexcept;
  MpscQueue* oob_if_any() const noexcept;
  IsolateTimers* timers_if_any() const noexcept;
  // After the turn has stored kIdle it no longer owns the heads (another thread may already be
  // running the next turn), so it compares the tails with head positions it noted before.
  bool has_work_since(std::uint64_t normal_head, std::uint64_t oob_head) const noexcept;
  // A message taken from a queue, to the handler (the main port) or where it goes.
  void deliver(Message& message) noexcept;
  void deliver_other(Message& message) noexcept;  // not to the open main port
  // The handler, then the microtasks and what the message changed (timers, the exit rule).
  void handle(Message& message) noexcept;
  // A batch handler's turn: takes up to `max` (1..kMaxBatch) messages to the open main port that
  // are written one after another at the head, hands them to the handler in one call, then what
  // handle() does after it; returns how many it took (0: none there, for queue_pop to say why).
  std::uint32_t handle_batch(std::uint32_t max, bool first_of_turn) noexcept;
  // A packed handler's turn: the inline byte messages of the record at the head, up to `max`,
  // in place to on_packed, then what handle() does after it; how many (0: not such a record).
  std::uint32_t handle_packed(std::uint32_t max, bool first_of_turn) noexcept;
  // The end of handle(), once per message or batch: microtasks, timers, the exit rule.
  void after_handler() noexcept;
  // After a turn took `taken` normal messages: the depth it saw, for the peak and the high-water
  // mark.
  // `not_yet_taken`: of those, how many the head has not moved past yet (a packed handler's,
  // read in place).
  void note_depth(bool first_of_turn, std::uint32_t taken = 1,
                  std::uint32_t not_yet_taken = 0) noexcept;
  void check_high_water(std::uint64_t depth) noexcept;
  void rearm_high_water() noexcept;
  bool is_open_port(PortId id) noexcept;
  // Timers: created on the first start; the start's error otherwise.
  Result<IsolateTimers*> timers_for_start(TimerFn fn) noexcept;
  Result<IsolateTimers*> timers_or_create() noexcept;
  void after_timers_changed() noexcept;
  // Control plane (isolate_control.cc): a control message (port PortId::none) delivered; the
  // exit rule (no open port, no live timer: exit normally); telling listeners.
  void on_control_message(Message& message) noexcept;
  void send_control(int kind, PortId reply, Message response) noexcept;
  void exit_if_unreachable() noexcept;
  void answer_immediate_pings() noexcept;
  void tell_exit_listeners(ExitReason reason) noexcept;
  void tell_error_listeners(std::exception_ptr error) noexcept;
  void finish_dead() noexcept;
  void release_held_locks() noexcept;  // isolate_mutex.cc
  void close_all_ports() noexcept;
  bool close_main_port() noexcept;
  template <class T>
  static void bump(std::atomic<T>& counter, std::type_identity_t<T> by = 1) noexcept {
    // Only the thread running the turn writes the counters; others read them.
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  // Layout: 192 bytes, one 64-byte line per group (the class is 64-byte aligned). An idle
  // isolate holds only these three lines (and its main port): what it never needs until it is
  // used — an OOB queue, microtasks, timers, the dropped and exception counts, a runner or budget
  // of its own — is in the life record, created on first use.
  //  0: the bases (the PortTarget vptr is read by every post), and what the turn reads per
  //     message and nobody writes after spawn.
  //  1: what producers write on every post (the normal queue's tail, the state, the wakeups), and
  //     fields that nobody reads per message.
  //  2: the consumer's: its queue head, its flags and counters.
  // A field the consumer reads per message on line 1 would move that line between cores on every
  // post (measured: it halved port_flood); the turn reads the runner and the budget from the
  // host (or the life record) once per turn.
  // The host's address; bit 0: kOwnRunner (so that a producer's runner() reads line 0 only).
  std::uintptr_t host_word_;
  // The embedder's handler: its per-message or its batch form (kBatchHandler in spawn_bits_).
  union HandlerFn {
    MessageFn one;
    BatchFn batch;
  } handler_;
  void* user_;
  PortId main_port_id_ = PortId::none;
  void* data_;  // never written after spawn

  alignas(64) QueueTail normal_tail_;
  std::atomic<std::uint32_t> state_{kIdle};
  std::atomic<std::uint32_t> refs_{1};     // the registry's reference; changes once per turn
  std::atomic<std::uint64_t> wakeups_{0};  // written by the producer that wakes the isolate
 public:
  // The runtime's registry of live isolates (a list through this hook, guarded by the
  // runtime's registry mutex). safe_link: is_linked() tells whether it is still registered.
  using RegistryHook =
      boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>>;
  RegistryHook registry_hook;

 private:
  DropFn destroy_user_;  // the handler's; called once, at the exit or when the memory goes

  alignas(64) QueueHead normal_head_;
  std::atomic<std::uint64_t> handled_{0};
  std::atomic<IsolateLife*> life_{nullptr};  // created on first use
  // The deepest the mailbox was seen by a turn (saturates at 2^32 - 1); written by the turn.
  std::atomic<std::uint32_t> mailbox_peak_{0};
  // The thread id (sync/thread_id.h) of the thread running the turn, 0 between turns: written
  // at the start and end of each turn, read by owns_turn().
  std::atomic<std::int32_t> running_on_{0};
  // Turns that ended with work left. The turns are the wakeups plus the yields: each turn is
  // queued by one or the other (or run by a kill of an idle isolate, counted as a wakeup).
  std::atomic<std::uint32_t> yields_{0};
  std::atomic<bool> paused_{false};           // a pause capability is held (the life record's)
  std::atomic<bool> closing_{false};          // destroy() has begun: its ports are closing
  std::atomic<std::uint8_t> exit_reason_{0};  // ExitReason, set by the first kill
  std::atomic<bool> dead_requested_{false};   // ports closed; the next turn boundary drains
  std::atomic<bool> main_closed_{false};
  std::atomic<std::uint8_t> interrupt_{0};  // kInterrupt* bits: what handle_interrupts() does
  bool timers_dirty_ = false;    // a timer changed this message: hand the next wakeup over
  std::uint8_t spawn_bits_ = 0;  // kOwn* bits: set at spawn, then only read
};

}  // namespace evh::detail
