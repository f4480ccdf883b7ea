// The isolate's life: its ports, kill and the drain at the next boundary (finish_dead), the exit
// rule, attached resources — and the IsolateLife record they keep their rare state in.
// docs/ARCHITECTURE.md ("What kill releases") has the sequence.
#include "isolate/isolate_life.h"

#include <utility>

#include "base/alloc_fault.h"
#include "base/assert.h"
#include "isolate/isolate_impl.h"
#include "isolate/isolate_timers.h"

namespace evh::detail {

// ---- IsolateLife -------------------------------------------------------------------------------

IsolateLife::~IsolateLife() {
  EVH_ASSERT(extra_ports_.empty(), "open ports keep an isolate alive");
  // Nothing is attached or held by now (the exit released both); unlink whatever a misuse left
  // so that the lists' destructors find them empty.
  resources_.clear();
  held_.clear();
}

bool IsolateLife::add_port(PortState* port, const std::atomic<bool>& closing) {
  FlagLock lock(ports_lock_);
  if (closing.load(std::memory_order_seq_cst)) return false;
  alloc_site();
  extra_ports_.push_back(port);  // may throw std::bad_alloc, changing nothing
  return true;
}

PortState* IsolateLife::remove_port(PortId id) noexcept {
  FlagLock lock(ports_lock_);
  for (auto it = extra_ports_.begin(); it != extra_ports_.end(); ++it) {
    if ((*it)->id() == id) {
      PortState* found = *it;
      extra_ports_.erase(it);
      return found;
    }
  }
  return nullptr;
}

std::vector<PortState*> IsolateLife::take_ports() noexcept {
  std::vector<PortState*> ports;
  FlagLock lock(ports_lock_);
  ports.swap(extra_ports_);
  return ports;
}

bool IsolateLife::port_open(PortId id) noexcept {
  FlagLock lock(ports_lock_);
  for (PortState* p : extra_ports_) {
    if (p->id() == id) return !p->is_closed();
  }
  return false;
}

bool IsolateLife::has_port_other_than(PortId except) noexcept {
  FlagLock lock(ports_lock_);
  for (PortState* p : extra_ports_) {
    if (p->id() != except) return true;
  }
  return false;
}

Status IsolateLife::attach(IsolateResource& resource) noexcept {
  std::lock_guard lock(mu_);
  if (exited_) return Errc::isolate_dead;
  if (IsolateResourceAccess::attached(resource)) return Errc::invalid_argument;
  IsolateResourceAccess::set_attached(resource, true);
  resources_.push_front(resource);
  return {};
}

bool IsolateLife::detach(IsolateResource& resource) noexcept {
  std::lock_guard lock(mu_);
  if (!IsolateResourceAccess::attached(resource)) return false;
  resources_.erase(resources_.iterator_to(resource));
  IsolateResourceAccess::set_attached(resource, false);
  return true;
}

void IsolateLife::release_resources(Isolate& isolate, ExitReason reason) noexcept {
  std::lock_guard lock(mu_);
  exited_ = true;
  // Each resource is unlinked before it is told, with the lock held: a detach() racing with
  // this waits for the call to end and then finds the resource no longer attached.
  while (!resources_.empty()) {
    IsolateResource& r = resources_.front();
    resources_.pop_front();
    IsolateResourceAccess::set_attached(r, false);
    r.on_isolate_exit(isolate, reason);
  }
}

namespace {

bool contains(const std::vector<PortId>& ports, PortId port) noexcept {
  for (PortId p : ports) {
    if (p == port) return true;
  }
  return false;
}

}  // namespace

bool IsolateLife::add_listener(ListenerKind kind, PortId port) {
  std::lock_guard lock(mu_);
  if (exited_) return false;
  auto& list = kind == ListenerKind::exit ? exit_listeners_ : error_listeners_;
  if (!contains(list, port)) list.push_back(port);
  return true;
}

bool IsolateLife::remove_listener(ListenerKind kind, PortId port) noexcept {
  std::lock_guard lock(mu_);
  auto& list = kind == ListenerKind::exit ? exit_listeners_ : error_listeners_;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i] == port) {
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      return true;
    }
  }
  return false;
}

std::vector<PortId> IsolateLife::exit_listeners_at_exit() noexcept {
  std::vector<PortId> listeners;
  std::vector<Ping> unanswered;  // released below, unanswered, outside the lock
  std::lock_guard lock(mu_);
  exited_ = true;
  listeners.swap(exit_listeners_);
  error_listeners_.clear();
  unanswered.swap(immediate_pings_);
  return listeners;
}

std::vector<PortId> IsolateLife::error_listeners(ErrorsFatal& fatal) {
  std::lock_guard lock(mu_);
  fatal = errors_fatal_;
  return error_listeners_;
}

void IsolateLife::set_errors_fatal(ErrorsFatal fatal) noexcept {
  std::lock_guard lock(mu_);
  errors_fatal_ = fatal;
}

bool IsolateLife::add_pause(std::uint64_t capability, std::atomic<bool>& paused) {
  std::lock_guard lock(mu_);
  for (std::uint64_t held : pauses_) {
    if (held == capability) return false;
  }
  pauses_.push_back(capability);
  // seq_cst: pairs with the turn's seq_cst reads (see isolate_impl.h's lost-wakeup argument).
  paused.store(true, std::memory_order_seq_cst);
  return true;
}

std::optional<std::uint32_t> IsolateLife::remove_pause(std::uint64_t capability,
                                                       std::atomic<bool>& paused) noexcept {
  std::lock_guard lock(mu_);
  std::size_t i = 0;
  while (i < pauses_.size() && pauses_[i] != capability) ++i;
  if (i == pauses_.size()) return std::nullopt;
  const auto before = static_cast<std::uint32_t>(pauses_.size());
  pauses_[i] = pauses_.back();
  pauses_.pop_back();
  // seq_cst: as in add_pause; the resume then schedules a turn (isolate_control.cc).
  if (pauses_.empty()) paused.store(false, std::memory_order_seq_cst);
  return before;
}

bool IsolateLife::queue_ping(PortId reply, Message& response, std::atomic<std::uint8_t>& interrupt,
                             std::uint8_t bit) {
  {
    std::lock_guard lock(mu_);
    if (exited_) return false;
    immediate_pings_.push_back(Ping{reply, std::move(response)});
  }
  interrupt.fetch_or(bit, std::memory_order_acq_rel);
  return true;
}

std::vector<IsolateLife::Ping> IsolateLife::take_pings(std::atomic<std::uint8_t>& interrupt,
                                                       std::uint8_t bit) noexcept {
  std::vector<Ping> pings;
  std::lock_guard lock(mu_);
  interrupt.fetch_and(static_cast<std::uint8_t>(~bit), std::memory_order_acq_rel);
  pings.swap(immediate_pings_);
  return pings;
}

// ---- the isolate's ports and its end
// -------------------------------------------------------------

IsolateLife& IsolateImpl::life() noexcept {
  IsolateLife* l = try_life();
  // Kill, pauses, listeners, resources and held locks keep their state here and have no way to
  // report (README, "Guarantees and limits"); open_port() and spawn() check try_life() first.
  if (l == nullptr) fatal_out_of_memory("an isolate's life record");
  return *l;
}

IsolateLife* IsolateImpl::try_life() noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l != nullptr) return l;
  if (alloc_site_fails()) return nullptr;
  auto* fresh = new (std::nothrow) IsolateLife(ErrorsFatal::no);
  if (fresh == nullptr) return nullptr;
  // acq_rel: publishes the new record (release) or sees the winner's (acquire).
  if (life_.compare_exchange_strong(l, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;
  return l;
}

bool IsolateImpl::close_main_port() noexcept {
  if (main_closed_.exchange(true, std::memory_order_acq_rel)) return false;
  // The directory holds the only reference the isolate side has; SendPorts may hold more.
  host().close(main_port_id_);
  return true;
}

void IsolateImpl::close_all_ports() noexcept {
  close_main_port();
  IsolateLife* l = life_if_any();
  if (l == nullptr) return;
  for (PortState* p : l->take_ports()) {
    host().close(p->id());
    p->release();  // the isolate's reference
  }
}

Result<PortId> IsolateImpl::open_port() {
  if (!owns_turn()) return Errc::wrong_thread;
  if (is_dead()) return Errc::isolate_dead;
  const auto out_of_memory = std::make_error_code(std::errc::not_enough_memory);
  IsolateLife* l = try_life();
  if (l == nullptr) return out_of_memory;
  PortState* port;
  try {
    port = host().open(*this);  // our reference
  } catch (const std::bad_alloc&) {
    return out_of_memory;
  }
  const PortId id = port->id();
  Status added = Errc::isolate_dead;
  try {
    if (l->add_port(port, closing_)) return id;
  } catch (const std::bad_alloc&) {
    added = out_of_memory;
  }
  host().close(id);
  port->release();
  return added.error();
}

Status IsolateImpl::close_port(PortId id) noexcept {
  if (id == main_port_id_) {
    if (!close_main_port()) return Errc::unknown_port;
    send_control(kControlCheckExit, {}, {});
    return {};
  }
  IsolateLife* l = life_if_any();
  PortState* found = l != nullptr ? l->remove_port(id) : nullptr;
  if (found == nullptr) return Errc::unknown_port;
  host().close(id);
  found->release();
  // The exit rule: an isolate left without open ports exits; a turn checks (this may be called
  // from any thread, with the isolate idle).
  if (main_closed_.load(std::memory_order_acquire)) send_control(kControlCheckExit, {}, {});
  return {};
}

Status IsolateImpl::attach(IsolateResource& resource) noexcept {
  return life().attach(resource);
}

bool IsolateImpl::detach(IsolateResource& resource) noexcept {
  IsolateLife* l = life_if_any();
  return l != nullptr && l->detach(resource);
}

void IsolateImpl::kill(KillPriority priority, ExitReason reason) noexcept {
  if (priority == KillPriority::immediate) {
    interrupt_.fetch_or(kInterruptKill, std::memory_order_acq_rel);
    wake_lock_waiter();  // after the flag: see IsolateMutex::acquire
  }
  if (closing_.exchange(true, std::memory_order_seq_cst)) return;  // idempotent
  exit_reason_.store(static_cast<std::uint8_t>(reason), std::memory_order_release);
  // Ports first: after this no post can reach the mailbox through a port, only racing ones
  // already past the check, whose messages are drained below or by the destructor.
  close_all_ports();
  dead_requested_.store(true, std::memory_order_seq_cst);
  std::uint32_t expected = kIdle;
  // Idle: claim the mailbox and drain it here, now. Otherwise the current or queued turn sees
  // dead_requested_ at its next message boundary and drains it on the runner.
  if (state_.compare_exchange_strong(expected, kScheduled, std::memory_order_acq_rel)) {
    wakeups_.fetch_add(1, std::memory_order_relaxed);  // a turn: the stats count it as one
    retain();
    run();
  }
  host().forget(*this);  // drops the registry's reference last
}

void IsolateImpl::finish_dead() noexcept {
  std::uint64_t released = queue_drain(normal_tail_, normal_head_);
  if (MpscQueue* q = oob_if_any(); q != nullptr) released += q->drain();
  if (released != 0) bump(life().dropped, released);
  // Every timer is disarmed without running; the keeper forgets the deadline (its timeout
  // message, if already posted, is dropped with the closed port).
  if (IsolateTimers* timers = timers_if_any(); timers != nullptr) timers->finish();
  const auto reason = static_cast<ExitReason>(exit_reason_.load(std::memory_order_acquire));
  release_held_locks();
  if (IsolateLife* l = life_if_any()) l->release_resources(*this, reason);
  tell_exit_listeners(reason);
  // No message will be delivered again: release the handler's state now rather than when the
  // memory goes. Handlers that hold SendPorts to each other would otherwise keep each other's
  // memory (and so their state) alive for as long as the runtime lives.
  if (DropFn drop = std::exchange(destroy_user_, nullptr); drop != nullptr) {
    drop(user_);
  }
  // seq_cst: a producer that loads kDead after this does not schedule; what it pushes later is
  // released by the destructor.
  state_.store(kDead, std::memory_order_seq_cst);
  state_.notify_all();
  release();  // the turn's reference; may free this
}

void IsolateImpl::wait_dead() noexcept {
  for (std::uint32_t s = state_.load(std::memory_order_acquire); s != kDead;
       s = state_.load(std::memory_order_acquire)) {
    state_.wait(s, std::memory_order_acquire);
  }
}

// The exit rule (SEMANTICS: an isolate exits when it has no open port and an empty queue):
// with no port anyone can post to and no live timer, nothing can reach it any more.
void IsolateImpl::exit_if_unreachable() noexcept {
  if (closing_.load(std::memory_order_acquire) || !main_closed_.load(std::memory_order_acquire)) {
    return;
  }
  IsolateTimers* timers = timers_if_any();
  const PortId timer_port = timers != nullptr ? timers->port() : PortId::none;
  if (IsolateLife* l = life_if_any(); l != nullptr && l->has_port_other_than(timer_port)) return;
  if (timers != nullptr && timers->holds_timers()) return;
  kill(KillPriority::before_next_event, ExitReason::normal);
}

}  // namespace evh::detail
