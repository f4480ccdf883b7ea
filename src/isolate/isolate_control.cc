// The isolate's control plane: pings, pause capabilities, exit and error listeners, the exit
// rule and interrupts. Everything here is rare next to message delivery, so it lives in the
// isolate's IsolateLife (created on first use) and travels as OOB control messages.
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

#include "base/message_access.h"
#include "isolate/isolate_impl.h"
#include "isolate/isolate_life.h"

namespace evh {
namespace detail {
namespace {

// The payload of a control message.
struct ControlRequest {
  int kind;
  PortId reply;
  Message response;
};

void drop_request(void* object) noexcept {
  delete static_cast<ControlRequest*>(object);  // releases an unanswered response once
}

// Wire formats of the listener messages (plain bytes; inline for exits).
constexpr std::uint32_t kExitMagic = 0x65766878;   // "evhx"
constexpr std::uint32_t kErrorMagic = 0x65766865;  // "evhe"
struct ExitWire {
  std::uint32_t magic = kExitMagic;
  std::uint8_t reason = 0;
  std::uint8_t reserved[3] = {};
  std::uint64_t isolate = 0;
};
struct ErrorHeader {
  std::uint32_t magic = kErrorMagic;
  std::uint32_t reserved = 0;
  std::uint64_t isolate = 0;
};

std::string describe(const std::exception_ptr& error) {
  try {
    if (error) std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
  }
  return "unknown exception";
}

Message exit_message(ExitReason reason, PortId isolate) noexcept {
  ExitWire w;
  w.reason = static_cast<std::uint8_t>(reason);
  w.isolate = static_cast<std::uint64_t>(isolate);
  return Message::bytes(std::as_bytes(std::span(&w, 1)));  // inline: cannot throw
}

}  // namespace

void IsolateImpl::send_control(int kind, PortId reply, Message response) noexcept {
  auto* request = new ControlRequest{kind, reply, std::move(response)};
  Message m = Message::native(request, drop_request);
  MessageAccess::set_port(m, PortId::none);
  // Control messages (kill, exit checks, pings) have nobody to report to (README, "Guarantees
  // and limits"); the allocation above ends the process the same way.
  if (!enqueue(std::move(m), Priority::oob)) fatal_out_of_memory("an isolate's control message");
}

void IsolateImpl::on_control_message(Message& message) noexcept {
  auto* request = static_cast<ControlRequest*>(message.native_object());
  if (request == nullptr) return;
  switch (request->kind) {
    case kControlPing:
      (void)host().post(request->reply, std::move(request->response));
      break;
    case kControlAnswerPings:
      answer_immediate_pings();
      break;
    case kControlCheckExit:
      exit_if_unreachable();
      break;
    default:
      break;
  }
}

Status IsolateImpl::ping(PortId reply, Message response, ControlPriority priority) noexcept {
  if (is_dead()) return Errc::isolate_dead;  // `response` is released by its destructor
  if (priority == ControlPriority::before_next_event) {
    send_control(kControlPing, reply, std::move(response));
    return {};
  }
  if (!life().queue_ping(reply, response, interrupt_, kInterruptPing)) return Errc::isolate_dead;
  // An idle isolate answers at once; a busy one at its next boundary or safe point.
  send_control(kControlAnswerPings, {}, {});
  return {};
}

void IsolateImpl::answer_immediate_pings() noexcept {
  IsolateLife* l = life_if_any();
  if (l == nullptr) return;
  for (auto& p : l->take_pings(interrupt_, kInterruptPing)) {
    (void)host().post(p.reply, std::move(p.response));
  }
}

Status IsolateImpl::handle_interrupts() noexcept {
  if (!owns_turn()) return Errc::wrong_thread;
  // A safe point of a long message: what this thread queued to run after it runs elsewhere.
  runner().share_local_work();
  if (kill_requested()) return Errc::isolate_dead;
  if ((interrupt_.load(std::memory_order_acquire) & kInterruptPing) != 0) answer_immediate_pings();
  return kill_requested() ? Status{Errc::isolate_dead} : Status{};
}

PauseCapability IsolateImpl::pause(PauseCapability capability) noexcept {
  if (!capability) capability.value = static_cast<std::uint64_t>(host().next_id());
  (void)life().add_pause(capability.value, paused_);
  return capability;
}

Status IsolateImpl::resume(PauseCapability capability) noexcept {
  IsolateLife* l = life_if_any();
  if (l == nullptr || !capability) return Errc::invalid_argument;
  const std::optional<std::uint32_t> before = l->remove_pause(capability.value, paused_);
  if (!before) return Errc::invalid_argument;
  // The last resume: a turn that went idle while paused may have left normal messages queued.
  // Only the consumer may read the queue's head, so schedule a turn and let it look.
  if (*before == 1 && state_.load(std::memory_order_seq_cst) == kIdle) try_schedule();
  return {};
}

Status IsolateImpl::add_listener(ListenerKind kind, PortId port) noexcept {
  if (port == PortId::none) return Errc::unknown_port;
  if (life().add_listener(kind, port)) return {};
  if (kind == ListenerKind::error) return Errc::isolate_dead;
  // Already exited: tell it now, so that no listener waits for ever.
  const auto reason = static_cast<ExitReason>(exit_reason_.load(std::memory_order_acquire));
  (void)host().post(port, exit_message(reason, main_port_id_));
  return {};
}

Status IsolateImpl::remove_listener(ListenerKind kind, PortId port) noexcept {
  IsolateLife* l = life_if_any();
  if (l == nullptr || !l->remove_listener(kind, port)) return Errc::unknown_port;
  return {};
}

void IsolateImpl::set_errors_fatal(ErrorsFatal fatal) noexcept {
  life().set_errors_fatal(fatal);
}

void IsolateImpl::tell_exit_listeners(ExitReason reason) noexcept {
  IsolateLife* l = life_if_any();
  if (l == nullptr) return;
  for (PortId port : l->exit_listeners_at_exit()) {
    (void)host().post(port, exit_message(reason, main_port_id_));
  }
}

void IsolateImpl::tell_error_listeners(std::exception_ptr error) noexcept {
  IsolateLife* l = life_if_any();
  if (l == nullptr) return;
  ErrorsFatal fatal = ErrorsFatal::no;
  const std::vector<PortId> listeners = l->error_listeners(fatal);
  if (!listeners.empty()) {
    try {
      const std::string what = describe(error);
      ErrorHeader h;
      h.isolate = static_cast<std::uint64_t>(main_port_id_);
      std::string wire(sizeof h + what.size(), '\0');
      std::memcpy(wire.data(), &h, sizeof h);
      std::memcpy(wire.data() + sizeof h, what.data(), what.size());
      for (PortId port : listeners) {
        (void)host().post(port, Message::bytes(std::string_view(wire)));
      }
    } catch (...) {
      // Out of memory describing the error: the exception is still counted and reported to
      // RuntimeOptions::on_uncaught.
    }
  }
  if (fatal == ErrorsFatal::yes) kill(KillPriority::before_next_event, ExitReason::error);
}

}  // namespace detail

std::optional<IsolateExit> decode_isolate_exit(const Message& message) noexcept {
  const auto bytes = message.data();
  if (bytes.size() != sizeof(detail::ExitWire)) return std::nullopt;
  detail::ExitWire w;
  std::memcpy(&w, bytes.data(), sizeof w);
  if (w.magic != detail::kExitMagic || w.reason > 2) return std::nullopt;
  return IsolateExit{static_cast<PortId>(w.isolate), static_cast<ExitReason>(w.reason)};
}

std::optional<IsolateError> decode_isolate_error(const Message& message) {
  const auto bytes = message.data();
  if (bytes.size() < sizeof(detail::ErrorHeader)) return std::nullopt;
  detail::ErrorHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != detail::kErrorMagic) return std::nullopt;
  return IsolateError{
      static_cast<PortId>(h.isolate),
      std::string(reinterpret_cast<const char*>(bytes.data()) + sizeof h, bytes.size() - sizeof h)};
}

}  // namespace evh
