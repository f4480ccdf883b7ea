/* evh/evh.h — the C API: what a language runtime (Rust, Dart FFI, Lua, Python, a C program)
 * links to run isolates on evh.
 *
 * Plain C11, no C++ in it; it wraps the C++ API (evh/'s C++ headers) without a second
 * implementation, so everything those headers promise (the behaviours they number "SEMANTICS n")
 * holds here too. Link
 * libevh.so (`pkg-config --libs evh`, or `evh::evh` from `find_package(evh)`).
 *
 * THE CONTRACT, for every call of the C API (in the parts this header includes, below).
 *
 * Handles. Every object is an opaque handle (`evh_runtime*`, `evh_isolate*`, ...), except the
 * timer, which lives in the caller's memory so that arming it allocates nothing (`evh_timer`).
 * A handle is valid from the call that hands it out until the call that releases it (`_destroy`,
 * `_release`); using it after that is undefined, like `free()`. Between the two, a handle can be
 * *closed* (a runtime shut down, a receiver closed, an isolate killed, a signal watcher stopped):
 * then calls on it fail with an error code rather than misbehave.
 *
 * Errors. A call that can fail returns an `int`: 0 (EVH_OK) or a negative error code, never a
 * C++ exception (whatever evh's C++ code throws — an allocation failure, a thread that could not
 * start — is caught at the boundary and returned as a code). Kernel errors are the negated errno
 * (`-EBADF`, `-EMFILE`, ...), as in libuv; evh's own conditions have codes of their own below
 * -1000. `evh_strerror()` says any of them in words. Bad input is an error code, never a crash:
 * a NULL handle or pointer, a handle that is not one, a closed handle, a handle of another
 * runtime (EVH_EFOREIGN), a value out of range (EVH_EINVAL).
 *
 * Threads. A call marked "any thread" is thread-safe. A call marked "own turn" is for the
 * isolate `self` from inside one of its own callbacks (its message handler, a timer callback or
 * a microtask); from anywhere else it fails with EVH_EWRONGTHREAD (checked in every build). No
 * call blocks unless it says so (a receiver's or a mutex's wait, a process spawn, shutdown);
 * every wait has a form with a timeout.
 *
 * Ownership. Whoever is handed something releases it: the caller for what a call returns
 * through an `out` parameter, evh for what is passed to it. Data passed to a post is copied.
 * Ownership of a native payload (`evh_post_native`), an isolate's user data (`destroy_user`) or
 * a microtask's argument (`drop`) passes to evh *at the call, whatever the call returns*: when
 * the call fails, the release function has already run, on the calling thread, before it
 * returns; otherwise evh runs it exactly once later (or the receiver takes the object out).
 *
 * Callbacks. A message handler, timer callback or microtask may call any function here except
 * evh_runtime_shutdown/destroy. Written in C++, it may throw: the exception is caught where evh
 * catches a C++ handler's, counted, reported to `on_uncaught` and the isolate's error listeners,
 * and, with errors_are_fatal, ends the isolate; a C callback reports an error the same way with
 * `evh_isolate_report_error()`. Release functions (finalizers, destroy_user, drop) must not
 * throw, must not block, and may run on any thread.
 *
 * Time. Durations and times are int64_t nanoseconds; times are on CLOCK_MONOTONIC (`evh_now()`).
 * A negative duration is EVH_EINVAL. A timer delay too large to represent means "never"
 * (SEMANTICS 11); a wait's timeout of EVH_FOREVER (or anything above EVH_DURATION_MAX) means no
 * limit; every other duration above EVH_DURATION_MAX (about 146 years) is EVH_EINVAL.
 *
 * THE PARTS. This header is the one to include; it includes one part per handle kind, each of
 * which compiles on its own (C11 and C++) on top of evh_core.h:
 *   evh_core.h      the version, error codes, the options structs' rule, evh_now, handle types
 *   evh_runtime.h   evh_runtime: options, create, shutdown, destroy, stats
 *   evh_message.h   evh_message: posts (bytes, native, batch, packed) and reading a message
 *   evh_isolate.h   evh_isolate: handlers, spawn, control, listeners, microtasks, exit messages
 *   evh_receiver.h  evh_receiver: a port a plain thread blocks on
 *   evh_runner.h    evh_runner, evh_task: a dedicated thread or an embedder's loop
 *   evh_timer.h     evh_timer: timers in the caller's memory, timer stats
 *   evh_io.h        file descriptors and port timeouts, evh_io_event
 *   evh_process.h   evh_process: child processes, evh_process_event
 *   evh_signal.h    evh_signal_watcher, evh_signal_event
 *   evh_mutex.h     evh_mutex: the isolate mutex
 *
 * docs/ARCHITECTURE.md ("The C API") says how this layer is built and why. */
#ifndef EVH_EVH_H
#define EVH_EVH_H

#include <evh/evh_core.h>
#include <evh/evh_io.h>
#include <evh/evh_isolate.h>
#include <evh/evh_message.h>
#include <evh/evh_mutex.h>
#include <evh/evh_process.h>
#include <evh/evh_receiver.h>
#include <evh/evh_runner.h>
#include <evh/evh_runtime.h>
#include <evh/evh_signal.h>
#include <evh/evh_timer.h>

#endif /* EVH_EVH_H */
