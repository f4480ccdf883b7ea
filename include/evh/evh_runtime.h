/* evh/evh_runtime.h — the C API's runtimes (evh_runtime): options, create, shutdown, destroy,
 * stats.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_RUNTIME_H
#define EVH_EVH_RUNTIME_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== runtime ============================================================================= */

typedef struct evh_runtime_options {
  size_t size; /* sizeof(evh_runtime_options): set by evh_runtime_options_init */
  /* The shared pool grows on demand up to max_workers threads (0: the number of online CPUs);
   * workers idle for worker_idle_timeout_ns exit, down to min_workers. */
  unsigned max_workers;
  unsigned min_workers;
  int64_t worker_idle_timeout_ns;
  /* How long an idle worker or a waiting receiver polls before sleeping in the kernel. */
  int64_t spin_before_park_ns;
  /* Messages an isolate handles per turn before giving way (> 0), and the time slice after
   * which it gives way even inside that budget. */
  uint32_t default_budget;
  int64_t time_slice_ns;
  /* Told about every error that escapes an isolate's callback (a C++ exception's what(), or
   * evh_isolate_report_error's text), on the isolate's thread; `isolate` is borrowed for the
   * call. May be NULL. Must not throw. */
  void (*on_uncaught)(evh_isolate* isolate, const char* what, void* user) EVH_NOEXCEPT;
  void* on_uncaught_user;
} evh_runtime_options;

/* Fills the first `size` bytes of `options` with the defaults (the C++ RuntimeOptions') and
 * sets its size: call it through evh_runtime_options_init, which passes the caller's sizeof. */
EVH_API void evh_runtime_options_init_size(evh_runtime_options* options, size_t size);
static inline void evh_runtime_options_init(evh_runtime_options* options) {
  evh_runtime_options_init_size(options, sizeof *options);
}

/* Creates a runtime: its own pool, ports and ids; nothing is shared between two runtimes.
 * `options` may be NULL (the defaults). Any thread. The caller owns *out and destroys it with
 * evh_runtime_destroy. Errors: EVH_EINVAL (a negative or huge duration, a zero budget),
 * EVH_EOPTIONS (see "options structs" in evh_core.h), the kernel's when a thread cannot start. */
EVH_API int evh_runtime_create(const evh_runtime_options* options, evh_runtime** out);

/* Orderly shutdown, idempotent: child processes still running are killed and reaped, the event
 * handler stops (every fd registration ends with its final notice), then every isolate is
 * killed — each payload still queued released exactly once — and the runtime's threads are
 * joined. Afterwards every call on this runtime or its handles fails with EVH_ESHUTTINGDOWN (or
 * EVH_EDEAD), and the handles can still be released. Blocks until done. Must
 * not be called from a thread the runtime owns: from inside a callback it returns
 * EVH_EWRONGTHREAD. Isolates bound to an embedder's runner must have their tasks run meanwhile. */
EVH_API int evh_runtime_shutdown(evh_runtime* rt);

/* Shuts the runtime down (if not yet) and frees it. EVH_EBUSY, with nothing done, while a
 * handle taken from it is still held: an isolate handle, a receiver, a process, a signal
 * watcher (release them first: they may be released after shutdown). Not concurrently with any
 * other call on the runtime or its handles. */
EVH_API int evh_runtime_destroy(evh_runtime* rt);

typedef struct evh_runtime_stats {
  uint64_t isolates_live;
  uint64_t isolates_spawned;
  uint64_t ports_open;
  uint64_t workers_live;
  uint64_t workers_started;
  uint64_t exceptions; /* errors that escaped isolates' callbacks */
  uint64_t timer_deadlines;
  uint64_t mailbox_depth;     /* messages queued in all live isolates' mailboxes now */
  uint64_t mailbox_depth_max; /* the deepest mailbox now */
  uint64_t mailbox_peak;      /* the deepest any live isolate's mailbox has been */
} evh_runtime_stats;

/* A snapshot. Any thread. */
EVH_API int evh_runtime_stats_get_size(evh_runtime* rt, evh_runtime_stats* out, size_t out_size);
static inline int evh_runtime_stats_get(evh_runtime* rt, evh_runtime_stats* out) {
  return evh_runtime_stats_get_size(rt, out, sizeof *out);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_RUNTIME_H */
