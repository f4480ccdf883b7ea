/* evh/evh_isolate.h — the C API's isolates (evh_isolate): handlers, spawn, control, listeners,
 * interrupts, ports, microtasks, stats; their exits and errors as messages.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_ISOLATE_H
#define EVH_EVH_ISOLATE_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_ISOLATE_H */
