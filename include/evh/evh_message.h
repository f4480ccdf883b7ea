/* evh/evh_message.h — the C API's messages (evh_message): posting bytes, native objects, batches
 * and packed values to a port, and reading a message.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_MESSAGE_H
#define EVH_EVH_MESSAGE_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_MESSAGE_H */
