/* evh/evh_mutex.h — the C API's isolate mutex (evh_mutex): a lock that knows which isolate
 * holds it.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_MUTEX_H
#define EVH_EVH_MUTEX_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== the isolate mutex: a lock that knows which isolate holds it ========================= */

/* When its holder isolate exits — killed, errored, done, shut down — the lock is released as
 * part of the exit, and the next isolate to take it gets EVH_EOWNERDEAD *with the lock held*:
 * it repairs the state and calls evh_mutex_mark_consistent; unlocking without doing so makes
 * the lock EVH_ENOTRECOVERABLE for everyone (POSIX robust mutexes). Not recursive; not tied to
 * a runtime. A waiting isolate blocks its thread. */
EVH_API int evh_mutex_create(evh_mutex** out); /* any thread; the caller owns *out */
/* Any thread. EVH_EBUSY while it is held; must not be destroyed while an isolate waits for it. */
EVH_API int evh_mutex_destroy(evh_mutex* mutex);
/* Own turn of `self`. 0 (held), EVH_EOWNERDEAD (held: repair), EVH_ENOTRECOVERABLE,
 * EVH_EDEADLK (self holds it), EVH_EDEAD (self was killed while waiting: not held, unwind). */
EVH_API int evh_mutex_lock(evh_mutex* mutex, evh_isolate* self);
/* As lock, giving up after `timeout_ns` with EVH_ETIMEDOUT. */
EVH_API int evh_mutex_try_lock_for(evh_mutex* mutex, evh_isolate* self, int64_t timeout_ns);
/* Never waits: EVH_EBUSY when another isolate holds it. */
EVH_API int evh_mutex_try_lock(evh_mutex* mutex, evh_isolate* self);
/* EVH_EPERM when self does not hold it. */
EVH_API int evh_mutex_unlock(evh_mutex* mutex, evh_isolate* self);
/* After EVH_EOWNERDEAD: the state is repaired. EVH_EPERM (not held by self), EVH_EINVAL (no
 * owner death to clear). */
EVH_API int evh_mutex_mark_consistent(evh_mutex* mutex, evh_isolate* self);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_MUTEX_H */
