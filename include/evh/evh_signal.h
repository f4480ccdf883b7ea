/* evh/evh_signal.h — the C API's signal watchers (evh_signal_watcher): signals as messages.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_SIGNAL_H
#define EVH_EVH_SIGNAL_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== signals ============================================================================= */

/* Posts a signal event to `port` for every occurrence of `signal` (close ones may be coalesced:
 * `count` says how many), to every watcher. The previous disposition returns when the last
 * watcher stops. Refused with EVH_EINVAL: SIGKILL, SIGSTOP, fault signals (SIGSEGV, ...).
 * The caller owns *out. Any thread. */
EVH_API int evh_signal_watch(evh_runtime* rt, int signal, evh_port_id port,
                             evh_signal_watcher** out);
/* Stops it (idempotent): nothing is posted after this returns. Any thread. */
EVH_API int evh_signal_stop(evh_signal_watcher* watcher);
/* Stops and frees it. */
EVH_API int evh_signal_destroy(evh_signal_watcher* watcher);

typedef struct evh_signal_event {
  int signal;
  uint64_t count; /* occurrences since this watcher's previous event (>= 1) */
} evh_signal_event;

/* Decodes a signal message: 0, or EVH_EINVAL when it is not one. */
EVH_API int evh_message_signal_event_size(const evh_message* message, evh_signal_event* out,
                                          size_t out_size);
static inline int evh_message_signal_event(const evh_message* message, evh_signal_event* out) {
  return evh_message_signal_event_size(message, out, sizeof *out);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_SIGNAL_H */
