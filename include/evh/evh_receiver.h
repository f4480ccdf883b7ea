/* evh/evh_receiver.h — the C API's receivers (evh_receiver): a port a plain thread blocks on.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_RECEIVER_H
#define EVH_EVH_RECEIVER_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_RECEIVER_H */
