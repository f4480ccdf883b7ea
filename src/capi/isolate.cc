// The C API's isolates: spawn, the control plane, ports, microtasks, reported errors.
#include <algorithm>
#include <span>

#include "capi/handles.h"
#include "capi/options.h"

namespace evh::capi {

void unref(evh_isolate* handle) noexcept {
  // acq_rel: the last one to drop sees every other holder's writes before freeing.
  if (handle->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    handle->magic = kFreed;
    delete handle;  // releases its IsolateRef
  }
}

namespace {

void on_message(Isolate& self, Message& message, void* user) {
  auto* handle = static_cast<evh_isolate*>(user);
  TurnScope turn(handle, self);
  handle->on_message(handle, to_c(&message), handle->user);
  TurnScope::raise_reported(handle);
}

void on_batch(Isolate& self, std::span<Message> messages, void* user) {
  auto* handle = static_cast<evh_isolate*>(user);
  evh_message* each[kMaxBatch];
  const std::size_t n = std::min(messages.size(), kMaxBatch);  // evh gives at most kMaxBatch
  for (std::size_t i = 0; i < n; ++i) each[i] = to_c(&messages[i]);
  TurnScope turn(handle, self);
  handle->on_batch(handle, each, n, handle->user);
  TurnScope::raise_reported(handle);
}

void on_packed(Isolate& self, PackedMessages messages, void* user) {
  auto* handle = static_cast<evh_isolate*>(user);
  TurnScope turn(handle, self);
  handle->on_packed(handle, messages.data(), messages.size(), messages.each(), messages.stride(),
                    handle->user);
  TurnScope::raise_reported(handle);
}

// The C callback, reached through the isolate's data (the handle).
void on_high_water(Isolate& self, std::uint64_t depth) {
  auto* handle = static_cast<evh_isolate*>(self.data());
  TurnScope turn(handle, self);
  handle->on_high_water(handle, depth, handle->user);
  TurnScope::raise_reported(handle);
}

// The isolate exited (or never started): the embedder's user data goes, then the isolate's own
// reference to its handle.
void on_exit(void* user) noexcept {
  auto* handle = static_cast<evh_isolate*>(user);
  if (handle->destroy_user != nullptr) handle->destroy_user(handle->user);
  unref(handle);
}

struct Microtask {
  evh_microtask_fn fn;
  void* arg;
  evh_finalizer drop;
};

void run_microtask(Isolate& self, void* p) {
  std::unique_ptr<Microtask> task(static_cast<Microtask*>(p));
  auto* handle = static_cast<evh_isolate*>(self.data());
  TurnScope turn(handle, self);
  task->fn(handle, task->arg);
  TurnScope::raise_reported(handle);
}

void drop_microtask(void* p) noexcept {
  std::unique_ptr<Microtask> task(static_cast<Microtask*>(p));
  if (task->drop != nullptr) task->drop(task->arg);
}

// A handle the caller may use for any-thread calls: valid, and its isolate set.
evh::Isolate* any_thread(const evh_isolate* handle) noexcept {
  return valid(handle) ? handle->isolate : nullptr;
}

bool valid_priority(int priority) noexcept {
  return priority == EVH_IMMEDIATE || priority == EVH_BEFORE_NEXT_EVENT;
}

// The fills behind the `_size` entry points (write_out).
int fill_stats(const evh_isolate* isolate, evh_isolate_stats* out) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr) return EVH_EINVAL;
  const evh::IsolateStats s = iso->stats();
  *out = evh_isolate_stats{s.handled, s.dropped, s.exceptions,    s.turns,
                           s.wakeups, s.yields,  s.mailbox_depth, s.mailbox_peak};
  return EVH_OK;
}

int fill_timer_stats(evh_isolate* self, evh_timer_stats* out) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  *out = to_c(iso->timer_stats());
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

namespace evh::capi {
namespace {

// Every spawn: exactly one of the message and batch forms is set; the packed form only beside
// the batch form.
int spawn(evh_runtime* rt, evh_message_fn on_message_fn, evh_batch_fn on_batch_fn,
          evh_packed_fn on_packed_fn, void* user, evh_finalizer destroy_user,
          const evh_isolate_options* options, evh_isolate** out) {
  // `user` is evh's from here on: every failure releases it before returning.
  auto fail = [&](int error) {
    if (destroy_user != nullptr) destroy_user(user);
    return error;
  };
  if (out != nullptr) *out = nullptr;
  if (out == nullptr || !valid(rt) || (on_message_fn == nullptr && on_batch_fn == nullptr) ||
      (on_packed_fn != nullptr && on_batch_fn == nullptr)) {
    return fail(EVH_EINVAL);
  }
  evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;
  if (int e = read_options(options, o); e != EVH_OK) return fail(e);
  evh::TaskRunner* runner = nullptr;
  if (o.runner != nullptr) {
    if (!valid(o.runner)) return fail(EVH_EINVAL);
    if (o.runner->runtime != rt) return fail(EVH_EFOREIGN);
    runner = o.runner->runner;
  }
  auto* handle = new (std::nothrow) evh_isolate;
  if (handle == nullptr) return fail(EVH_ENOMEM);
  handle->runtime = rt;
  handle->on_message = on_message_fn;
  handle->on_batch = on_batch_fn;
  handle->on_packed = on_packed_fn;
  handle->user = user;
  handle->destroy_user = destroy_user;
  handle->on_high_water = o.on_mailbox_high_water;
  // From here the handle's on_exit releases `user`, also when spawn() fails.
  evh::IsolateHandler h{nullptr, handle, &on_exit};
  if (on_batch_fn != nullptr) {
    h.on_batch = &on_batch;
    if (on_packed_fn != nullptr) h.on_packed = &on_packed;
  } else {
    h.on_message = &on_message;
  }
  evh::IsolateOptions io;
  io.runner = runner;
  io.budget = o.budget;
  io.data = handle;
  io.errors_are_fatal = o.errors_are_fatal != 0 ? evh::ErrorsFatal::yes : evh::ErrorsFatal::no;
  if (o.mailbox_high_water != 0 && o.on_mailbox_high_water != nullptr) {
    io.mailbox_high_water = o.mailbox_high_water;
    io.on_mailbox_high_water = &on_high_water;
  }
  int error = EVH_OK;
  try {
    auto spawned = rt->rt->spawn(h, io);
    if (spawned.ok()) {
      handle->ref = std::move(*spawned);
    } else {
      error = to_c(spawned.error());
    }
  } catch (const std::bad_alloc&) {
    // Thrown before the runtime took the handler (it releases it on every error it returns).
    on_exit(handle);
    error = EVH_ENOMEM;
  }
  if (error != EVH_OK) {
    unref(handle);  // the caller's reference, never handed out
    return error;
  }
  handle->isolate = handle->ref.get();
  rt->handles.fetch_add(1, std::memory_order_relaxed);
  *out = handle;
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

int evh_isolate_spawn(evh_runtime* rt, evh_message_fn on_message_fn, void* user,
                      evh_finalizer destroy_user, const evh_isolate_options* options,
                      evh_isolate** out) {
  return evh::capi::spawn(rt, on_message_fn, nullptr, nullptr, user, destroy_user, options, out);
}

int evh_isolate_spawn_batch(evh_runtime* rt, evh_batch_fn on_batch_fn, void* user,
                            evh_finalizer destroy_user, const evh_isolate_options* options,
                            evh_isolate** out) {
  return evh::capi::spawn(rt, nullptr, on_batch_fn, nullptr, user, destroy_user, options, out);
}

int evh_isolate_spawn_packed(evh_runtime* rt, evh_batch_fn on_batch_fn, evh_packed_fn on_packed_fn,
                             void* user, evh_finalizer destroy_user,
                             const evh_isolate_options* options, evh_isolate** out) {
  if (on_batch_fn == nullptr || on_packed_fn == nullptr) {
    if (out != nullptr) *out = nullptr;
    if (destroy_user != nullptr) destroy_user(user);
    return EVH_EINVAL;
  }
  return evh::capi::spawn(rt, nullptr, on_batch_fn, on_packed_fn, user, destroy_user, options, out);
}

int evh_isolate_retain(evh_isolate* isolate) {
  if (any_thread(isolate) == nullptr) return EVH_EINVAL;
  isolate->refs.fetch_add(1, std::memory_order_relaxed);
  isolate->runtime->handles.fetch_add(1, std::memory_order_relaxed);
  return EVH_OK;
}

int evh_isolate_release(evh_isolate* isolate) {
  if (any_thread(isolate) == nullptr) return EVH_EINVAL;
  // release: pairs with evh_runtime_destroy's acquire load of the count.
  isolate->runtime->handles.fetch_sub(1, std::memory_order_release);
  unref(isolate);
  return EVH_OK;
}

evh_port_id evh_isolate_main_port(const evh_isolate* isolate) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr ? static_cast<evh_port_id>(iso->main_port()) : 0;
}

void* evh_isolate_user(const evh_isolate* isolate) {
  return valid(isolate) ? isolate->user : nullptr;
}

evh_runtime* evh_isolate_runtime(const evh_isolate* isolate) {
  return valid(isolate) ? isolate->runtime : nullptr;
}

int evh_isolate_is_dead(const evh_isolate* isolate) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr) return EVH_EINVAL;
  return iso->is_dead() ? 1 : 0;
}

int evh_isolate_kill(evh_isolate* isolate, int priority) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr || !valid_priority(priority)) return EVH_EINVAL;
  iso->kill(static_cast<evh::KillPriority>(priority));
  return EVH_OK;
}

int evh_isolate_ping(evh_isolate* isolate, evh_port_id reply, const void* data, size_t size,
                     int priority) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr || !valid_priority(priority) || (data == nullptr && size != 0) ||
      size > UINT32_MAX) {
    return EVH_EINVAL;
  }
  return guarded([&] {
    auto bytes = std::span(static_cast<const std::byte*>(data), size);
    return to_c(iso->ping(port_id(reply), evh::Message::bytes(bytes),
                          static_cast<evh::ControlPriority>(priority)));
  });
}

int evh_isolate_pause(evh_isolate* isolate, uint64_t capability, uint64_t* out) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr) return EVH_EINVAL;
  const evh::PauseCapability c = iso->pause(evh::PauseCapability{capability});
  if (out != nullptr) *out = c.value;
  return EVH_OK;
}

int evh_isolate_resume(evh_isolate* isolate, uint64_t capability) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr) return EVH_EINVAL;
  return to_c(iso->resume(evh::PauseCapability{capability}));
}

int evh_isolate_add_exit_listener(evh_isolate* isolate, evh_port_id port) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr ? to_c(iso->add_exit_listener(port_id(port))) : EVH_EINVAL;
}

int evh_isolate_remove_exit_listener(evh_isolate* isolate, evh_port_id port) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr ? to_c(iso->remove_exit_listener(port_id(port))) : EVH_EINVAL;
}

int evh_isolate_add_error_listener(evh_isolate* isolate, evh_port_id port) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr ? to_c(iso->add_error_listener(port_id(port))) : EVH_EINVAL;
}

int evh_isolate_remove_error_listener(evh_isolate* isolate, evh_port_id port) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr ? to_c(iso->remove_error_listener(port_id(port))) : EVH_EINVAL;
}

int evh_isolate_set_errors_fatal(evh_isolate* isolate, int fatal) {
  evh::Isolate* iso = any_thread(isolate);
  if (iso == nullptr) return EVH_EINVAL;
  iso->set_errors_fatal(fatal != 0 ? evh::ErrorsFatal::yes : evh::ErrorsFatal::no);
  return EVH_OK;
}

int evh_isolate_interrupt_requested(const evh_isolate* isolate) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr && iso->interrupt_requested() ? 1 : 0;
}

int evh_isolate_handle_interrupts(evh_isolate* self) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  return to_c(iso->handle_interrupts());
}

int evh_isolate_report_error(evh_isolate* self, const char* what) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  return guarded([&] {
    self->error = what != nullptr ? what : "error";
    self->error_pending = true;
    return EVH_OK;
  });
}

int evh_isolate_open_port(evh_isolate* self, evh_port_id* out) {
  if (out != nullptr) *out = 0;
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  if (out == nullptr) return EVH_EINVAL;
  return guarded([&] {
    auto port = iso->open_port();
    if (!port.ok()) return to_c(port.error());
    *out = static_cast<evh_port_id>(*port);
    return EVH_OK;
  });
}

int evh_isolate_close_port(evh_isolate* isolate, evh_port_id port) {
  evh::Isolate* iso = any_thread(isolate);
  return iso != nullptr ? to_c(iso->close_port(port_id(port))) : EVH_EINVAL;
}

int evh_isolate_microtask(evh_isolate* self, evh_microtask_fn fn, void* arg, evh_finalizer drop) {
  evh::Isolate* iso = nullptr;
  int error = check_own_turn(self, iso);
  if (error == EVH_OK && fn == nullptr) error = EVH_EINVAL;
  if (error == EVH_OK) {
    error = guarded([&] {
      auto task = std::make_unique<Microtask>(Microtask{fn, arg, drop});
      const evh::Status st = iso->schedule_microtask(&run_microtask, task.get(), &drop_microtask);
      if (!st.ok()) return to_c(st.error());  // `task` is still ours: freed here
      task.release();  // the isolate's now: run_microtask or drop_microtask frees it
      return EVH_OK;
    });
  }
  if (error != EVH_OK && drop != nullptr) drop(arg);
  return error;
}

int evh_isolate_stats_get_size(const evh_isolate* isolate, evh_isolate_stats* out,
                               size_t out_size) {
  return write_out(out, out_size, &fill_stats, isolate);
}

int evh_isolate_timer_stats_size(evh_isolate* self, evh_timer_stats* out, size_t out_size) {
  return write_out(out, out_size, &fill_timer_stats, self);
}

}  // extern "C"
