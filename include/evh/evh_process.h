/* evh/evh_process.h — the C API's child processes (evh_process): spawn, stdin, kill, exit, and
 * their events as messages.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_PROCESS_H
#define EVH_EVH_PROCESS_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_PROCESS_H */
