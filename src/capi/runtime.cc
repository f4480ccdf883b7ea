// The C API's runtimes and runners.
#include <cstring>
#include <exception>

#include "capi/handles.h"
#include "capi/options.h"

namespace evh::capi {
namespace {

void forward_uncaught(Isolate& isolate, std::exception_ptr error, void* user) {
  auto* rt = static_cast<evh_runtime*>(user);
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  // Every isolate of a C runtime is spawned by evh_isolate_spawn, with its handle as data();
  // evh's own (a child's reaper, a signal watcher) have none.
  rt->on_uncaught(static_cast<evh_isolate*>(isolate.data()), what.c_str(), rt->on_uncaught_user);
}

bool to_cpp(const evh_runtime_options& c, RuntimeOptions& o) noexcept {
  using std::chrono::duration_cast;
  if (!bounded_duration(c.worker_idle_timeout_ns) || !bounded_duration(c.spin_before_park_ns) ||
      !bounded_duration(c.time_slice_ns) || c.default_budget == 0) {
    return false;
  }
  o.max_workers = c.max_workers;
  o.min_workers = c.min_workers;
  o.worker_idle_timeout =
      duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(c.worker_idle_timeout_ns));
  o.spin_before_park =
      duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(c.spin_before_park_ns));
  o.default_budget = c.default_budget;
  o.time_slice =
      duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(c.time_slice_ns));
  return true;
}

// An embedder's runner: the TaskRunner interface over a struct of C callbacks.
class CallbackRunner final : public TaskRunner {
 public:
  explicit CallbackRunner(const evh_runner_callbacks& c) noexcept : c_(c) {}
  void post(Task& task) noexcept override { c_.post(reinterpret_cast<evh_task*>(&task), c_.user); }
  void post_yielded(Task& task) noexcept override {
    (c_.post_yielded != nullptr ? c_.post_yielded : c_.post)(reinterpret_cast<evh_task*>(&task),
                                                             c_.user);
  }
  bool work_is_waiting() const noexcept override {
    return c_.work_is_waiting != nullptr && c_.work_is_waiting(c_.user) != 0;
  }

 private:
  evh_runner_callbacks c_;
};

int add_runner(evh_runtime* rt, std::unique_ptr<evh_runner> r, evh_runner** out) {
  std::lock_guard lock(rt->runners_mu);
  rt->runners.push_back(std::move(r));
  *out = rt->runners.back().get();
  return EVH_OK;
}

// The fills behind the `_size` entry points (write_out).
int fill_stats(evh_runtime* rt, evh_runtime_stats* out) {
  if (!valid(rt)) return EVH_EINVAL;
  const RuntimeStats s = rt->rt->stats();
  *out = evh_runtime_stats{
      s.isolates_live, s.isolates_spawned, s.ports_open,    s.workers_live,      s.workers_started,
      s.exceptions,    s.timer_deadlines,  s.mailbox_depth, s.mailbox_depth_max, s.mailbox_peak};
  return EVH_OK;
}

int fill_timer_stats(evh_runtime* rt, evh_timer_stats* out) {
  if (!valid(rt)) return EVH_EINVAL;
  *out = to_c(rt->rt->timer_stats());
  return EVH_OK;
}

}  // namespace
}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

void evh_runtime_options_init_size(evh_runtime_options* options, size_t size) {
  // Smaller than the first layout (or garbage): no struct of ours; writing would overrun it.
  if (options == nullptr || size < kFirstLayoutEnd<evh_runtime_options> || size > kMaxOptionsSize) {
    return;
  }
  const evh::RuntimeOptions d;
  evh_runtime_options ours{};
  ours.max_workers = d.max_workers;
  ours.min_workers = d.min_workers;
  ours.worker_idle_timeout_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(d.worker_idle_timeout).count();
  ours.spin_before_park_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(d.spin_before_park).count();
  ours.default_budget = d.default_budget;
  ours.time_slice_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d.time_slice).count();
  // A caller's struct of another version: only its own bytes are written (a bigger one's fields
  // this library does not know are zero, which read_options accepts).
  std::memset(static_cast<void*>(options), 0, size);
  std::memcpy(static_cast<void*>(options), &ours, std::min(size, sizeof ours));
  options->size = size;
}

int evh_runtime_create(const evh_runtime_options* options, evh_runtime** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  evh_runtime_options c;
  evh_runtime_options_init_size(&c, sizeof c);
  if (int e = read_options(options, c); e != EVH_OK) return e;
  evh::RuntimeOptions o;
  if (!to_cpp(c, o)) return EVH_EINVAL;
  return guarded([&] {
    auto rt = std::make_unique<evh_runtime>();
    if (c.on_uncaught != nullptr) {
      rt->on_uncaught = c.on_uncaught;
      rt->on_uncaught_user = c.on_uncaught_user;
      o.on_uncaught = &forward_uncaught;
      o.on_uncaught_user = rt.get();
    }
    rt->rt = std::make_unique<evh::Runtime>(o);
    *out = rt.release();
    return EVH_OK;
  });
}

int evh_runtime_shutdown(evh_runtime* rt) {
  if (!valid(rt)) return EVH_EINVAL;
  // Shutting down joins the runtime's threads and waits for every isolate to finish: from inside
  // a callback it would wait for itself.
  if (current_turn().handle != nullptr) return EVH_EWRONGTHREAD;
  std::lock_guard once(rt->shutdown_mu);
  if (rt->shut_down.load(std::memory_order_acquire)) return EVH_OK;
  {
    // The process manager goes first (it kills and reaps the children still running), as the
    // C++ API requires it to go before its Runtime.
    std::unique_lock lock(rt->processes_mu);
    rt->processes_closed = true;
    rt->processes.reset();
  }
  rt->rt->shutdown();
  rt->shut_down.store(true, std::memory_order_release);
  return EVH_OK;
}

int evh_runtime_destroy(evh_runtime* rt) {
  if (!valid(rt)) return EVH_EINVAL;
  if (current_turn().handle != nullptr) return EVH_EWRONGTHREAD;
  if (rt->handles.load(std::memory_order_acquire) != 0) return EVH_EBUSY;
  (void)evh_runtime_shutdown(rt);
  rt->rt.reset();
  rt->runners.clear();  // after the Runtime: they must outlive the isolates bound to them
  rt->magic = kFreed;
  delete rt;
  return EVH_OK;
}

int evh_runtime_stats_get_size(evh_runtime* rt, evh_runtime_stats* out, size_t out_size) {
  return write_out(out, out_size, &fill_stats, rt);
}

int evh_runtime_timer_stats_size(evh_runtime* rt, evh_timer_stats* out, size_t out_size) {
  return write_out(out, out_size, &fill_timer_stats, rt);
}

int evh_runner_dedicated(evh_runtime* rt, const char* name, evh_runner** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  if (!valid(rt)) return EVH_EINVAL;
  if (rt->shut_down.load(std::memory_order_acquire)) return EVH_ESHUTTINGDOWN;
  return guarded([&] {
    auto r = std::make_unique<evh_runner>();
    r->runtime = rt;
    r->runner = &rt->rt->create_dedicated_runner(name != nullptr ? name : "evh-dedicated");
    return add_runner(rt, std::move(r), out);
  });
}

int evh_runner_embedder(evh_runtime* rt, const evh_runner_callbacks* callbacks, evh_runner** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = nullptr;
  if (!valid(rt) || callbacks == nullptr) return EVH_EINVAL;
  evh_runner_callbacks c = EVH_RUNNER_CALLBACKS_INIT;
  if (int e = read_options(callbacks, c); e != EVH_OK) return e;
  if (c.post == nullptr) return EVH_EINVAL;
  if (rt->shut_down.load(std::memory_order_acquire)) return EVH_ESHUTTINGDOWN;
  return guarded([&] {
    auto r = std::make_unique<evh_runner>();
    r->runtime = rt;
    r->owned = std::make_unique<CallbackRunner>(c);
    r->runner = r->owned.get();
    return add_runner(rt, std::move(r), out);
  });
}

void evh_task_run(evh_task* task) {
  if (task != nullptr) reinterpret_cast<evh::Task*>(task)->run();
}

evh_task* evh_task_next(const evh_task* task) {
  if (task == nullptr) return nullptr;
  return reinterpret_cast<evh_task*>(reinterpret_cast<const evh::Task*>(task)->runner_link);
}

void evh_task_set_next(evh_task* task, evh_task* next) {
  if (task != nullptr) {
    reinterpret_cast<evh::Task*>(task)->runner_link = reinterpret_cast<evh::Task*>(next);
  }
}

}  // extern "C"
