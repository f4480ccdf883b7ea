/* evh/evh.h — the C API: what a language runtime (Rust, Dart FFI, Lua, Python, a C program)
 * links to run isolates on evh.
 *
 * Plain C11, no C++ in it; it wraps the C++ API (the other headers under evh/) without a second
 * implementation, so everything those headers promise (the behaviours they number "SEMANTICS n")
 * holds here too. Link
 * libevh.so (`pkg-config --libs evh`, or `evh::evh` from `find_package(evh)`).
 *
 * THE CONTRACT, for every call below.
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
 * docs/ARCHITECTURE.md ("The C API") says how this layer is built and why. */
#ifndef EVH_EVH_H
#define EVH_EVH_H

#include <errno.h>
#include <evh/export.h>
#include <evh/version.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
/* Release functions must not throw; C++ callers declare theirs noexcept. */
#define EVH_NOEXCEPT noexcept
#define EVH_ALIGNAS(n) alignas(n)
extern "C" {
#else
#define EVH_NOEXCEPT
#define EVH_ALIGNAS(n) _Alignas(n)
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
 * EVH_EOPTIONS (see "options structs" above), the kernel's when a thread cannot start. */
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

/* ==== messages ============================================================================ */

/* A message's payload: nothing, bytes (copied in), or a native object with a finalizer. */
enum { EVH_MESSAGE_EMPTY = 0, EVH_MESSAGE_BYTES = 1, EVH_MESSAGE_NATIVE = 2 };

/* Post flags. OOB (out-of-band) messages overtake every normal message already queued and run
 * while the isolate is paused (SEMANTICS 2, 8). */
enum { EVH_POST_OOB = 1 };

/* Posts a copy of `size` bytes (`data` may be NULL when size is 0; at most 4 GiB - 1) to
 * `port`. Any thread; never blocks (SEMANTICS 4). Errors: EVH_EUNKNOWNPORT (no such port: also a
 * closed one, or one of another runtime), EVH_ESHUTTINGDOWN, EVH_EINVAL. */
EVH_API int evh_post(evh_runtime* rt, evh_port_id port, const void* data, size_t size,
                     unsigned flags);

/* Posts a native object: `finalizer` (may be NULL) runs exactly once unless the receiver takes
 * the object (evh_message_take_native). On any error it has run, on this thread, before this
 * returns. Otherwise it runs on the thread that drops the message: the receiving isolate's
 * after its handler returns, or whichever thread closes the port, kills the isolate or shuts the
 * runtime down (SEMANTICS 3). Any thread. Errors: as evh_post. */
EVH_API int evh_post_native(evh_runtime* rt, evh_port_id port, void* object,
                            evh_finalizer finalizer, unsigned flags);

/* Moves `message`'s payload into a new message to `port` (no copy: a handler can forward what it
 * received); `message` is left empty and stays its owner's. On error the payload is released as
 * by evh_post_native. Any thread that may touch `message`. */
EVH_API int evh_post_message(evh_runtime* rt, evh_port_id port, evh_message* message,
                             unsigned flags);

/* One message of a batch: `size` bytes at `data` (NULL when size is 0), copied in. Unlike the
 * options structs it has no `size` of its own and never gets a field: it is an array's element,
 * and an array's stride is its element's size, so a longer evh_bytes would make the library
 * misread every older caller's array, whatever the element said about itself. Its layout is
 * fixed, as struct iovec's is; anything more per message would come as a new call with an
 * element type of its own. */
typedef struct evh_bytes {
  const void* data;
  size_t size;
} evh_bytes;

/* Posts `count` messages, copies of `items[0..count)`, to `port` in order: as `count` calls of
 * evh_post, but with one look-up and the mailbox's space claimed once for as many as fit together
 * (SEMANTICS 1: FIFO behind this thread's earlier posts; never blocks). All are checked first: an
 * invalid item (EVH_EINVAL) posts none. Errors: as evh_post; a port closed while a batch is
 * posted drops what was queued, as it drops any message queued before a close. */
EVH_API int evh_post_batch(evh_runtime* rt, evh_port_id port, const evh_bytes* items, size_t count,
                           unsigned flags);

/* Posts `count` messages of `each` bytes (1..40) packed one after another at `data`: message i
 * is a copy of the `each` bytes at data + i * each. As `count` calls of evh_post (FIFO, never
 * blocks), but with one look-up, the mailbox's space claimed once for as many as fit together,
 * and no message object per value: the bytes go straight into the mailbox (evh's
 * SendPort::post_bytes_batch). Errors: as evh_post (EVH_EINVAL also for `each` out of range or
 * `data` NULL with count > 0, nothing posted); ENOMEM posts a prefix. */
EVH_API int evh_post_packed(evh_runtime* rt, evh_port_id port, const void* data, size_t each,
                            size_t count, unsigned flags);

/* Reading a message: in a handler, the message is evh's and valid until the handler returns;
 * one from a receiver is the caller's until evh_message_destroy. Any thread that may touch it.
 * A NULL message reads as empty. */
EVH_API int evh_message_kind(const evh_message* message);
/* The port it was posted to. */
EVH_API evh_port_id evh_message_port(const evh_message* message);
/* The bytes (NULL, size 0, for other kinds); valid while the message holds them. */
EVH_API const void* evh_message_data(const evh_message* message, size_t* size);
/* The native object, still owned by the message (NULL for other kinds). */
EVH_API void* evh_message_native(const evh_message* message);
/* Takes the native object out: the caller owns it, its finalizer will not run. */
EVH_API void* evh_message_take_native(evh_message* message);
/* Releases a message a receiver returned (and its payload). Only those: a handler's message is
 * evh's. NULL is a no-op. */
EVH_API void evh_message_destroy(evh_message* message);

/* ==== isolates ============================================================================ */

/* An isolate's message handler: runs on one thread at a time, one message at a time
 * (SEMANTICS 5). `self` and `message` are borrowed for the call; the handler may take the
 * message's native payload or forward it; whatever it leaves is released after it returns.
 * `user` is the spawn's. */
typedef void (*evh_message_fn)(evh_isolate* self, evh_message* message, void* user);

/* The batch form of a message handler (evh::BatchFn in evh/isolate.h): `count` messages (1..64)
 * at once, messages[0..count) in the order evh_message_fn would get them — normal messages to the
 * main port already in the mailbox, one after another, up to what the turn's budget has left;
 * others come one at a time. Every message is borrowed for the call as in evh_message_fn
 * (take or forward a payload; what is left is released, exactly once, after it returns, also
 * after an error it reports). Kills, pauses, pings and OOB messages take effect between batches
 * (inside one: evh_isolate_interrupt_requested / evh_isolate_handle_interrupts); microtasks run
 * after each. `user` is the spawn's. */
typedef void (*evh_batch_fn)(evh_isolate* self, evh_message* const* messages, size_t count,
                             void* user);

/* The packed form, beside the batch form (evh::PackedFn): `count` (1 or more, up to what the
 * turn's budget has left) inline byte messages to the main port, read in place in the mailbox —
 * message i's `each` bytes (1..40) at (const char*)data + i * stride (`each` rounded up to 8).
 * They are one record there: one message or the run of one packed or batched post. Borrowed,
 * read-only, for the call; nothing is left to release. Every other message comes through the
 * batch form, as may an inline one; a handler treats both alike. Ordering, budget, kills,
 * microtasks and errors as evh_batch_fn. `user` is the spawn's. */
typedef void (*evh_packed_fn)(evh_isolate* self, const void* data, size_t count, size_t each,
                              size_t stride, void* user);

/* Told when the isolate's mailbox reaches the depth set in evh_isolate_options. Runs on the
 * isolate's own turn (own-turn calls work), before the message that was taken when the depth was
 * seen; `depth` counts the normal messages queued then, that one included. Told again only after
 * the depth fell to half the mark or the mailbox emptied. Nothing is dropped or refused: a
 * mailbox has no limit. An error it reports (evh_isolate_report_error) is handled as a message
 * handler's. `user` is the spawn's. */
typedef void (*evh_mailbox_high_water_fn)(evh_isolate* self, uint64_t depth, void* user);

typedef struct evh_isolate_options {
  size_t size;          /* sizeof(evh_isolate_options): EVH_ISOLATE_OPTIONS_INIT sets it */
  evh_runner* runner;   /* NULL: the runtime's thread pool */
  uint32_t budget;      /* messages per turn before giving way; 0: the runtime's default */
  int errors_are_fatal; /* nonzero: an escaped error ends the isolate (EVH_EXIT_ERROR) */
  /* The depth at which on_mailbox_high_water is called; 0 (or no callback): never. */
  uint64_t mailbox_high_water;
  evh_mailbox_high_water_fn on_mailbox_high_water;
} evh_isolate_options;

/* The defaults: every field zero but the size. `evh_isolate_options o = EVH_ISOLATE_OPTIONS_INIT;`
 * or evh_isolate_options_init(&o). */
#define EVH_ISOLATE_OPTIONS_INIT \
  { sizeof(evh_isolate_options), NULL, 0, 0, 0, NULL }
static inline void evh_isolate_options_init(evh_isolate_options* options) {
  const evh_isolate_options defaults = EVH_ISOLATE_OPTIONS_INIT;
  *options = defaults;
}

/* Spawns an isolate with one open port, its main port. `user` is handed to every call of
 * `on_message`; `destroy_user` (may be NULL) releases it exactly once, when the isolate exits —
 * or before this returns, if it fails. `options` may be NULL. The caller gets a handle in *out
 * (one reference), to release with evh_isolate_release whenever it likes. Any thread. Errors:
 * EVH_EINVAL (NULL runtime or handler, a bad runner), EVH_EOPTIONS, EVH_EFOREIGN (a runner of
 * another runtime), EVH_ESHUTTINGDOWN, EVH_ENOMEM. */
EVH_API int evh_isolate_spawn(evh_runtime* rt, evh_message_fn on_message, void* user,
                              evh_finalizer destroy_user, const evh_isolate_options* options,
                              evh_isolate** out);

/* evh_isolate_spawn with the batch form of the handler (evh_batch_fn). Errors: as
 * evh_isolate_spawn. */
EVH_API int evh_isolate_spawn_batch(evh_runtime* rt, evh_batch_fn on_batch, void* user,
                                    evh_finalizer destroy_user, const evh_isolate_options* options,
                                    evh_isolate** out);

/* evh_isolate_spawn with the packed form of the handler beside the batch form (both needed).
 * Errors: as evh_isolate_spawn (EVH_EINVAL also when either is NULL). */
EVH_API int evh_isolate_spawn_packed(evh_runtime* rt, evh_batch_fn on_batch,
                                     evh_packed_fn on_packed, void* user,
                                     evh_finalizer destroy_user, const evh_isolate_options* options,
                                     evh_isolate** out);

/* Another reference to the same isolate / drops one. A handle keeps the isolate's record, not its
 * life: the isolate exits by the exit rule or a kill whatever handles exist, and calls on a
 * handle to an exited isolate fail with EVH_EDEAD. Any thread. */
EVH_API int evh_isolate_retain(evh_isolate* isolate);
EVH_API int evh_isolate_release(evh_isolate* isolate);

/* Its main port's id (its name, also after it exited); 0 for a bad handle. Any thread. */
EVH_API evh_port_id evh_isolate_main_port(const evh_isolate* isolate);
/* The spawn's `user`: valid until destroy_user has run. Any thread. */
EVH_API void* evh_isolate_user(const evh_isolate* isolate);
/* The runtime it belongs to. Any thread. */
EVH_API evh_runtime* evh_isolate_runtime(const evh_isolate* isolate);
/* 1 once it has exited (or is exiting), 0 before; EVH_EINVAL for a bad handle. Any thread. */
EVH_API int evh_isolate_is_dead(const evh_isolate* isolate);

/* When a control request (kill, ping) takes effect. IMMEDIATE: before the isolate's next
 * message or timer callback, and inside a long-running callback at its next
 * evh_isolate_handle_interrupts(). BEFORE_NEXT_EVENT: after the current message and its
 * microtasks, ahead of every normal message still queued. */
enum { EVH_IMMEDIATE = 0, EVH_BEFORE_NEXT_EVENT = 1 };

/* Kills the isolate (SEMANTICS 9): its ports close at once; when it stops, every queued payload
 * is released exactly once, its timers are cancelled, its fd registrations end (owned fds are
 * closed), tied children are killed, the locks it holds are released (owner died), its exit
 * listeners hear EVH_EXIT_KILLED and destroy_user runs. Idempotent; any thread, also from
 * inside the isolate. Errors: EVH_EINVAL (a bad handle or priority). */
EVH_API int evh_isolate_kill(evh_isolate* isolate, int priority);

/* Posts a copy of `data` to `reply` when the isolate gets to it (see the priorities); an idle
 * isolate answers at once. Any thread. Errors: EVH_EDEAD (nothing will be posted). */
EVH_API int evh_isolate_ping(evh_isolate* isolate, evh_port_id reply, const void* data, size_t size,
                             int priority);

/* Stops normal messages until resumed; OOB messages and control requests still run
 * (SEMANTICS 8). `capability` 0 asks for a fresh one; pausing again with a capability already
 * pausing it changes nothing. *out (may be NULL) receives the capability. Any thread. */
EVH_API int evh_isolate_pause(evh_isolate* isolate, uint64_t capability, uint64_t* out);
/* Releases the pause held by `capability`: EVH_EINVAL when it holds none. Any thread. */
EVH_API int evh_isolate_resume(evh_isolate* isolate, uint64_t capability);

/* Exit listeners are posted an exit message once (evh_message_isolate_exit), when the isolate
 * exits; added after the exit, at once; the same port twice, once. Error listeners are posted
 * an error message (evh_message_isolate_error) for every error that escapes a callback.
 * Removing one that is not there: EVH_EUNKNOWNPORT. Any thread. */
EVH_API int evh_isolate_add_exit_listener(evh_isolate* isolate, evh_port_id port);
EVH_API int evh_isolate_remove_exit_listener(evh_isolate* isolate, evh_port_id port);
EVH_API int evh_isolate_add_error_listener(evh_isolate* isolate, evh_port_id port);
EVH_API int evh_isolate_remove_error_listener(evh_isolate* isolate, evh_port_id port);
/* Whether an escaped error ends the isolate from now on. Any thread. */
EVH_API int evh_isolate_set_errors_fatal(evh_isolate* isolate, int fatal);

/* 1 when a long-running callback should reach a safe point and call
 * evh_isolate_handle_interrupts (an immediate kill or ping is pending), else 0. One atomic
 * load: cheap enough for a loop's back edge or an interpreter's hook. Any thread. */
EVH_API int evh_isolate_interrupt_requested(const evh_isolate* isolate);
/* Own turn: answers pending immediate pings, and lets work this thread queued behind the running
 * callback (a message it posted to another isolate of the pool) run on another thread; EVH_EDEAD
 * when the isolate has been killed — the callback should unwind now (what it does after is not
 * delivered anywhere). Cheap when there is nothing to do: a long-running callback may call it at
 * every safe point (an interpreter's hook), not only when evh_isolate_interrupt_requested. */
EVH_API int evh_isolate_handle_interrupts(evh_isolate* self);

/* Own turn: reports an error the way an exception escaping the callback would be reported once
 * the current callback returns: counted, `on_uncaught` told, error listeners posted `what`
 * (copied; NULL reads as "error"), and with errors_are_fatal the isolate exits with
 * EVH_EXIT_ERROR. Several reports in one callback: the last one counts. */
EVH_API int evh_isolate_report_error(evh_isolate* self, const char* what);

/* Own turn: opens another port of this isolate; its messages reach the same handler
 * (evh_message_port tells them apart). The isolate lives while it has an open port, a live
 * timer or a queued message (the exit rule). */
EVH_API int evh_isolate_open_port(evh_isolate* self, evh_port_id* out);
/* Closes one of the isolate's ports (the main one too); queued messages for it are released.
 * Any thread. EVH_EUNKNOWNPORT when the isolate has no open port with that id. */
EVH_API int evh_isolate_close_port(evh_isolate* isolate, evh_port_id port);

/* A microtask: runs after the current message (or microtask, or timer callback) and before
 * the next one, in scheduling order. */
typedef void (*evh_microtask_fn)(evh_isolate* self, void* arg);
/* Own turn. `drop` (may be NULL) releases `arg` if the microtask never runs (the isolate died
 * first) — and, if this fails, before it returns. */
EVH_API int evh_isolate_microtask(evh_isolate* self, evh_microtask_fn fn, void* arg,
                                  evh_finalizer drop);

typedef struct evh_isolate_stats {
  uint64_t handled;    /* messages delivered to the handler */
  uint64_t dropped;    /* messages released undelivered */
  uint64_t exceptions; /* errors that escaped its callbacks */
  uint64_t turns;
  uint64_t wakeups;
  uint64_t yields;
  uint64_t mailbox_depth; /* normal messages queued, not yet taken */
  uint64_t mailbox_peak;  /* the deepest the mailbox has been seen */
} evh_isolate_stats;
/* A snapshot. Any thread. */
EVH_API int evh_isolate_stats_get_size(const evh_isolate* isolate, evh_isolate_stats* out,
                                       size_t out_size);
static inline int evh_isolate_stats_get(const evh_isolate* isolate, evh_isolate_stats* out) {
  return evh_isolate_stats_get_size(isolate, out, sizeof *out);
}

/* ==== isolate exits and errors, as messages =============================================== */

enum { EVH_EXIT_NORMAL = 0, EVH_EXIT_KILLED = 1, EVH_EXIT_ERROR = 2 };

typedef struct evh_isolate_exit {
  evh_port_id isolate; /* the exited isolate's main port id */
  int reason;          /* EVH_EXIT_* */
} evh_isolate_exit;

/* Decodes an exit listener's message: 0, or EVH_EINVAL when it is not one. */
EVH_API int evh_message_isolate_exit_size(const evh_message* message, evh_isolate_exit* out,
                                          size_t out_size);
static inline int evh_message_isolate_exit(const evh_message* message, evh_isolate_exit* out) {
  return evh_message_isolate_exit_size(message, out, sizeof *out);
}
/* Decodes an error listener's message: the isolate into *isolate (may be NULL) and the error's
 * text into `what` (NUL-terminated, truncated to `capacity`; may be NULL with capacity 0).
 * Returns the text's full length (like snprintf), or EVH_EINVAL when it is not one. */
EVH_API int evh_message_isolate_error(const evh_message* message, evh_port_id* isolate, char* what,
                                      size_t capacity);

/* ==== receivers: a port a plain thread blocks on ========================================== */

/* Opens a port for a non-isolate thread (a bridge thread, a main() waiting for replies). The
 * caller owns *out. Any thread. */
EVH_API int evh_receiver_open(evh_runtime* rt, evh_receiver** out);
/* Its port id (0 for a bad handle). Any thread. */
EVH_API evh_port_id evh_receiver_port(const evh_receiver* receiver);
/* Waits up to `timeout_ns` (EVH_FOREVER: no limit) for the next message, OOB first; *out is the
 * caller's (evh_message_destroy). Errors: EVH_ETIMEDOUT, EVH_EPORTCLOSED (after
 * evh_receiver_close). One thread at a time per receiver, its owner: runtime shutdown does not
 * close it (nothing arrives after it), so a thread waiting without limit must be told by a
 * message before the runtime shuts down. */
EVH_API int evh_receiver_receive(evh_receiver* receiver, int64_t timeout_ns, evh_message** out);
/* The next message if one is queued, else EVH_ETIMEDOUT; never waits. */
EVH_API int evh_receiver_try_receive(evh_receiver* receiver, evh_message** out);
/* Closes the port: later posts fail, queued messages are released now. Idempotent. */
EVH_API int evh_receiver_close(evh_receiver* receiver);
/* Closes and frees it. */
EVH_API int evh_receiver_destroy(evh_receiver* receiver);

/* ==== runners: where an isolate runs ====================================================== */

/* A runner with a thread of its own (a "UI" or "platform" thread): isolates spawned with it
 * only ever run on that thread. The runtime owns it (it lives until evh_runtime_destroy); the
 * thread is joined at shutdown. Any thread. */
EVH_API int evh_runner_dedicated(evh_runtime* rt, const char* name, evh_runner** out);

/* An embedder's runner, e.g. a UI loop: evh hands it tasks, and it runs each posted task exactly
 * once on its own thread with evh_task_run — never one task on two threads at once. */
typedef struct evh_runner_callbacks {
  size_t size; /* sizeof(evh_runner_callbacks): EVH_RUNNER_CALLBACKS_INIT sets it */
  /* A task became runnable. Any thread, concurrently; must not block. Required. */
  void (*post)(evh_task* task, void* user) EVH_NOEXCEPT;
  /* A running task gave way with work left: a fair runner queues it behind fresh ones. May be
   * NULL (then `post` is used). */
  void (*post_yielded)(evh_task* task, void* user) EVH_NOEXCEPT;
  /* Asked between messages: nonzero when other tasks wait for this runner, so the running one
   * gives way early. Cheap and thread-safe. May be NULL (never). */
  int (*work_is_waiting)(void* user) EVH_NOEXCEPT;
  void* user;
} evh_runner_callbacks;

/* No callbacks yet (set `post`), the size set: an input struct like the options structs. */
#define EVH_RUNNER_CALLBACKS_INIT \
  { sizeof(evh_runner_callbacks), NULL, NULL, NULL, NULL }

/* The runtime owns the runner (until evh_runtime_destroy); `callbacks->user` must stay valid
 * that long, and posted tasks must be run until evh_runtime_shutdown returns. Any thread.
 * Errors: EVH_EINVAL (no `post`), EVH_EOPTIONS (`size`), EVH_ESHUTTINGDOWN. */
EVH_API int evh_runner_embedder(evh_runtime* rt, const evh_runner_callbacks* callbacks,
                                evh_runner** out);
/* Runs a posted task (one turn of an isolate). On the runner's thread. */
EVH_API void evh_task_run(evh_task* task);
/* An intrusive link the runner may use to queue a task it holds, from post until run, without
 * allocating. */
EVH_API evh_task* evh_task_next(const evh_task* task);
EVH_API void evh_task_set_next(evh_task* task, evh_task* next);

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

/* ==== file descriptors: readiness as messages ============================================= */

/* Readiness bits. EVH_ERROR and EVH_HANG_UP are always reported; EVH_READ_CLOSED (the peer shut
 * down its write side) only when asked for. */
enum { EVH_READABLE = 1, EVH_WRITABLE = 2, EVH_READ_CLOSED = 4, EVH_ERROR = 8, EVH_HANG_UP = 16 };

/* How readiness is reported (docs/EVENT_HANDLER.md). LEVEL: while it holds, once per
 * flow-control token (return them with evh_fd_return_tokens). EDGE: when it newly arises.
 * ONESHOT: once, then disarmed until evh_fd_modify. Every (re)arm reports a condition that
 * already holds: no edge is lost (SEMANTICS 17). */
enum { EVH_FD_LEVEL = 0, EVH_FD_EDGE = 1, EVH_FD_ONESHOT = 2 };

/* OWNED: the fd is handed to evh once the registration is accepted: it is closed however the
 * registration ends — evh_fd_close/remove, its port closing, its isolate exiting, shutdown.
 * SHARED_ACCEPT: a listening socket shared by several ports, accept readiness round-robin. */
enum { EVH_FD_OWNED = 1, EVH_FD_SHARED_ACCEPT = 2 };

typedef struct evh_fd_options {
  size_t size;              /* sizeof(evh_fd_options): EVH_FD_OPTIONS_INIT sets it */
  int mode;                 /* EVH_FD_LEVEL, EVH_FD_EDGE, EVH_FD_ONESHOT */
  uint32_t max_outstanding; /* notifications not yet returned; 0: the mode's default */
  unsigned flags;           /* EVH_FD_OWNED | EVH_FD_SHARED_ACCEPT */
} evh_fd_options;

/* The defaults (level, one token, the fd stays the caller's). */
#define EVH_FD_OPTIONS_INIT \
  { sizeof(evh_fd_options), EVH_FD_LEVEL, 0, 0 }
static inline void evh_fd_options_init(evh_fd_options* options) {
  const evh_fd_options defaults = EVH_FD_OPTIONS_INIT;
  *options = defaults;
}

/* Watches `fd` for `events`, reporting to `port` (an isolate's or a receiver's) as messages
 * carrying an evh_io_event. `options` may be NULL (level, one token). Any thread; never blocks
 * (SEMANTICS 20). Checked now: EVH_EINVAL, EVH_EOPTIONS, -EBADF (not an fd), -EPERM (an fd epoll
 * cannot watch: a regular file), EVH_EUNKNOWNPORT; on these errors the fd stays the caller's even
 * with EVH_FD_OWNED. Found later by the I/O thread (a duplicate registration, the kernel refusing):
 * posted to the port as an EVH_IO_ERROR event. The caller keeps owning the fd (unless OWNED) and
 * must not close it before the registration's final notice. */
EVH_API int evh_fd_add(evh_runtime* rt, int fd, evh_port_id port, uint32_t events,
                       const evh_fd_options* options);
/* The calls below name a registration by (fd, port), are for any thread, never block, and
 * report what only the I/O thread can find out (no such registration: ENOENT) to the port as an
 * EVH_IO_ERROR event. Replaces the interest of (fd, port) and re-arms it. */
EVH_API int evh_fd_modify(evh_runtime* rt, int fd, evh_port_id port, uint32_t events);
/* Stops watching; the fd stays open. Final notice: EVH_IO_UNREGISTERED. */
EVH_API int evh_fd_remove(evh_runtime* rt, int fd, evh_port_id port);
/* Stops watching and closes the fd on the I/O thread. Final notice: EVH_IO_CLOSED. */
EVH_API int evh_fd_close(evh_runtime* rt, int fd, evh_port_id port);
/* Returns `count` flow-control tokens of (fd, port). */
EVH_API int evh_fd_return_tokens(evh_runtime* rt, int fd, evh_port_id port, uint32_t count);
/* Accepts one connection from listening socket `listen_fd` registered by `port`: returns a
 * non-blocking, close-on-exec fd (>= 0, the caller's), or an error: EVH_EAGAIN when none is
 * pending; when out of fds, the registration backs off instead of spinning. Any thread. */
EVH_API int evh_fd_accept(evh_runtime* rt, int listen_fd, evh_port_id port);

/* Sets `port`'s one deadline (absolute, evh_now's clock), replacing an earlier one: when it has
 * passed, the port gets one EVH_IO_TIMEOUT event. Any thread. */
EVH_API int evh_port_set_timeout(evh_runtime* rt, evh_port_id port, int64_t deadline_ns);
EVH_API int evh_port_clear_timeout(evh_runtime* rt, evh_port_id port);

enum {
  EVH_IO_READY = 1,        /* `fd` is ready: `events` */
  EVH_IO_CLOSED = 2,       /* final: evh_fd_close done (or an owned fd's end), the fd is closed */
  EVH_IO_UNREGISTERED = 3, /* final: evh_fd_remove done (or shutdown); the fd is the caller's */
  EVH_IO_TIMEOUT = 4,      /* the port's deadline `deadline_ns` has passed */
  EVH_IO_ERROR = 5         /* a command on `fd` failed on the I/O thread: `error` is -errno */
};

typedef struct evh_io_event {
  int notice; /* EVH_IO_* */
  int fd;
  uint32_t events;     /* EVH_READABLE | ... */
  int error;           /* for EVH_IO_ERROR: a negative error code */
  int64_t deadline_ns; /* for EVH_IO_TIMEOUT */
} evh_io_event;

/* Decodes an event-handler message: 0, or EVH_EINVAL when it is not one. */
EVH_API int evh_message_io_event_size(const evh_message* message, evh_io_event* out,
                                      size_t out_size);
static inline int evh_message_io_event(const evh_message* message, evh_io_event* out) {
  return evh_message_io_event_size(message, out, sizeof *out);
}

/* ==== child processes ===================================================================== */

/* What a child's standard stream is connected to. PIPE: stdout/stderr arrive as messages, stdin
 * is written with evh_process_write_stdin. FD: `fd` (dup'ed into the child, stays the
 * caller's). */
enum { EVH_STDIO_PIPE = 0, EVH_STDIO_INHERIT = 1, EVH_STDIO_NULL = 2, EVH_STDIO_FD = 3 };

typedef struct evh_stdio {
  int mode; /* EVH_STDIO_* */
  int fd;   /* for EVH_STDIO_FD */
} evh_stdio;

/* KILL_ON_PARENT_DEATH: SIGKILL when this process dies, however it dies. NEW_GROUP: a process
 * group of its own (evh_process_kill_group). DETACHED: outlives us, never tied, no exit message,
 * no pipes. */
enum { EVH_PROCESS_KILL_ON_PARENT_DEATH = 1, EVH_PROCESS_NEW_GROUP = 2, EVH_PROCESS_DETACHED = 4 };

typedef struct evh_process_options {
  size_t size; /* sizeof(evh_process_options): EVH_PROCESS_OPTIONS_INIT sets it */
  /* The program and its arguments, NULL-terminated; argv[0] without a '/' is looked up in PATH.
   * No shell. */
  const char* const* argv;
  /* "NAME=value" strings, NULL-terminated; NULL: the parent's environment. */
  const char* const* env;
  const char* cwd;    /* NULL: the parent's */
  evh_stdio stdio[3]; /* stdin, stdout, stderr; all zero: three pipes */
  /* Where its events go (evh_message_process_event); 0 only when neither stdout nor stderr is a
   * pipe and nobody needs the exit. */
  evh_port_id events;
  uint64_t tag; /* copied into every event, to tell children apart on one port */
  unsigned flags;
  /* When not NULL: killed when this isolate exits (implies KILL_ON_PARENT_DEATH). */
  evh_isolate* tie_to;
  /* When not NULL and the spawn fails: what failed in words, e.g. "execve nope: No such file or
   * directory", NUL-terminated and truncated to error_capacity. */
  char* error;
  size_t error_capacity;
  /* ---- appended after evh 0.2.0's layout. A library that lacks them refuses a struct that sets
   * them (EVH_EOPTIONS); a struct from an older caller, which ends above, reads as both 0. So 0
   * is each one's default: a caller who leaves them alone works with either library. */
  /* Flow control of stdout and stderr, each on its own: at most this many bytes of a stream's
   * data messages posted and not yet destroyed by their receiver. With the window full evh stops
   * reading that pipe, the pipe fills and the child blocks in write() until the receiver destroys
   * a data message — so a fast child into a slow receiver holds at most the window plus one read
   * (up to the pipe's size) per stream. 0: the default, 4 MiB; EVH_STREAM_WINDOW_UNLIMITED: no
   * limit (evh reads as fast as the child writes). A receiver that keeps every data message
   * until the exit waits for ever once the child writes more than the window. Every value is
   * valid. (evh::SpawnOptions::stream_window, whose "no limit" is 0.) */
  size_t stream_window;
  /* How big a stdout or stderr pipe grows, in bytes, once the child fills it (it writes faster
   * than it is read): evh then asks the kernel for this size (F_SETPIPE_SZ, rounded up to a
   * power-of-two number of pages) and reads in chunks of up to the pipe's size. A child that
   * never fills its pipe keeps the kernel's size (64 KiB). 0: the default, 256 KiB;
   * EVH_PIPE_SIZE_KEEP: never grown; otherwise EVH_PIPE_SIZE_MIN..EVH_PIPE_SIZE_MAX, anything else
   * refused with EVH_EINVAL and said in `error`. Where the kernel refuses the size (above
   * /proc/sys/fs/pipe-max-size, or past the user's pipe pages, without CAP_SYS_RESOURCE) the
   * pipe keeps its size: slower, not wrong. (evh::SpawnOptions::output_pipe_size, whose "never"
   * is 0.) */
  size_t output_pipe_size;
} evh_process_options;

#define EVH_STREAM_WINDOW_UNLIMITED SIZE_MAX
#define EVH_PIPE_SIZE_KEEP SIZE_MAX
#define EVH_PIPE_SIZE_MIN ((size_t)4096)
#define EVH_PIPE_SIZE_MAX ((size_t)1 << 30)

/* The defaults: three pipes, the parent's environment and directory, no argv (set it). */
#define EVH_PROCESS_OPTIONS_INIT                                                                  \
  {                                                                                               \
    sizeof(evh_process_options), NULL, NULL, NULL, {{0, 0}, {0, 0}, {0, 0}}, 0, 0, 0, NULL, NULL, \
        0, 0, 0                                                                                   \
  }
static inline void evh_process_options_init(evh_process_options* options) {
  const evh_process_options defaults = EVH_PROCESS_OPTIONS_INIT;
  *options = defaults;
}

/* Starts a child (SEMANTICS 21-24). Its stdout and stderr chunks arrive in order, the exit comes
 * last, after both reached end of file. The caller owns *out (evh_process_release; releasing it
 * neither kills nor forgets the child). Any thread; blocks for the few hundred microseconds the
 * kernel takes to start it. Errors, with nothing left behind: EVH_EINVAL (an empty argv, a pipe
 * or tie asked of a detached child, an output_pipe_size out of range, ...), EVH_EOPTIONS,
 * EVH_EFOREIGN (tie_to of another runtime), EVH_EDEAD (tie_to has exited), the failed step's
 * -errno (-ENOENT, -EACCES from execve or chdir; no exit message follows), EVH_ESHUTTINGDOWN. */
EVH_API int evh_process_spawn(evh_runtime* rt, const evh_process_options* options,
                              evh_process** out);
/* Its pid (0 for a bad handle). Any thread. */
EVH_API int evh_process_pid(const evh_process* process);
/* Writes to its stdin pipe without blocking: returns how many bytes the pipe took now (possibly
 * fewer, possibly 0: a EVH_PROCESS_STDIN_READY event follows when there is room), or an error:
 * -EPIPE (the child closed it or exited), -EBADF (after evh_process_close_stdin), EVH_EINVAL
 * (stdin is not a pipe). Any thread. */
EVH_API int64_t evh_process_write_stdin(evh_process* process, const void* data, size_t size);
/* Closes its stdin pipe (the child reads end of file). Idempotent. Any thread. */
EVH_API int evh_process_close_stdin(evh_process* process);
/* Sends `signal` through the pidfd (never a recycled pid); -ESRCH once it has been reaped. */
EVH_API int evh_process_kill(evh_process* process, int signal);
/* To its process group (EVH_PROCESS_NEW_GROUP only, else EVH_EINVAL). */
EVH_API int evh_process_kill_group(evh_process* process, int signal);
/* Its exit code into *code once reaped (0..255, or -s for death by signal s); EVH_EAGAIN
 * before. */
EVH_API int evh_process_exit_code(const evh_process* process, int* code);
/* Drops the handle. Any thread. */
EVH_API int evh_process_release(evh_process* process);

enum {
  EVH_PROCESS_STDOUT = 1,     /* `data`/`size`: the next chunk of its stdout */
  EVH_PROCESS_STDERR = 2,     /* the next chunk of its stderr */
  EVH_PROCESS_EXIT = 3,       /* final: reaped; `exit_code` is its code, or -signal */
  EVH_PROCESS_STDIN_READY = 4 /* its stdin pipe has room again after a short write */
};

typedef struct evh_process_event {
  int kind; /* EVH_PROCESS_* */
  int pid;
  uint64_t tag;
  int exit_code;
  const void* data; /* borrowed from the message: valid while it holds its bytes */
  size_t size;
} evh_process_event;

/* Decodes a process message: 0, or EVH_EINVAL when it is not one. */
EVH_API int evh_message_process_event_size(const evh_message* message, evh_process_event* out,
                                           size_t out_size);
static inline int evh_message_process_event(const evh_message* message, evh_process_event* out) {
  return evh_message_process_event_size(message, out, sizeof *out);
}

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

#endif /* EVH_EVH_H */
