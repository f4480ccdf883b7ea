/* evh/evh_io.h — the C API's file descriptors and port timeouts: readiness as messages.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_IO_H
#define EVH_EVH_IO_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_IO_H */
