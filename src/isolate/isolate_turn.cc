// The isolate's mailbox and its turn: enqueue and schedule, the run loop with its budget, time
// slice and lingering, delivery to the handler, microtasks. The lost-wakeup argument is in
// isolate_impl.h.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "base/alloc_fault.h"
#include "base/assert.h"
#include "base/message_access.h"
#include "base/mono_time.h"
#include "isolate/isolate_impl.h"
#include "isolate/isolate_life.h"
#include "isolate/isolate_timers.h"
#include "sync/spin.h"

namespace evh {
namespace detail {

namespace {

// A turn that finds a message claimed but not yet written waits this many backoff steps for the
// producer to finish its two stores, then gives way (the producer was probably preempted).
constexpr int kPendingSnoozes = 64;

// Lingering (see run()): after this many messages in one turn, an empty queue is waited on
// for kLinger before the turn goes idle, at most kMaxLingers times in a row without a message.
constexpr std::uint32_t kLingerAfter = 8;
constexpr std::uint32_t kMaxLingers = 2;
constexpr auto kLinger = std::chrono::nanoseconds(1500);

void linger() noexcept {
  const auto until = std::chrono::steady_clock::now() + kLinger;
  do {
    for (int i = 0; i < 8; ++i) cpu_relax();
  } while (std::chrono::steady_clock::now() < until);
}

}  // namespace

IsolateImpl::IsolateImpl(IsolateHost& host, TaskRunner& runner, IsolateHandler handler,
                         const IsolateOptions& options, std::uint32_t budget)
    : host_word_(reinterpret_cast<std::uintptr_t>(&host)),
      user_(handler.user),
      data_(options.data),
      destroy_user_(handler.destroy_user) {
  if (handler.on_batch != nullptr) {
    handler_.batch = handler.on_batch;
    spawn_bits_ |= kBatchHandler;
  } else {
    handler_.one = handler.on_message;
  }
  // What most isolates share stays in the host; the rest goes into the life record.
  const bool own_runner = &runner != &host.default_runner();
  const bool own_budget = budget != host.default_budget();
  const bool watch_depth =
      options.mailbox_high_water != 0 && options.on_mailbox_high_water != nullptr;
  // spawn() unmakes an isolate whose constructor throws (nothing is made yet to undo).
  const bool packed = handler.on_packed != nullptr;
  if (own_runner || own_budget || watch_depth || packed ||
      options.errors_are_fatal == ErrorsFatal::yes) {
    if (try_life() == nullptr) throw std::bad_alloc();
  }
  if (own_runner) {
    life().runner = &runner;
    spawn_bits_ |= kOwnRunner;
    host_word_ |= kOwnRunner;
  }
  if (packed) {
    life().packed = handler.on_packed;
    spawn_bits_ |= kPackedHandler;
  }
  if (own_budget) {
    life().budget = budget;
    spawn_bits_ |= kOwnBudget;
  }
  if (options.errors_are_fatal == ErrorsFatal::yes) life().set_errors_fatal(ErrorsFatal::yes);
  if (watch_depth) {
    IsolateLife::HighWater& hw = life().high_water();
    hw.mark = options.mailbox_high_water;
    hw.fn = options.on_mailbox_high_water;
    spawn_bits_ |= kWatchDepth;
  }
#if !defined(EVH_DEBUG_CHECKS)
  static_assert(sizeof(IsolateImpl) == 192, "an idle isolate should stay within three lines");
#endif
}

TaskRunner& IsolateImpl::runner() const noexcept {
  return (host_word_ & kOwnRunner) != 0 ? *life_if_any()->runner : host().default_runner();
}

std::uint32_t IsolateImpl::budget() const noexcept {
  return (spawn_bits_ & kOwnBudget) != 0 ? life_if_any()->budget : host().default_budget();
}

IsolateImpl::~IsolateImpl() {
  // No reference is left, so no producer can reach the queues: release what is in them.
  queue_destroy(normal_tail_, normal_head_);
  if (IsolateLife* l = life_.load(std::memory_order_acquire); l != nullptr) {
    delete l->oob.load(std::memory_order_acquire);
    for (const IsolateLife::Microtask& t : l->microtasks) {
      if (t.drop != nullptr) t.drop(t.arg);
    }
    // Its set has been emptied at death; any timer left is disarmed here.
    delete l->timers.load(std::memory_order_acquire);
    delete l;
  }
  if (destroy_user_ != nullptr) destroy_user_(user_);
}

void IsolateImpl::release() noexcept {
  // acq_rel: the last releaser sees every other holder's writes before destroying.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    IsolateHost& host = this->host();
    this->~IsolateImpl();
    host.free(this);
  }
}

void IsolateImpl::post_to_self(PortId port, Message message, Priority priority) noexcept {
  MessageAccess::set_port(message, port);
  // The zero-delay timers' self-post has nobody to report to (README, "Guarantees and limits").
  if (!enqueue(std::move(message), priority)) fatal_out_of_memory("an isolate's self-post");
}

MpscQueue* IsolateImpl::oob_if_any() const noexcept {
  const IsolateLife* l = life_if_any();
  return l != nullptr ? l->oob.load(std::memory_order_acquire) : nullptr;
}

MpscQueue* IsolateImpl::oob_queue() noexcept {
  IsolateLife* l = try_life();
  if (l == nullptr) return nullptr;
  std::atomic<MpscQueue*>& oob = l->oob;
  MpscQueue* q = oob.load(std::memory_order_acquire);
  if (q != nullptr) return q;
  if (alloc_site_fails()) return nullptr;
  auto* fresh = new (std::nothrow) MpscQueue;
  if (fresh == nullptr) return nullptr;
  // acq_rel: publishes the new queue (release) or sees the winner's (acquire).
  if (oob.compare_exchange_strong(q, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;
  return q;
}

bool IsolateImpl::enqueue(Message&& message, Priority priority) noexcept {
  const Enqueued e = enqueue_under_lock(std::move(message), priority);
  if (e == Enqueued::finish) finish_enqueue();
  return e != Enqueued::failed;
}

PortTarget::Enqueued IsolateImpl::enqueue_under_lock(Message&& message,
                                                     Priority priority) noexcept {
  if (priority == Priority::oob) {
    MpscQueue* q = oob_queue();
    if (q == nullptr || !q->push(std::move(message))) return Enqueued::failed;
  } else if (!queue_push(normal_tail_, &normal_head_, std::move(message), main_port_id_)) {
    return Enqueued::failed;
  }
  // seq_cst: pairs with the turn's seq_cst store of kIdle (see the header's argument).
  return state_.load(std::memory_order_seq_cst) == kIdle && claim_turn() ? Enqueued::finish
                                                                         : Enqueued::done;
}

void IsolateImpl::finish_enqueue() noexcept {
  runner().post(*this);  // the turn's reference, taken by claim_turn(), keeps us alive
}

std::size_t IsolateImpl::enqueue_batch(std::span<Message> messages, Priority priority) noexcept {
  if (messages.empty()) return 0;
  std::size_t queued = 0;
  if (priority == Priority::oob) {
    if (MpscQueue* q = oob_queue(); q != nullptr) queued = q->push_batch(messages);
  } else {
    queued = queue_push_batch(normal_tail_, &normal_head_, messages, main_port_id_);
  }
  // seq_cst: as in enqueue.
  if (queued != 0 && state_.load(std::memory_order_seq_cst) == kIdle) try_schedule();
  return queued;
}

std::size_t IsolateImpl::enqueue_packed(PortId port, const std::byte* data, std::uint32_t each,
                                        std::size_t count, Priority priority) noexcept {
  if (count == 0) return 0;
  std::size_t queued = 0;
  if (priority == Priority::oob) {
    if (MpscQueue* q = oob_queue(); q != nullptr) queued = q->push_packed(port, data, each, count);
  } else {
    queued = queue_push_packed(normal_tail_, &normal_head_, port, data, each, count, main_port_id_);
  }
  // seq_cst: as in enqueue.
  if (queued != 0 && state_.load(std::memory_order_seq_cst) == kIdle) try_schedule();
  return queued;
}

bool IsolateImpl::try_schedule() noexcept {
  if (!claim_turn()) return false;
  runner().post(*this);
  return true;
}

bool IsolateImpl::claim_turn() noexcept {
  std::uint32_t expected = kIdle;
  // acq_rel: acquire pairs with the previous turn's store of kIdle, so the next turn sees what
  // the previous one did; release publishes our push to whoever runs the turn.
  if (!state_.compare_exchange_strong(expected, kScheduled, std::memory_order_acq_rel)) {
    return false;
  }
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  retain();  // the turn's reference
  return true;
}

bool IsolateImpl::has_work() noexcept {
  // Asked by a turn deciding whether to give way (it goes on otherwise, and only the idle path,
  // has_work_since(), decides that nothing is left). seq_cst loads all the same.
  if (dead_requested_.load(std::memory_order_seq_cst)) return true;
  if (MpscQueue* q = oob_if_any(); q != nullptr && q->has_claimed()) return true;
  if (paused_.load(std::memory_order_seq_cst)) return false;
  // Messages the turn already knows are claimed and unread answer without a look at the
  // producers' line (issue 19: in a flood that look, once per turn, took the line from the
  // producer, whose next claim then had to take it back — the CAS was 11 % of
  // port_flood_batch's samples).
  if (queue_count(normal_head_.pos) < queue_count(normal_head_.known_tail)) return true;
  return queue_has_claimed(normal_tail_, normal_head_);
}

bool IsolateImpl::has_work_since(std::uint64_t normal_head, std::uint64_t oob_head) const noexcept {
  // seq_cst loads: the other half of the lost-wakeup argument in the header.
  if (dead_requested_.load(std::memory_order_seq_cst)) return true;
  if (MpscQueue* q = oob_if_any();
      q != nullptr && q->tail.pos.load(std::memory_order_seq_cst) != oob_head) {
    return true;
  }
  return !paused_.load(std::memory_order_seq_cst) &&
         normal_tail_.pos.load(std::memory_order_seq_cst) != normal_head;
}

// The turn's per-message path, inline in run() (issue 19: deliver, the microtask check and the
// depth were three calls per message in a flood).
[[gnu::always_inline]] inline void IsolateImpl::handle(Message& message) noexcept {
  try {
    if ((spawn_bits_ & kBatchHandler) == 0) [[likely]] {
      handler_.one(*this, message, user_);
    } else {
      handler_.batch(*this, std::span<Message>(&message, 1), user_);
    }
  } catch (...) {
    report_exception();
  }
  bump(handled_);
  after_handler();
}

[[gnu::always_inline]] inline void IsolateImpl::after_handler() noexcept {
  if (life_if_any() != nullptr) [[unlikely]] {
    run_microtasks();
  }
  if (timers_dirty_) [[unlikely]] {
    after_timers_changed();
  }
  // The exit rule looks only when the main port is closed (it is on this line already).
  if (main_closed_.load(std::memory_order_relaxed)) [[unlikely]] {
    exit_if_unreachable();
  }
}

[[gnu::always_inline]] inline void IsolateImpl::deliver(Message& message) noexcept {
  // The main port, open: the fast path.
  if (message.port() == main_port_id_ && !main_closed_.load(std::memory_order_acquire)) [[likely]] {
    handle(message);
    return;
  }
  deliver_other(message);
}

[[gnu::always_inline]] inline void IsolateImpl::note_depth(bool first_of_turn, std::uint32_t taken,
                                                           std::uint32_t not_yet_taken) noexcept {
  const std::uint64_t read = queue_count(normal_head_.pos) + not_yet_taken;
  // queue_pop reads the producers' tail only when it finds no record written; in a flood that
  // keeps ahead of it, it would never look. The depth looks when the turn has read everything it
  // knew to be claimed — at a turn's first message once it has read that far, else once it has
  // read past it: one look then reveals every record claimed since, so a flood pays one look per
  // run of messages that arrived together, not one per message or per turn (each look takes the
  // producers' line from them; issue 19). Between looks the depth noted is what the last look
  // saw, less what has been read since; the next look sees what came meanwhile.
  const std::uint64_t known_before = queue_count(normal_head_.known_tail);
  if (first_of_turn ? read >= known_before : read > known_before) {
    normal_head_.known_tail = normal_tail_.pos.load(std::memory_order_relaxed);
  }
  const std::uint64_t known = queue_count(normal_head_.known_tail);
  // The ones just taken, and those known to be claimed behind them (the turn may have read
  // records written after its last look at the tail: then it knows of none).
  const std::uint64_t depth = taken + (known > read ? known - read : 0);
  if (depth > mailbox_peak_.load(std::memory_order_relaxed)) {
    const std::uint64_t capped = std::min<std::uint64_t>(depth, UINT32_MAX);
    mailbox_peak_.store(static_cast<std::uint32_t>(capped), std::memory_order_relaxed);
  }
  if ((spawn_bits_ & kWatchDepth) != 0) [[unlikely]] {
    check_high_water(depth);
  }
}

std::uint32_t IsolateImpl::handle_batch(std::uint32_t max, bool first_of_turn) noexcept {
  EVH_ASSERT(max >= 1 && max <= kMaxBatch, "a batch is 1..kMaxBatch messages");
  // Raw storage: the queue constructs the messages it takes there.
  alignas(Message) std::byte storage[kMaxBatch * sizeof(Message)];
  auto* batch = reinterpret_cast<Message*>(storage);
  const std::uint32_t n = queue_pop_batch(normal_tail_, normal_head_, batch, max, main_port_id_,
                                          (spawn_bits_ & kPackedHandler) != 0);
  if (n == 0) return 0;
  // Each is destroyed on the way out: what the handler left in it is released here, once.
  struct DestroyAll {
    Message* batch;
    std::uint32_t n;
    ~DestroyAll() { std::destroy_n(batch, n); }
  } destroy_all{batch, n};
  note_depth(first_of_turn, n);
  if (main_closed_.load(std::memory_order_acquire)) [[unlikely]] {
    // Closed since the turn looked: dropped when reached, as deliver_other() drops one.
    bump(life().dropped, n);
    return n;
  }
  try {
    handler_.batch(*this, std::span<Message>(batch, n), user_);
  } catch (...) {
    report_exception();
  }
  bump(handled_, n);
  after_handler();
  return n;
}

std::uint32_t IsolateImpl::handle_packed(std::uint32_t max, bool first_of_turn) noexcept {
  PackedPeek peek;
  const std::uint32_t n = queue_peek_packed(normal_tail_, normal_head_, max, peek);
  if (n == 0) return 0;
  note_depth(first_of_turn, n, n);  // the head moves past them after the handler
  if (main_closed_.load(std::memory_order_acquire)) [[unlikely]] {
    // Closed since the turn looked: dropped when reached, as handle_batch drops them.
    queue_take_packed(normal_tail_, normal_head_, peek);
    bump(life().dropped, n);
    return n;
  }
  try {
    life_if_any()->packed(*this,
                          PackedMessages(reinterpret_cast<const std::byte*>(peek.payload), n,
                                         peek.size, peek.words * 8),
                          user_);
  } catch (...) {
    report_exception();
  }
  // Taken whatever the handler did (inline bytes own nothing): after a throw too, they are not
  // delivered again. Only now, since the handler read them in the block.
  queue_take_packed(normal_tail_, normal_head_, peek);
  bump(handled_, n);
  after_handler();
  return n;
}

void IsolateImpl::run() noexcept {
  // Who runs the turn: what owns_turn() checks. Debug builds also check that no other thread
  // is in the turn (an exchange instead of a store).
  const std::int32_t me = this_thread_id();
  auto leave = [this] { running_on_.store(0, std::memory_order_release); };
  auto enter = [this, me] {
#if defined(EVH_DEBUG_CHECKS)
    const std::int32_t prev = running_on_.exchange(me, std::memory_order_acq_rel);
    EVH_ASSERT(prev == 0, "two threads ran one isolate at once");
#else
    running_on_.store(me, std::memory_order_relaxed);
#endif
  };
  enter();
  // Read once per turn: neither changes after spawn.
  TaskRunner& runner = this->runner();
  const std::uint32_t budget = this->budget();
  std::uint32_t handled = 0;
  std::uint32_t lingers = 0;
  int pending_snoozes = 0;
  bool took_normal = false;  // this turn has taken a normal message
  Backoff backoff;
  std::chrono::steady_clock::time_point slice_end{};
  for (;;) {
    if (dead_requested_.load(std::memory_order_acquire)) {
      leave();
      finish_dead();
      return;
    }
    Message message;
    PopResult got = PopResult::empty;
    std::uint32_t batched = 0;  // messages a batch handler has just been given
    if (MpscQueue* q = oob_if_any(); q != nullptr) [[unlikely]] {
      got = q->pop(message);
    }
    if (got != PopResult::item && !paused_.load(std::memory_order_acquire)) {
      if ((spawn_bits_ & kBatchHandler) != 0 && !main_closed_.load(std::memory_order_relaxed)) {
        // As many as the budget has left (at least one: a turn past its budget with nobody to
        // give way to goes on one message at a time, as a per-message handler's does).
        const std::uint32_t left = handled < budget ? budget - handled : 1;
        if ((spawn_bits_ & kPackedHandler) != 0) batched = handle_packed(left, !took_normal);
        if (batched == 0) {
          batched = handle_batch(std::min<std::uint32_t>(left, kMaxBatch), !took_normal);
        }
      }
      if (batched != 0) {
        took_normal = true;
        got = PopResult::item;
      } else {
        PopResult normal = queue_pop(normal_tail_, normal_head_, message, main_port_id_);
        if (normal != PopResult::empty) got = normal;
        if (normal == PopResult::item) {
          note_depth(!took_normal);
          took_normal = true;
        }
      }
    }
    if (got == PopResult::item) {
      pending_snoozes = 0;
      lingers = 0;
      if (batched == 0) {
        deliver(message);
        batched = 1;
      }
      const std::uint32_t before = handled;
      handled += batched;
      bool give_way = handled >= budget || runner.work_is_waiting();
      // The clock is read every 16 messages only: a turn of a few messages (the ping-pong case)
      // costs no clock read, and a flood pays one read per 16 messages (or per batch, when a
      // batch crosses a multiple of 16). The slice is counted from the first such read.
      if (!give_way && (handled >> 4) != (before >> 4)) {
        const auto now = std::chrono::steady_clock::now();
        if (before < 16) {
          slice_end = mono_after(now, host().time_slice());
        } else {
          give_way = now >= slice_end;
        }
      }
      // An isolate that has just been told to end (its exit rule, a kill) finishes now rather
      // than giving way: finishing only releases what it holds, and queued behind fresh work it
      // would hold it (a language runtime's whole heap) until the fresh work is done.
      if (give_way && !dead_requested_.load(std::memory_order_acquire) && has_work()) {
        bump(yields_);
        leave();
        runner.post_yielded(*this);  // keeps the turn's reference
        return;
      }
      continue;
    }
    if (got == PopResult::pending) {
      // A producer claimed a slot and has not yet published it: it is between two stores.
      if (++pending_snoozes < kPendingSnoozes) {
        backoff.snooze();
        continue;
      }
      bump(yields_);
      leave();
      runner.post_yielded(*this);
      return;
    }
    // Empty. In the middle of a stream (this turn has handled several messages), wait a moment
    // without touching any producer's cache line before looking again: the producers get ahead
    // and the turn then reads a batch of finished slots, instead of chasing the producer slot by
    // slot (each look at a slot being written costs the producer a cache-line transfer) or
    // going idle and costing the producer a reschedule per handful of messages.
    if (handled >= kLingerAfter && lingers < kMaxLingers && !runner.work_is_waiting()) {
      ++lingers;
      linger();
      continue;
    }
    if ((spawn_bits_ & kWatchDepth) != 0) [[unlikely]] {
      rearm_high_water();
    }
    // Empty: go idle, then re-check (see the header for why this cannot lose a wakeup).
    const std::uint64_t normal_seen = normal_head_.pos;
    MpscQueue* oob = oob_if_any();
    const std::uint64_t oob_seen = oob != nullptr ? oob->head.pos : 0;
    leave();
    state_.store(kIdle, std::memory_order_seq_cst);
    if (has_work_since(normal_seen, oob_seen)) {
      std::uint32_t expected = kIdle;
      if (state_.compare_exchange_strong(expected, kScheduled, std::memory_order_acq_rel)) {
        enter();
        continue;
      }
    }
    release();  // the turn's reference; may free this
    return;
  }
}

void IsolateImpl::deliver_other(Message& message) noexcept {
  // Timer wakeups come to an extra port, control messages to none.
  if (message.port() == PortId::none) {
    on_control_message(message);
    return;
  }
  if (IsolateTimers* timers = timers_if_any();
      timers != nullptr && message.port() == timers->port()) {
    timers->on_wakeup(message);  // hands the next wakeup over itself
    timers_dirty_ = false;
    exit_if_unreachable();
    return;
  }
  if (!is_open_port(message.port())) {
    bump(life().dropped);
    return;  // the caller's `message` releases the payload on this thread
  }
  handle(message);
}

bool IsolateImpl::is_open_port(PortId id) noexcept {
  if (id == main_port_id_) return !main_closed_.load(std::memory_order_acquire);
  IsolateLife* l = life_if_any();
  return l != nullptr && l->port_open(id);
}

void IsolateImpl::run_microtasks() noexcept {
  IsolateLife* l = life_if_any();
  if (l == nullptr || l->microtasks.empty()) return;
  std::vector<IsolateLife::Microtask>& microtasks = l->microtasks;
  // A microtask may schedule more: index, do not iterate, and copy each entry out first.
  for (std::size_t i = 0; i < microtasks.size(); ++i) {
    IsolateLife::Microtask t = microtasks[i];
    try {
      t.fn(*this, t.arg);
    } catch (...) {
      report_exception();
    }
  }
  microtasks.clear();
}

void IsolateImpl::report_exception() noexcept {
  bump(life().exceptions);
  std::exception_ptr error = std::current_exception();
  host().report_exception(*this, error);
  tell_error_listeners(error);
}

void IsolateImpl::check_high_water(std::uint64_t depth) noexcept {
  IsolateLife::HighWater& hw = life_if_any()->high_water();  // created at spawn
  if (!hw.armed) {
    if (depth <= hw.mark / 2) hw.armed = true;
    return;
  }
  if (depth < hw.mark) return;
  hw.armed = false;
  try {
    hw.fn(*this, depth);
  } catch (...) {
    report_exception();
  }
}

void IsolateImpl::rearm_high_water() noexcept {
  life_if_any()->high_water().armed = true;
}

IsolateStats IsolateImpl::stats() const noexcept {
  IsolateStats s;
  s.handled = handled_.load(std::memory_order_relaxed);
  if (const IsolateLife* l = life_if_any(); l != nullptr) {
    s.dropped = l->dropped.load(std::memory_order_relaxed);
    s.exceptions = l->exceptions.load(std::memory_order_relaxed);
  }
  s.wakeups = wakeups_.load(std::memory_order_relaxed);
  s.yields = yields_.load(std::memory_order_relaxed);
  s.turns = s.wakeups + s.yields;
  s.mailbox_depth = queue_depth(normal_tail_, normal_head_);
  s.mailbox_peak =
      std::max<std::uint64_t>(mailbox_peak_.load(std::memory_order_relaxed), s.mailbox_depth);
  return s;
}

Status IsolateImpl::schedule_microtask(MicrotaskFn fn, void* arg, DropFn drop) {
  if (fn == nullptr) return Errc::invalid_argument;
  if (!owns_turn()) return Errc::wrong_thread;
  // Out of memory throws std::bad_alloc, for the record as for the push (nothing queued).
  IsolateLife* l = try_life();
  if (l == nullptr) throw std::bad_alloc();
  l->microtasks.push_back(IsolateLife::Microtask{fn, arg, drop});
  return {};
}

}  // namespace detail
}  // namespace evh
