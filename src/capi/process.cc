// The C API's child processes and signal watchers.
#include <evh/process.h>
#include <evh/signal.h>

#include <cstdio>
#include <cstring>

#include "capi/handles.h"
#include "capi/options.h"

namespace evh::capi {
namespace {

static_assert(EVH_PIPE_SIZE_MIN == kMinOutputPipeSize && EVH_PIPE_SIZE_MAX == kMaxOutputPipeSize);
static_assert(EVH_PROCESS_STDOUT == static_cast<int>(ProcessEventKind::stdout_data) &&
              EVH_PROCESS_STDERR == static_cast<int>(ProcessEventKind::stderr_data) &&
              EVH_PROCESS_EXIT == static_cast<int>(ProcessEventKind::exit) &&
              EVH_PROCESS_STDIN_READY == static_cast<int>(ProcessEventKind::stdin_ready));

bool stdio_of(const evh_stdio& c, Stdio& out) noexcept {
  switch (c.mode) {
    case EVH_STDIO_PIPE:
      out = Stdio::pipe();
      return true;
    case EVH_STDIO_INHERIT:
      out = Stdio::inherit();
      return true;
    case EVH_STDIO_NULL:
      out = Stdio::null();
      return true;
    case EVH_STDIO_FD:
      out = Stdio::from_fd(c.fd);
      return true;
    default:
      return false;
  }
}

void copy_message(std::string_view text, char* buffer, size_t capacity) noexcept {
  if (buffer == nullptr || capacity == 0) return;
  const size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(buffer, text.data(), n);
  buffer[n] = '\0';
}

// The runtime's process manager, created by the first spawn; null once shutdown began. The
// caller holds `lock` (shared) while it uses the manager, so shutdown waits for it.
ProcessManager* manager(evh_runtime* rt, std::shared_lock<std::shared_mutex>& lock) {
  lock = std::shared_lock(rt->processes_mu);
  if (rt->processes != nullptr || rt->processes_closed) return rt->processes.get();
  lock.unlock();
  {
    std::unique_lock create(rt->processes_mu);
    if (rt->processes == nullptr && !rt->processes_closed) {
      rt->processes = std::make_unique<ProcessManager>(*rt->rt);
    }
  }
  lock.lock();
  return rt->processes.get();
}

int spawn(evh_runtime* rt, const evh_process_options& c, evh_process** out) {
  SpawnOptions o;
  for (const char* const* a = c.argv; *a != nullptr; ++a) o.argv.emplace_back(*a);
  if (c.env != nullptr) {
    o.env.emplace();
    for (const char* const* e = c.env; *e != nullptr; ++e) o.env->emplace_back(*e);
  }
  if (c.cwd != nullptr) o.cwd = c.cwd;
  if (!stdio_of(c.stdio[0], o.stdin_mode) || !stdio_of(c.stdio[1], o.stdout_mode) ||
      !stdio_of(c.stdio[2], o.stderr_mode)) {
    return EVH_EINVAL;
  }
  o.events = port_id(c.events);
  o.tag = c.tag;
  if ((c.flags & EVH_PROCESS_KILL_ON_PARENT_DEATH) != 0) o.parent_death = ParentDeath::kill_child;
  if ((c.flags & EVH_PROCESS_NEW_GROUP) != 0) o.group = ProcessGroup::new_group;
  if ((c.flags & EVH_PROCESS_DETACHED) != 0) o.detach = Detach::yes;
  if (c.tie_to != nullptr) {
    if (!valid(c.tie_to) || c.tie_to->isolate == nullptr) return EVH_EINVAL;
    if (c.tie_to->runtime != rt) return EVH_EFOREIGN;
    o.tie_to = c.tie_to->isolate;
  }
  // The two appended fields: 0 is evh's default (so that a struct from an older caller, read
  // with them at 0, gets it), the C++ API's 0 ("no limit", "never grown") is SIZE_MAX.
  o.stream_window = c.stream_window == 0                             ? kDefaultStreamWindow
                    : c.stream_window == EVH_STREAM_WINDOW_UNLIMITED ? 0
                                                                     : c.stream_window;
  o.output_pipe_size = c.output_pipe_size == 0                    ? kDefaultOutputPipeSize
                       : c.output_pipe_size == EVH_PIPE_SIZE_KEEP ? 0
                                                                  : c.output_pipe_size;
  std::string error;
  o.error_message = &error;

  std::shared_lock<std::shared_mutex> lock;
  ProcessManager* pm = manager(rt, lock);
  if (pm == nullptr) return EVH_ESHUTTINGDOWN;
  auto child = pm->spawn(o);
  if (!child.ok()) {
    copy_message(error, c.error, c.error_capacity);
    return to_c(child.error());
  }
  auto p = std::make_unique<evh_process>();
  p->runtime = rt;
  p->process = std::move(*child);
  rt->handles.fetch_add(1, std::memory_order_relaxed);
  *out = p.release();
  return EVH_OK;
}

// The fills behind the `_size` entry points (write_out).
int fill_process_event(const evh_message* message, evh_process_event* out) {
  if (message == nullptr) return EVH_EINVAL;
  const auto ev = decode_process_event(*from_c(message));
  if (!ev) return EVH_EINVAL;
  *out = evh_process_event{static_cast<int>(ev->kind),
                           ev->pid,
                           ev->tag,
                           ev->exit_code,
                           ev->data.empty() ? nullptr : ev->data.data(),
                           ev->data.size()};
  return EVH_OK;
}

int fill_signal_event(const evh_message* message, evh_signal_event* out) {
  if (message == nullptr) return EVH_EINVAL;
  const auto ev = decode_signal_event(*from_c(message));
  if (!ev) return EVH_EINVAL;
  *out = evh_signal_event{ev->signal, ev->count};
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

int evh_process_spawn(evh_runtime* rt, const evh_process_options* options, evh_process** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  if (options == nullptr) return EVH_EINVAL;
  evh_process_options o = EVH_PROCESS_OPTIONS_INIT;
  if (int e = read_options(options, o); e != EVH_OK) return e;
  if (!valid(rt) || o.argv == nullptr || o.argv[0] == nullptr ||
      (o.flags & ~static_cast<unsigned>(EVH_PROCESS_KILL_ON_PARENT_DEATH | EVH_PROCESS_NEW_GROUP |
                                        EVH_PROCESS_DETACHED)) != 0 ||
      (o.error == nullptr && o.error_capacity != 0)) {
    return EVH_EINVAL;
  }
  if (o.error != nullptr && o.error_capacity != 0) o.error[0] = '\0';
  // Checked here rather than left to the C++ API, whose message would name its own encoding
  // (0 for "never grown").
  if (o.output_pipe_size != 0 && o.output_pipe_size != EVH_PIPE_SIZE_KEEP &&
      (o.output_pipe_size < EVH_PIPE_SIZE_MIN || o.output_pipe_size > EVH_PIPE_SIZE_MAX)) {
    char why[160];
    std::snprintf(why, sizeof why,
                  "output_pipe_size %zu is not 0 (the default), EVH_PIPE_SIZE_KEEP or %zu..%zu "
                  "bytes",
                  o.output_pipe_size, EVH_PIPE_SIZE_MIN, EVH_PIPE_SIZE_MAX);
    copy_message(why, o.error, o.error_capacity);
    return EVH_EINVAL;
  }
  return guarded([&] { return spawn(rt, o, out); });
}

int evh_process_pid(const evh_process* process) {
  return valid(process) ? process->process.pid() : 0;
}

int64_t evh_process_write_stdin(evh_process* process, const void* data, size_t size) {
  if (!valid(process) || (data == nullptr && size != 0)) return EVH_EINVAL;
  auto n = process->process.write_stdin(std::span(static_cast<const std::byte*>(data), size));
  return n.ok() ? static_cast<int64_t>(*n) : to_c(n.error());
}

int evh_process_close_stdin(evh_process* process) {
  if (!valid(process)) return EVH_EINVAL;
  process->process.close_stdin();
  return EVH_OK;
}

int evh_process_kill(evh_process* process, int signal) {
  if (!valid(process)) return EVH_EINVAL;
  return to_c(process->process.kill(signal));
}

int evh_process_kill_group(evh_process* process, int signal) {
  if (!valid(process)) return EVH_EINVAL;
  return to_c(process->process.kill_group(signal));
}

int evh_process_exit_code(const evh_process* process, int* code) {
  if (!valid(process) || code == nullptr) return EVH_EINVAL;
  const auto c = process->process.exit_code();
  if (!c) return EVH_EAGAIN;
  *code = *c;
  return EVH_OK;
}

int evh_process_release(evh_process* process) {
  if (!valid(process)) return EVH_EINVAL;
  return release_counted(process);
}

int evh_message_process_event_size(const evh_message* message, evh_process_event* out,
                                   size_t out_size) {
  return write_out(out, out_size, &fill_process_event, message);
}

// ---- signals ----

int evh_signal_watch(evh_runtime* rt, int signal, evh_port_id port, evh_signal_watcher** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  if (!valid(rt)) return EVH_EINVAL;
  return guarded([&] {
    auto w = evh::SignalWatcher::watch(*rt->rt, signal, port_id(port));
    if (!w.ok()) return to_c(w.error());
    auto h = std::make_unique<evh_signal_watcher>();
    h->runtime = rt;
    h->watcher = std::move(*w);
    rt->handles.fetch_add(1, std::memory_order_relaxed);
    *out = h.release();
    return EVH_OK;
  });
}

int evh_signal_stop(evh_signal_watcher* watcher) {
  if (!valid(watcher)) return EVH_EINVAL;
  watcher->watcher.stop();
  return EVH_OK;
}

int evh_signal_destroy(evh_signal_watcher* watcher) {
  if (!valid(watcher)) return EVH_EINVAL;
  return release_counted(watcher);  // stops it
}

int evh_message_signal_event_size(const evh_message* message, evh_signal_event* out,
                                  size_t out_size) {
  return write_out(out, out_size, &fill_signal_event, message);
}

}  // extern "C"
