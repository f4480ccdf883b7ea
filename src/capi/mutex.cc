// The C API's isolate mutex.
#include <evh/isolate_mutex.h>

#include "capi/handles.h"

using namespace evh::capi;

extern "C" {

int evh_mutex_create(evh_mutex** out) {
  if (out == nullptr) return EVH_EINVAL;
  *out = new (std::nothrow) evh_mutex;
  return *out != nullptr ? EVH_OK : EVH_ENOMEM;
}

int evh_mutex_destroy(evh_mutex* mutex) {
  if (!valid(mutex)) return EVH_EINVAL;
  if (mutex->mutex.is_locked()) return EVH_EBUSY;
  mutex->magic = kFreed;
  delete mutex;
  return EVH_OK;
}

int evh_mutex_lock(evh_mutex* mutex, evh_isolate* self) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  if (!valid(mutex)) return EVH_EINVAL;
  return to_c(mutex->mutex.lock(*iso));
}

int evh_mutex_try_lock_for(evh_mutex* mutex, evh_isolate* self, int64_t timeout_ns) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  std::chrono::nanoseconds timeout{};
  if (!valid(mutex) || !wait_timeout(timeout_ns, timeout)) return EVH_EINVAL;
  if (timeout_ns >= EVH_DURATION_MAX) return to_c(mutex->mutex.lock(*iso));  // no limit
  return to_c(mutex->mutex.try_lock_for(*iso, timeout));
}

int evh_mutex_try_lock(evh_mutex* mutex, evh_isolate* self) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  if (!valid(mutex)) return EVH_EINVAL;
  return to_c(mutex->mutex.try_lock(*iso));
}

int evh_mutex_unlock(evh_mutex* mutex, evh_isolate* self) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  if (!valid(mutex)) return EVH_EINVAL;
  return to_c(mutex->mutex.unlock(*iso));
}

int evh_mutex_mark_consistent(evh_mutex* mutex, evh_isolate* self) {
  evh::Isolate* iso = nullptr;
  if (int e = check_own_turn(self, iso); e != EVH_OK) return e;
  if (!valid(mutex)) return EVH_EINVAL;
  return to_c(mutex->mutex.mark_consistent(*iso));
}

}  // extern "C"
