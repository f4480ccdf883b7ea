/* evh/evh_runner.h — the C API's runners (evh_runner, evh_task): where an isolate runs.
 *
 * A part of evh/evh.h, the header to include: it states the contract every call follows
 * (handles, errors, threads, ownership, callbacks, time) and includes every part. */
#ifndef EVH_EVH_RUNNER_H
#define EVH_EVH_RUNNER_H

#include <evh/evh_core.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EVH_EVH_RUNNER_H */
