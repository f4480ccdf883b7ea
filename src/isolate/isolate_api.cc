// The public face of an isolate: Isolate has no data of its own; every call forwards to
// IsolateImpl.
#include <evh/clock.h>
#include <evh/isolate.h>

#include "isolate/isolate_impl.h"

namespace evh {

using detail::IsolateImpl;

PortId Isolate::main_port() const noexcept {
  return IsolateImpl::of(*this).main_port_id();
}
void* Isolate::data() const noexcept {
  return IsolateImpl::of(*this).data();
}
Runtime& Isolate::runtime() const noexcept {
  return IsolateImpl::of(*this).host().runtime();
}
bool Isolate::is_dead() const noexcept {
  return IsolateImpl::of(*this).is_dead();
}
IsolateStats Isolate::stats() const noexcept {
  return IsolateImpl::of(*this).stats();
}
PauseCapability Isolate::pause(PauseCapability capability) noexcept {
  return IsolateImpl::of(*this).pause(capability);
}
Status Isolate::resume(PauseCapability capability) noexcept {
  return IsolateImpl::of(*this).resume(capability);
}
Status Isolate::ping(PortId reply, Message response, ControlPriority priority) noexcept {
  return IsolateImpl::of(*this).ping(reply, std::move(response), priority);
}
Status Isolate::add_exit_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).add_listener(detail::ListenerKind::exit, port);
}
Status Isolate::remove_exit_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).remove_listener(detail::ListenerKind::exit, port);
}
Status Isolate::add_error_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).add_listener(detail::ListenerKind::error, port);
}
Status Isolate::remove_error_listener(PortId port) noexcept {
  return IsolateImpl::of(*this).remove_listener(detail::ListenerKind::error, port);
}
void Isolate::set_errors_fatal(ErrorsFatal fatal) noexcept {
  IsolateImpl::of(*this).set_errors_fatal(fatal);
}
Status Isolate::handle_interrupts() noexcept {
  return IsolateImpl::of(*this).handle_interrupts();
}
void Isolate::destroy() noexcept {
  IsolateImpl::of(*this).destroy();
}
bool Isolate::interrupt_requested() const noexcept {
  return IsolateImpl::of(*this).interrupt_requested();
}
void Isolate::kill(KillPriority priority) noexcept {
  IsolateImpl::of(*this).kill(priority);
}
Status Isolate::attach(IsolateResource& resource) noexcept {
  return IsolateImpl::of(*this).attach(resource);
}
bool Isolate::detach(IsolateResource& resource) noexcept {
  return IsolateImpl::of(*this).detach(resource);
}
Result<PortId> Isolate::open_port() {
  return IsolateImpl::of(*this).open_port();
}
Status Isolate::close_port(PortId port) noexcept {
  return IsolateImpl::of(*this).close_port(port);
}
Status Isolate::schedule_microtask(MicrotaskFn fn, void* arg, DropFn drop) {
  return IsolateImpl::of(*this).schedule_microtask(fn, arg, drop);
}
Status Isolate::start_timer(Timer& timer, std::chrono::nanoseconds delay, TimerFn fn, Slack slack) {
  return IsolateImpl::of(*this).start_timer(timer, delay.count(), 0, fn, slack);
}
Status Isolate::start_periodic(Timer& timer, std::chrono::nanoseconds period, TimerFn fn,
                               Slack slack) {
  if (period.count() <= 0) return Errc::invalid_argument;
  return IsolateImpl::of(*this).start_timer(timer, period.count(), period.count(), fn, slack);
}
Status Isolate::start_timer_at(Timer& timer, TimePoint deadline, TimerFn fn, Slack slack) {
  return IsolateImpl::of(*this).start_timer_at(timer, deadline.count(), 0, fn, slack);
}
Status Isolate::start_periodic_at(Timer& timer, TimePoint first, std::chrono::nanoseconds period,
                                  TimerFn fn, Slack slack) {
  if (period.count() <= 0) return Errc::invalid_argument;
  return IsolateImpl::of(*this).start_timer_at(timer, first.count(), period.count(), fn, slack);
}
TimePoint Isolate::now() const noexcept {
  return TimePoint(IsolateImpl::of(*this).host().clock().now_ns());
}
TimePoint Isolate::cached_now() noexcept {
  return TimePoint(IsolateImpl::of(*this).cached_now_ns());
}
Status Isolate::cancel_timer(Timer& timer) noexcept {
  return IsolateImpl::of(*this).cancel_timer(timer);
}
TimerStats Isolate::timer_stats() const noexcept {
  return IsolateImpl::of(*this).timer_stats();
}

namespace detail {
void retain(Isolate* isolate) noexcept {
  IsolateImpl::of(*isolate).retain();
}
void release(Isolate* isolate) noexcept {
  IsolateImpl::of(*isolate).release();
}
}  // namespace detail

// IsolateRef's inline code calls these exported members, not evh::detail (hidden in libevh.so).
void IsolateRef::retain(Isolate* isolate) noexcept {
  detail::retain(isolate);
}
void IsolateRef::release(Isolate* isolate) noexcept {
  detail::release(isolate);
}

}  // namespace evh
