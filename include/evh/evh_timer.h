/* evh/evh_timer.h — the C API's timers (evh_timer, in the caller's memory) and their stats.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_TIMER_H
#define EVH_EVH_TIMER_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== timers ============================================================================== */

/* A timer lives in the caller's memory (a field of the runtime's own timer object), so that
 * starting and cancelling it allocate nothing and take O(1). EVH_TIMER_SIZE bytes aligned to
 * EVH_TIMER_ALIGN: declare an `evh_timer`, or carve one out of aligned memory
 * (aligned_alloc(EVH_TIMER_ALIGN, sizeof(evh_timer))). While armed it must neither move nor be
 * freed: cancel it first, or let a one-shot fire (it is disarmed before its callback runs; the
 * callback may free it). Its isolate's exit cancels it without calling it. */
#define EVH_TIMER_SIZE 128
#define EVH_TIMER_ALIGN 64
typedef struct evh_timer {
  EVH_ALIGNAS(EVH_TIMER_ALIGN) unsigned char opaque[EVH_TIMER_SIZE];
} evh_timer;

/* `skipped`: how many periods a periodic timer missed since its last run (it runs once for
 * them: no burst, no drift; SEMANTICS 15); 0 for a one-shot. Runs on the isolate's own turn. */
typedef void (*evh_timer_fn)(evh_isolate* self, evh_timer* timer, uint64_t skipped, void* user);

/* Slack: how late a timer may fire so that timers close together share one wakeup.
 * EVH_SLACK_COARSE: min(50 us, delay / 8); EVH_SLACK_EXACT: as soon as the kernel allows; a
 * positive value: that many nanoseconds. */
#define EVH_SLACK_COARSE (-1)
#define EVH_SLACK_EXACT 0

/* Prepares timer storage with its callback. Any thread; not while it is armed (EVH_EBUSY).
 * EVH_EINVAL: NULL, misaligned storage, NULL fn. */
EVH_API int evh_timer_init(evh_timer* timer, evh_timer_fn fn, void* user);

/* Own turn of `self`, for every start and cancel. A timer belongs to the isolate that first
 * starts it, until evh_timer_init prepares it again: another isolate's start or cancel is
 * EVH_EBUSY. Starting an armed timer re-arms it.
 * Order (SEMANTICS 11-14): never before its deadline; due timers run in (deadline, start) order,
 * in one batch per wakeup, microtasks drained after each; cancelling one not yet run prevents
 * it, even from an earlier callback of the same batch. Errors: EVH_EINVAL (a negative delay, a
 * period <= 0 or > EVH_DURATION_MAX, a bad slack, an uninitialised timer), EVH_EDEAD. */
/* After `delay_ns` from this call, by the clock read here (0: in the next batch, without a
 * kernel timer). */
EVH_API int evh_timer_start(evh_isolate* self, evh_timer* timer, int64_t delay_ns,
                            int64_t slack_ns);
/* At the absolute `deadline_ns` (evh_now's clock), reading no clock: the form for many timers
 * sharing one reference. A deadline already past makes it due in the next batch. */
EVH_API int evh_timer_start_at(evh_isolate* self, evh_timer* timer, int64_t deadline_ns,
                               int64_t slack_ns);
/* Every `period_ns`, the first after one period, on a fixed schedule. */
EVH_API int evh_timer_start_periodic(evh_isolate* self, evh_timer* timer, int64_t period_ns,
                                     int64_t slack_ns);
/* At `first_ns` (absolute), then every `period_ns` after it. */
EVH_API int evh_timer_start_periodic_at(evh_isolate* self, evh_timer* timer, int64_t first_ns,
                                        int64_t period_ns, int64_t slack_ns);
/* Disarms it; a no-op (0) when not armed — twice, or after it fired. */
EVH_API int evh_timer_cancel(evh_isolate* self, evh_timer* timer);
/* 1 when armed, else 0. Any thread that may touch the timer. */
EVH_API int evh_timer_is_armed(const evh_timer* timer);
/* The deadline of its current (or last) arming, on evh_now's clock; inside a periodic timer's
 * callback, already the next run's. */
EVH_API int64_t evh_timer_deadline(const evh_timer* timer);
/* Own turn: evh_now() as read at most once per message or timer callback — the cheap
 * reference for evh_timer_start_at(self, t, evh_isolate_cached_now(self) + d, ...). 0 outside
 * the isolate's turn. */
EVH_API int64_t evh_isolate_cached_now(evh_isolate* self);

typedef struct evh_timer_stats {
  uint64_t live;
  uint64_t started;
  uint64_t fired;
  uint64_t cancelled;
  uint64_t batches;
  uint64_t largest_batch;
  uint64_t late_p50_ns;
  uint64_t late_p99_ns;
  uint64_t late_p999_ns;
  uint64_t late_max_ns;
} evh_timer_stats;
/* Every isolate's timers together: any thread. One isolate's: own turn. */
EVH_API int evh_runtime_timer_stats_size(evh_runtime* rt, evh_timer_stats* out, size_t out_size);
static inline int evh_runtime_timer_stats(evh_runtime* rt, evh_timer_stats* out) {
  return evh_runtime_timer_stats_size(rt, out, sizeof *out);
}
EVH_API int evh_isolate_timer_stats_size(evh_isolate* self, evh_timer_stats* out, size_t out_size);
static inline int evh_isolate_timer_stats(evh_isolate* self, evh_timer_stats* out) {
  return evh_isolate_timer_stats_size(self, out, sizeof *out);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_TIMER_H */
