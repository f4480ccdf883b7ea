// The isolate's life: its ports, kill and the drain at the next boundary (finish_dead), the
// exit rule, attached resources. docs/ARCHITECTURE.md ("What kill releases") has the sequence.
#include "isolate/isolate_life.h"

#include <utility>

#include "base/assert.h"
#include "isolate/isolate_impl.h"
#include "isolate/isolate_timers.h"
#include "runtime/runtime_impl.h"

namespace evh {
namespace detail {

namespace {

void close_port_state(RuntimeImpl& runtime, PortState* port) noexcept {
  if (!port->mark_closed()) return;
  if (PortState* in_map = runtime.map().erase(port->id())) in_map->release();
  runtime.end_port_io(*port);  // its fd registrations and timeout end with it
}

}  // namespace

bool IsolateImpl::close_main_port() noexcept {
  if (main_closed_.exchange(true, std::memory_order_acq_rel)) return false;
  // The map holds the only reference the isolate side has; SendPorts may hold more.
  if (PortState* port = runtime_->map().erase(main_port_id_)) {
    port->mark_closed();
    runtime_->end_port_io(*port);
    port->release();
  }
  return true;
}

void IsolateImpl::close_all_ports() noexcept {
  close_main_port();
  std::vector<PortState*> extra;
  {
    FlagLock lock(ports_lock_);
    if (IsolateLife* life = life_.load(std::memory_order_acquire)) extra.swap(life->extra_ports);
  }
  for (PortState* p : extra) {
    close_port_state(*runtime_, p);
    p->release();  // the isolate's reference
  }
}

void IsolateImpl::finish_dead() noexcept {
  std::uint64_t released = queue_drain(normal_tail_, normal_head_);
  if (MpscQueue* q = oob_.load(std::memory_order_acquire); q != nullptr) released += q->drain();
  bump(dropped_, released);
  if (timers_ != nullptr) {
    // Every timer is disarmed without running; the event handler forgets the deadline (its
    // timeout message, if already posted, is dropped with the closed port).
    timers_->set.cancel_all();
    report_timer_counters();
    if (timers_->registered) {
      if (timers_->pool != nullptr) {
        timers_->pool->clear_deadline(static_cast<std::uint64_t>(timers_->port));
      } else if (auto eh = runtime_->event_handler(); eh.ok()) {
        (void)(*eh)->clear_timeout(timers_->port);
      }
      timers_->registered.reset();
    }
  }
  const auto reason = static_cast<ExitReason>(exit_reason_.load(std::memory_order_acquire));
  release_held_locks();
  release_resources(reason);
  tell_exit_listeners(reason);
  // No message will be delivered again: release the handler's state now rather than when the
  // memory goes. Handlers that hold SendPorts to each other would otherwise keep each other's
  // memory (and so their state) alive for as long as the runtime lives.
  if (DropFn drop = std::exchange(handler_.destroy_user, nullptr); drop != nullptr) {
    drop(handler_.user);
  }
  // seq_cst: a producer that loads kDead after this does not schedule; what it pushes later is
  // released by the destructor.
  state_.store(kDead, std::memory_order_seq_cst);
  state_.notify_all();
  release();  // the turn's reference; may free this
}

IsolateLife& IsolateImpl::life() noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l != nullptr) return *l;
  auto* fresh = new IsolateLife;
  // acq_rel: publishes the new record (release) or sees the winner's (acquire).
  if (life_.compare_exchange_strong(l, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;
  return *l;
}

Status IsolateImpl::attach(IsolateResource& resource) noexcept {
  IsolateLife& l = life();
  std::lock_guard lock(l.mu);
  if (l.exited || resource.attached_) {
    return l.exited ? Status{Errc::isolate_dead} : Status{Errc::invalid_argument};
  }
  resource.attached_ = true;
  resource.prev_ = nullptr;
  resource.next_ = l.resources;
  if (l.resources != nullptr) l.resources->prev_ = &resource;
  l.resources = &resource;
  return {};
}

bool IsolateImpl::detach(IsolateResource& resource) noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l == nullptr) return false;
  std::lock_guard lock(l->mu);
  if (!resource.attached_) return false;
  if (resource.prev_ != nullptr) {
    resource.prev_->next_ = resource.next_;
  } else {
    l->resources = resource.next_;
  }
  if (resource.next_ != nullptr) resource.next_->prev_ = resource.prev_;
  resource.prev_ = resource.next_ = nullptr;
  resource.attached_ = false;
  return true;
}

void IsolateImpl::release_resources(ExitReason reason) noexcept {
  IsolateLife* l = life_.load(std::memory_order_acquire);
  if (l == nullptr) return;
  std::lock_guard lock(l->mu);
  l->exited = true;
  // Each resource is unlinked before it is told, with the lock held: a detach() racing with
  // this waits for the call to end and then finds the resource no longer attached.
  while (IsolateResource* r = l->resources) {
    l->resources = r->next_;
    if (r->next_ != nullptr) r->next_->prev_ = nullptr;
    r->prev_ = r->next_ = nullptr;
    r->attached_ = false;
    r->on_isolate_exit(*this, reason);
  }
}

void IsolateImpl::kill(KillPriority priority, ExitReason reason) noexcept {
  if (priority == KillPriority::immediate) {
    interrupt_.fetch_or(kInterruptKill, std::memory_order_acq_rel);
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
    retain();
    run();
  }
  runtime_->unregister_isolate(*this);  // drops the registry's reference last
}

void IsolateImpl::wait_dead() noexcept {
  for (std::uint32_t s = state_.load(std::memory_order_acquire); s != kDead;
       s = state_.load(std::memory_order_acquire)) {
    state_.wait(s, std::memory_order_acquire);
  }
}

Result<PortId> IsolateImpl::open_port() {
  EVH_ASSERT(owns_turn(), "open_port() is for the isolate's own turn");
  if (is_dead()) return Errc::isolate_dead;
  const PortId id = runtime_->next_port_id();
  auto* port = PortState::make(id, this, &runtime_->port_slab());  // our reference
  runtime_->map().insert(port);
  {
    FlagLock lock(ports_lock_);
    // Checked under the lock: destroy() sets closing_ before it takes the lock to close the
    // ports, so either it sees this port or we see the flag.
    if (!closing_.load(std::memory_order_seq_cst)) {
      life().extra_ports.push_back(port);
      return id;
    }
  }
  close_port_state(*runtime_, port);
  port->release();
  return Errc::isolate_dead;
}

Status IsolateImpl::close_port(PortId id) noexcept {
  if (id == main_port_id_) {
    if (!close_main_port()) return Errc::unknown_port;
    send_control(kControlCheckExit, {}, {});
    return {};
  }
  PortState* found = nullptr;
  {
    FlagLock lock(ports_lock_);
    if (IsolateLife* life = life_.load(std::memory_order_acquire)) {
      auto& extra = life->extra_ports;
      for (auto it = extra.begin(); it != extra.end(); ++it) {
        if ((*it)->id() == id) {
          found = *it;
          extra.erase(it);
          break;
        }
      }
    }
  }
  if (found == nullptr) return Errc::unknown_port;
  close_port_state(*runtime_, found);
  found->release();
  // The exit rule: an isolate left without open ports exits; a turn checks (this may be called
  // from any thread, with the isolate idle).
  if (main_closed_.load(std::memory_order_acquire)) send_control(kControlCheckExit, {}, {});
  return {};
}

// The exit rule (SEMANTICS: an isolate exits when it has no open port and an empty queue):
// with no port anyone can post to and no live timer, nothing can reach it any more.
void IsolateImpl::exit_if_unreachable() noexcept {
  if (closing_.load(std::memory_order_acquire) || !main_closed_.load(std::memory_order_acquire)) {
    return;
  }
  if (IsolateLife* l = life_.load(std::memory_order_acquire)) {
    FlagLock lock(ports_lock_);
    for (PortState* p : l->extra_ports) {
      if (timers_ == nullptr || p->id() != timers_->port) return;  // a port someone can post to
    }
  }
  if (timers_ != nullptr && (timers_->set.live() != 0 || timers_->set.has_zero_delay())) return;
  kill(KillPriority::before_next_event, ExitReason::normal);
}

}  // namespace detail
}  // namespace evh
