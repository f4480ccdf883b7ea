// evh/isolate.h — an isolate: a single-threaded unit of execution with a mailbox and ports.
//
// An isolate handles one message at a time, never on two threads at once (SEMANTICS 5). It is
// scheduled on its `TaskRunner` only when its mailbox goes from empty to non-empty (SEMANTICS 6),
// so an idle isolate costs no thread and no CPU. A running isolate handles out-of-band messages
// first, then normal ones, and gives way after `budget` messages (or a time slice) so that other
// isolates on the same runner progress (SEMANTICS 7). The isolate's microtasks are drained after
// every message (after every batch for a batch handler, `BatchFn`).
//
// Lifetime: an isolate lives from `Runtime::spawn()` until `destroy()` (or runtime shutdown);
// dropping every `IsolateRef` does not destroy it — it lives while it can receive. After
// `destroy()`, its ports are closed, queued messages are released exactly once, and the memory
// is freed when the last `IsolateRef`/`SendPort` naming it goes away.
//
// Threads: methods marked "any thread" are thread-safe. Methods marked "own turn" may only be
// called from inside the isolate's own callbacks (message handler, microtask or timer callback),
// on the thread running them; every build checks it with one compare, and a call from anywhere
// else returns `Errc::wrong_thread` and does nothing.
#pragma once

#include <evh/clock.h>
#include <evh/error.h>
#include <evh/export.h>
#include <evh/message.h>
#include <evh/task_runner.h>
#include <evh/timer.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace evh {

class Isolate;
class Runtime;

namespace detail {
class IsolateImpl;
struct IsolateResourceAccess;
void retain(Isolate* isolate) noexcept;
void release(Isolate* isolate) noexcept;
}  // namespace detail

// The embedder's message callback. It may throw: the exception is caught at the worker boundary,
// counted in `IsolateStats::exceptions`, reported through `RuntimeOptions::on_uncaught`, and the
// isolate goes on with its next message.
using MessageFn = void (*)(Isolate& self, Message& message, void* user);
using MicrotaskFn = void (*)(Isolate& self, void* arg);
// Releases a microtask's argument when the microtask will never run (its isolate was destroyed).
using DropFn = void (*)(void* arg) noexcept;

// The batch form of the message callback: the messages in `messages` (1 to kMaxBatch of them),
// in the order a per-message handler would get them. It is for a handler whose work per message
// is small next to a call (a runtime copying values into its heap, a counter, a forwarder): one
// call, one microtask drain, one budget check and one depth note a batch instead of a message.
//   - Which messages go together: normal messages to the isolate's main port (while it is open)
//     that are already in the mailbox, one after another, up to kMaxBatch and to what the turn's
//     budget has left; a message to another port, an OOB message, or one not yet written when
//     the turn looks ends the batch and comes in a span of its own.
//   - FIFO per sender holds (the spans follow the mailbox's order); each message is the
//     handler's as in MessageFn: it may take a native payload (`take_native()`) or move the
//     message on; whatever it leaves in any of them is released, exactly once, on this thread
//     after it returns — also when it throws (the exception is reported once; the messages it
//     had not got to are released, not delivered again).
//   - Between two batches, as between two messages: microtasks run, a kill or pause takes
//     effect, OOB messages and pings go first. Inside one, a handler that wants a kill to stop
//     it mid-batch checks `Isolate::interrupt_requested()` / `handle_interrupts()` as a long
//     message does. `IsolateStats::handled` counts messages; `cached_now()` is read once a batch.
using BatchFn = void (*)(Isolate& self, std::span<Message> messages, void* user);
inline constexpr std::size_t kMaxBatch = 64;

// What a packed handler (IsolateHandler::on_packed) is given: inline byte messages to the main
// port, read in place in the mailbox (no Message is built for them). They are the messages of one
// record there: one message, or a run that one batched post wrote (`post_bytes_batch`,
// `post_u64_batch`, `post_batch` of like messages), so they all have the same size. Valid only
// during the call; the bytes are read-only.
class PackedMessages {
 public:
  PackedMessages(const std::byte* data, std::uint32_t count, std::uint32_t each,
                 std::uint32_t stride) noexcept
      : data_(data), count_(count), each_(each), stride_(stride) {}
  std::uint32_t size() const noexcept { return count_; }  // messages: 1 or more
  std::uint32_t each() const noexcept { return each_; }   // bytes a message: 1..kInlineBytes
  // Message i's bytes are at data() + i * stride(): `each` rounded up to 8.
  const std::byte* data() const noexcept { return data_; }
  std::uint32_t stride() const noexcept { return stride_; }
  std::span<const std::byte> operator[](std::size_t i) const noexcept {
    return {data_ + i * stride_, each_};
  }
  // Message i as `Message::as_u64()` would read it: its 8 bytes, or 0 when each() is not 8.
  std::uint64_t u64(std::size_t i) const noexcept {
    std::uint64_t v = 0;
    if (each_ == sizeof v) std::memcpy(&v, data_ + i * stride_, sizeof v);
    return v;
  }

 private:
  const std::byte* data_;
  std::uint32_t count_;
  std::uint32_t each_;
  std::uint32_t stride_;
};

// The packed form of the batch callback, beside `on_batch`: it is for a handler that reads small
// values (a runtime's integers, samples, tokens) and wants them without a Message each — the
// receiving side of a packed post.
//   - Which messages come packed: inline byte messages (size 1..kInlineBytes) to the open main
//     port, up to what the turn's budget has left, when the mailbox holds them as one record (a
//     batched post's run, or one message). Every other message — heap bytes, a native object,
//     another port, an empty one — and sometimes an inline one (a turn's first look at a new
//     mailbox) comes through `on_batch` as a Message. A handler treats both alike.
//   - FIFO per sender, budget, microtasks, kills, pauses and pings between calls, the exception
//     rule and the counts are the batch form's (above). Inline bytes own nothing: nothing is
//     released after the call.
using PackedFn = void (*)(Isolate& self, PackedMessages messages, void* user);

// Exactly one of `on_message` and `on_batch` is set (spawn says `Errc::invalid_argument`
// otherwise); `on_packed`, if set, only with `on_batch`.
struct IsolateHandler {
  MessageFn on_message = nullptr;
  void* user = nullptr;
  DropFn destroy_user = nullptr;  // called once when the isolate is freed, if set
  BatchFn on_batch = nullptr;     // the batch form, instead of on_message
  PackedFn on_packed = nullptr;   // with on_batch: inline byte messages in place
};

// Wraps any callable `void(Isolate&, Message&)` into a handler that owns a copy of it.
template <class F>
IsolateHandler make_handler(F f) {
  auto* owned = new F(std::move(f));
  return IsolateHandler{
      [](Isolate& self, Message& message, void* user) { (*static_cast<F*>(user))(self, message); },
      owned, [](void* user) noexcept { delete static_cast<F*>(user); }};
}

// Wraps any callable `void(Isolate&, std::span<Message>)` into a batch handler that owns a copy.
template <class F>
IsolateHandler make_batch_handler(F f) {
  auto* owned = new F(std::move(f));
  return IsolateHandler{nullptr, owned, [](void* user) noexcept { delete static_cast<F*>(user); },
                        [](Isolate& self, std::span<Message> messages, void* user) {
                          (*static_cast<F*>(user))(self, messages);
                        }};
}

// Wraps a callable with both `void(Isolate&, PackedMessages)` and
// `void(Isolate&, std::span<Message>)` into a packed handler (with its batch form) that owns a
// copy.
template <class F>
IsolateHandler make_packed_handler(F f) {
  IsolateHandler h = make_batch_handler(std::move(f));
  h.on_packed = [](Isolate& self, PackedMessages messages, void* user) {
    (*static_cast<F*>(user))(self, messages);
  };
  return h;
}

// Why an isolate exited: it ran out of open ports (normal), it was killed (killed, also at runtime
// shutdown), or an uncaught exception ended it under `errors_are_fatal` (error).
enum class ExitReason : std::uint8_t { normal = 0, killed = 1, error = 2 };

// When a control request (kill, ping) takes effect. `immediate`: before the isolate's next
// message or timer callback, and at once from inside a long-running message that checks
// `Isolate::interrupt_requested()` and calls `handle_interrupts()` at its safe points (Dart's
// interrupt checks, Lua's hook). `before_next_event`: after the current message (or timer
// callback) and its microtasks, ahead of every normal message still queued. For a kill the
// difference is whether the running message is asked to unwind (SEMANTICS 9).
enum class ControlPriority : std::uint8_t { immediate = 0, before_next_event = 1 };
using KillPriority = ControlPriority;

// A pause token (SEMANTICS 8): pauses with the same capability count once; each distinct one
// must be resumed with itself. Never 0 once handed out.
struct PauseCapability {
  std::uint64_t value = 0;
  explicit operator bool() const noexcept { return value != 0; }
  friend bool operator==(PauseCapability, PauseCapability) = default;
};

// What an exit listener receives (`decode_isolate_exit`): which isolate (its main port's id,
// which stays its name after the port closes) and why it exited.
struct IsolateExit {
  PortId isolate = PortId::none;
  ExitReason reason = ExitReason::normal;
};
EVH_API std::optional<IsolateExit> decode_isolate_exit(const Message& message) noexcept;

// What an error listener receives (`decode_isolate_error`): the isolate and the escaped
// exception's `what()` ("unknown exception" for a non-std exception).
struct IsolateError {
  PortId isolate = PortId::none;
  std::string what;
};
EVH_API std::optional<IsolateError> decode_isolate_error(const Message& message);

// Something an isolate owns that must be released when the isolate exits: a child process tied
// to it, a lock, an embedder's native handle. Attach it with `Isolate::attach()`; when the
// isolate exits (killed, normal exit, error, runtime shutdown) `on_isolate_exit` is called
// exactly once, on the thread that finishes the isolate, unless `Isolate::detach()` removed it
// first. The object must stay alive until it has been called or detached.
class EVH_API IsolateResource {
 public:
  // Must not block for long and must not attach or detach on the same isolate (the isolate's
  // resource lock is held). May post messages, send signals, close fds.
  virtual void on_isolate_exit(Isolate& isolate, ExitReason reason) noexcept = 0;

 protected:
  IsolateResource() = default;
  ~IsolateResource() = default;
  IsolateResource(const IsolateResource&) = delete;
  IsolateResource& operator=(const IsolateResource&) = delete;

 private:
  friend struct detail::IsolateResourceAccess;
  // The isolate's list of attached resources runs through this link (an internal intrusive
  // list: a plain link here, so that no library type appears in this header).
  struct Link {
    Link* prev = nullptr;
    Link* next = nullptr;
  };
  Link link_;
  bool attached_ = false;
};

// Whether an exception escaping an isolate's handler, a microtask or a timer callback ends the
// isolate (ExitReason::error, after its error listeners have been told) or is only reported.
enum class ErrorsFatal : std::uint8_t { no, yes };

// Told when an isolate's mailbox passes the depth its embedder set (IsolateOptions). Runs on the
// isolate's own turn, before the message that was taken when the depth was seen; `depth` counts
// the messages queued for the isolate's main and extra ports then, that one included. Told
// again only after the depth fell to half the mark or the mailbox emptied. Nothing is dropped or
// refused: a mailbox has no limit. An exception escaping it is reported as a handler's is.
using MailboxHighWaterFn = void (*)(Isolate& isolate, std::uint64_t depth);

struct IsolateOptions {
  TaskRunner* runner = nullptr;  // null: the runtime's thread pool
  std::uint32_t budget = 0;      // messages per turn before giving way; 0: the runtime's default
  void* data = nullptr;          // opaque embedder data, returned by `Isolate::data()`
  // See ErrorsFatal. `no`: an escaped exception is reported and the isolate goes on.
  ErrorsFatal errors_are_fatal = ErrorsFatal::no;
  // The mailbox depth at which `on_mailbox_high_water` is called; 0 (or no callback): never.
  // The depth is seen by the isolate's turn as it takes messages, so a turn stuck in a handler
  // tells when it takes the next message.
  std::uint64_t mailbox_high_water = 0;
  MailboxHighWaterFn on_mailbox_high_water = nullptr;
};

struct IsolateStats {
  std::uint64_t handled = 0;     // messages delivered to the handler
  std::uint64_t dropped = 0;     // messages released undelivered (port closed, isolate destroyed)
  std::uint64_t exceptions = 0;  // exceptions that escaped the handler or a microtask
  std::uint64_t turns = 0;       // times the isolate was run by its runner
  std::uint64_t wakeups = 0;  // times an idle isolate was scheduled (mailbox empty → non-empty)
  std::uint64_t yields = 0;   // turns that ended with work left (budget or time slice)
  // Normal-priority messages queued and not yet taken by a turn, now (exact at the instant it is
  // read: both ends of the mailbox count their messages).
  std::uint64_t mailbox_depth = 0;
  // The deepest the mailbox has been seen: by its turns as they took messages, or now.
  std::uint64_t mailbox_peak = 0;
};

class EVH_API Isolate {
 public:
  Isolate(const Isolate&) = delete;
  Isolate& operator=(const Isolate&) = delete;

  // Any thread.
  PortId main_port() const noexcept;
  void* data() const noexcept;
  Runtime& runtime() const noexcept;
  bool is_dead() const noexcept;
  IsolateStats stats() const noexcept;
  // Stops normal messages until resumed; OOB messages (and control requests) still run
  // (SEMANTICS 8). Takes effect at once: a running turn stops before its next normal message.
  // Pausing again with a capability already pausing the isolate changes nothing. Returns the
  // capability (a fresh one when none is given).
  PauseCapability pause(PauseCapability capability = {}) noexcept;
  // Releases the pause held by `capability`; `Errc::invalid_argument` when it holds none.
  Status resume(PauseCapability capability) noexcept;

  // Control plane (any thread). Posts `response` to `reply` when the isolate gets to it (see
  // ControlPriority); an idle isolate answers at once. `Errc::isolate_dead` when it has exited
  // (the response is released); a ping pending when it dies is released unanswered.
  Status ping(PortId reply, Message response,
              ControlPriority priority = ControlPriority::immediate) noexcept;
  // Exit listeners are told exactly once, with the reason (an `IsolateExit` message). Adding
  // one after the exit tells it at once; adding the same port twice tells it once.
  Status add_exit_listener(PortId port) noexcept;
  Status remove_exit_listener(PortId port) noexcept;  // `Errc::unknown_port` if not listening
  // Error listeners hear of every exception that escapes the isolate's callbacks (an
  // `IsolateError` message), before `errors_are_fatal` ends it.
  Status add_error_listener(PortId port) noexcept;
  Status remove_error_listener(PortId port) noexcept;
  void set_errors_fatal(ErrorsFatal fatal) noexcept;
  // Kills the isolate (SEMANTICS 9): idempotent, any thread, also from inside the isolate and
  // racing with posts. Its ports close at once (posts to them fail from then on); when it stops
  // (see KillPriority) every queued message is released exactly once, its timers are cancelled,
  // its fd registrations end, its attached resources are told, the locks it holds are released
  // with "owner died", and its exit listeners hear `ExitReason::killed`. From outside the
  // isolate, if it is idle, all of that happens on the calling thread before this returns; if it
  // is running or scheduled, on its runner when the current message (or callback) finishes.
  // A second kill can upgrade `before_next_event` to `immediate`, not the other way.
  // Unlike Dart, where a kill is itself an OOB message and so runs after the OOB messages
  // queued before it, OOB messages still queued when the kill takes effect are released
  // unrun, like normal ones: a kill of an idle isolate completes on the caller's thread before
  // returning, where the isolate's messages must not run (it may be bound to another thread),
  // and the mailbox keeps no mark of which OOB messages came before the kill. A sender that
  // needs its OOB message handled first waits for its effect (a reply) before killing.
  void kill(KillPriority priority = KillPriority::immediate) noexcept;
  // The same as kill(KillPriority::immediate).
  void destroy() noexcept;

  // True when a long-running message should reach a safe point and call handle_interrupts():
  // an immediate kill or an immediate ping is pending. One atomic load; any thread.
  bool interrupt_requested() const noexcept;
  // Own turn: answers pending immediate pings, and hands work this thread queued behind the
  // running message (a message it posted to an isolate of the same pool) to another thread, so
  // that a long message starves nobody. `Errc::isolate_dead` when the isolate has been killed —
  // the message should unwind now; nothing after it runs. A long message may call it at every
  // safe point, whether or not interrupt_requested(): it is cheap when there is nothing to do.
  // `Errc::wrong_thread` off the isolate's own turn.
  Status handle_interrupts() noexcept;

  // Attaches a resource to be told when the isolate exits. `Errc::isolate_dead` when it has
  // already exited (or is exiting): the resource is then not attached and the caller releases it.
  Status attach(IsolateResource& resource) noexcept;
  // Detaches it: true when it was attached and has not been told; after this returns,
  // `on_isolate_exit` is neither running nor going to run for it.
  bool detach(IsolateResource& resource) noexcept;

  // Any thread: closes one of this isolate's ports; messages queued for it are dropped
  // (released) when reached. `Errc::unknown_port` when the isolate has no open port with that id.
  Status close_port(PortId port) noexcept;

  // Own turn only (`Errc::wrong_thread` elsewhere). ENOMEM when out of memory (nothing opened).
  Result<PortId> open_port();
  // Runs `fn(self, arg)` after the current message (or microtask) and before the next message.
  // `Errc::invalid_argument` for a null `fn` (nothing is queued; `drop` is not called).
  Status schedule_microtask(MicrotaskFn fn, void* arg, DropFn drop = nullptr);

  // Timers (evh/timer.h). Arms `timer` to call `fn` after `delay` (0: a zero-delay timer, run in
  // the next batch without a kernel timer), re-arming it if it was armed. The contract
  // (SEMANTICS 11): the timer never fires before `delay` has passed since this call, by the
  // caller's own reading of the monotonic clock — the clock is read here (~25 ns), never taken
  // from an earlier cached time. A delay too large to represent means "never".
  // `Errc::invalid_argument` for a negative delay or a null fn; `Errc::isolate_dead` after
  // destroy(); `Errc::wrong_thread` off the isolate's own turn, or when `timer` is armed by
  // another isolate (see evh/timer.h). The first timer of an isolate starts the runtime's event
  // handler if needed (its error is returned) and makes the isolate's timer record (ENOMEM when
  // that cannot be allocated; the timer is then not armed).
  Status start_timer(Timer& timer, std::chrono::nanoseconds delay, TimerFn fn,
                     Slack slack = Slack::coarse());
  // As start_timer, then every `period` on a fixed schedule (`period` > 0).
  Status start_periodic(Timer& timer, std::chrono::nanoseconds period, TimerFn fn,
                        Slack slack = Slack::coarse());
  // Arms `timer` for the absolute `deadline` on the monotonic clock (`now()`), the form to use
  // when many timers share one reference or the caller already holds the time: it reads no
  // clock. A deadline already past makes the timer due in the next batch (without a kernel
  // timer), still ordered by that deadline. The slack is that of the time left.
  Status start_timer_at(Timer& timer, TimePoint deadline, TimerFn fn,
                        Slack slack = Slack::coarse());
  // As start_timer_at, then every `period` after `first` on a fixed schedule (`period` > 0).
  Status start_periodic_at(Timer& timer, TimePoint first, std::chrono::nanoseconds period,
                           TimerFn fn, Slack slack = Slack::coarse());
  // The monotonic clock that timers run on, read now. Any thread.
  TimePoint now() const noexcept;
  // Own turn (elsewhere: now()): a reading of the same clock taken at most once per message or
  // timer callback (the first time it is asked for in it), so at most that message's age behind
  // now(). The cheap reference for `start_timer_at(t, self.cached_now() + d)` when a handler
  // arms many timers and accepts that they count from the start of its message, not from each
  // call.
  TimePoint cached_now() noexcept;
  // Own turn. Disarms `timer`; a no-op when it is not armed (twice, or after it fired).
  // `Errc::wrong_thread` off the isolate's own turn, or when `timer` is armed by another isolate
  // (nothing is changed: each isolate's timers stay its own).
  Status cancel_timer(Timer& timer) noexcept;
  // This isolate's timer counters and lateness percentiles.
  TimerStats timer_stats() const noexcept;

 private:
  friend class detail::IsolateImpl;
  Isolate() = default;
  ~Isolate() = default;
};

// A counted reference to an isolate. Copyable; any thread.
class EVH_API IsolateRef {
 public:
  IsolateRef() noexcept = default;
  explicit IsolateRef(Isolate* isolate) noexcept : p_(isolate) {}  // adopts one reference
  IsolateRef(const IsolateRef& o) noexcept : p_(o.p_) {
    if (p_ != nullptr) retain(p_);
  }
  IsolateRef(IsolateRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  IsolateRef& operator=(IsolateRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~IsolateRef() {
    if (p_ != nullptr) release(p_);
  }

  Isolate* get() const noexcept { return p_; }
  Isolate* operator->() const noexcept { return p_; }
  Isolate& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  // Out of line and members rather than the evh::detail functions, so that the shared library
  // exports them (it exports no evh::detail symbol) for this header's inline code.
  static void retain(Isolate* isolate) noexcept;
  static void release(Isolate* isolate) noexcept;

  Isolate* p_ = nullptr;
};

}  // namespace evh
