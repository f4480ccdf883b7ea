// The public face of processes: decoding their events, Process and ProcessManager forwarding.
#include <evh/process.h>

#include <cstring>

#include "base/message_access.h"
#include "proc/process_manager.h"
#include "proc/process_state.h"

namespace evh {

std::optional<ProcessEvent> decode_process_event(const Message& message) noexcept {
  // A stream's data is a native payload (its release returns the stream's credit).
  const auto data = detail::MessageAccess::finalizer(message) == &detail::release_data_message
                        ? detail::data_message_bytes(message.native_object())
                        : message.data();
  if (data.size() < sizeof(detail::EventHeader)) return std::nullopt;
  detail::EventHeader h;
  std::memcpy(&h, data.data(), sizeof h);
  if (h.magic != detail::EventHeader::kMagic) return std::nullopt;
  if (h.kind < ProcessEventKind::stdout_data || h.kind > ProcessEventKind::stdin_ready) {
    return std::nullopt;
  }
  ProcessEvent ev;
  ev.kind = h.kind;
  ev.pid = h.pid;
  ev.tag = h.tag;
  ev.exit_code = h.exit_code;
  ev.data = data.subspan(sizeof h);
  return ev;
}

Process::Process(std::shared_ptr<detail::ProcessState> state) noexcept : state_(std::move(state)) {}
Process::~Process() = default;

pid_t Process::pid() const noexcept {
  return state_ ? state_->pid_ : -1;
}

Result<std::size_t> Process::write_stdin(std::span<const std::byte> bytes) noexcept {
  if (!state_) return Errc::invalid_argument;
  return state_->write_stdin(bytes);
}

void Process::close_stdin() noexcept {
  if (state_) state_->close_stdin();
}

Status Process::kill(int signal) noexcept {
  if (!state_) return Errc::invalid_argument;
  return state_->kill(signal);
}

Status Process::kill_group(int signal) noexcept {
  if (!state_) return Errc::invalid_argument;
  return state_->kill_group(signal);
}

std::optional<int> Process::exit_code() const noexcept {
  if (!state_) return std::nullopt;
  return state_->exit_code();
}

ProcessManager::ProcessManager(Runtime& runtime)
    : impl_(std::make_shared<detail::ProcessManagerImpl>(runtime)) {}

ProcessManager::~ProcessManager() {
  impl_->shutdown();
}

Result<Process> ProcessManager::spawn(const SpawnOptions& options) {
  return impl_->spawn(options);
}

ProcessManagerStats ProcessManager::stats() const noexcept {
  return impl_->stats();
}

Runtime& ProcessManager::runtime() const noexcept {
  return impl_->rt_;
}

}  // namespace evh
