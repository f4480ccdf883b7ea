/* evh/evh_core.h — the C API's base: its version, the error codes and the rule of the options
 * structs, the clock, and the handle types that every other part uses.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_CORE_H
#define EVH_EVH_CORE_H

#include <errno.h>
#include <evh/export.h>
#include <evh/version.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
/* Release functions must not throw; C++ callers declare theirs noexcept. */
#define EVH_NOEXCEPT noexcept
#define EVH_ALIGNAS(n) alignas(n)
#else
#define EVH_NOEXCEPT
#define EVH_ALIGNAS(n) _Alignas(n)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== versions and errors ================================================================= */

/* The linked library's version as EVH_VERSION_HEX (0xMMmmpp) and as "0.3.0". Any thread. */
EVH_API unsigned evh_version(void);
EVH_API const char* evh_version_string(void);

#define EVH_OK 0
/* Conditions that have an errno of the same meaning use it. */
#define EVH_EINVAL (-EINVAL)                   /* an argument out of range, NULL, not a handle */
#define EVH_ENOMEM (-ENOMEM)                   /* out of memory */
#define EVH_ETIMEDOUT (-ETIMEDOUT)             /* a timed wait ended first */
#define EVH_EAGAIN (-EAGAIN)                   /* nothing yet (no pending connection, ...) */
#define EVH_EBUSY (-EBUSY)                     /* in use: try_lock held elsewhere, ... */
#define EVH_EDEADLK (-EDEADLK)                 /* the isolate already holds this lock */
#define EVH_EOWNERDEAD (-EOWNERDEAD)           /* lock taken; its holder died: repair */
#define EVH_ENOTRECOVERABLE (-ENOTRECOVERABLE) /* lock unusable (not repaired) */
#define EVH_EPERM (-EPERM)                     /* not the lock's holder */
/* evh's own. */
#define EVH_EPORTCLOSED (-1001)   /* the port was closed (or the receiver) */
#define EVH_EUNKNOWNPORT (-1002)  /* no such port in this runtime (closed ones are forgotten) */
#define EVH_ESHUTTINGDOWN (-1003) /* the runtime is shutting down or has shut down */
#define EVH_EDEAD (-1006)         /* the isolate has exited (killed, errored or done) */
#define EVH_EWRONGTHREAD (-1007)  /* an own-turn call made outside the isolate's turn */
#define EVH_EFOREIGN (-1100)      /* a handle of another runtime */
#define EVH_EUNKNOWN (-1101)      /* an unexpected failure inside evh (a bug: please report) */
/* An options struct whose `size` is unset or too small, or that sets a field this library does
 * not know (the caller's evh.h is newer). */
#define EVH_EOPTIONS (-1102)

/* Every options struct (evh_runtime_options, evh_isolate_options, evh_fd_options,
 * evh_process_options, evh_runner_callbacks) starts with `size`: the struct's size as the caller's
 * evh.h declared it, set by its evh_*_options_init() or EVH_*_OPTIONS_INIT (both inline, so the
 * size is the caller's). A library newer than the caller's header reads only the fields the
 * caller's struct has and takes the defaults for the rest; an older one refuses a struct that sets
 * a field it does not know, with EVH_EOPTIONS, rather than ignoring it. A struct left at {0} (size
 * 0) is refused with EVH_EOPTIONS too. Fields are only ever appended, and an appended field's
 * default is 0, so that a caller who leaves it alone is taken by older libraries as well. The
 * structs evh writes (stats, decoded events) are filled through inline wrappers that pass the
 * caller's sizeof: evh writes exactly that many bytes, zeros in fields it does not know, and never
 * past the end of an older caller's struct. */

/* The code in words, e.g. "port closed" or strerror's text for -errno. Never NULL; the string
 * is static. Any thread. */
EVH_API const char* evh_strerror(int error);

/* ==== time ================================================================================ */

/* Nanoseconds on CLOCK_MONOTONIC, the clock every timer, deadline and timeout uses. Any
 * thread. */
EVH_API int64_t evh_now(void);

#define EVH_FOREVER INT64_MAX
#define EVH_DURATION_MAX (INT64_C(1) << 62)

/* ==== handles ============================================================================= */

typedef struct evh_runtime evh_runtime;
typedef struct evh_isolate evh_isolate;
typedef struct evh_message evh_message;
typedef struct evh_receiver evh_receiver;
typedef struct evh_runner evh_runner;
typedef struct evh_task evh_task;
typedef struct evh_process evh_process;
typedef struct evh_signal_watcher evh_signal_watcher;
typedef struct evh_mutex evh_mutex;

/* A port id: random, never 0, never reused within a runtime (SEMANTICS 1). 0 means "none". */
typedef uint64_t evh_port_id;

/* Releases a native payload, an isolate's user data or a microtask's argument: exactly once. */
typedef void (*evh_finalizer)(void* object) EVH_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_CORE_H */
