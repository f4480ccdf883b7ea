// The C API's version, error codes and clock.
#include <evh/clock.h>
#include <evh/error.h>
#include <string.h>

#include "capi/handles.h"

namespace evh::capi {

int to_c(std::error_code ec) noexcept {
  if (!ec) return EVH_OK;
  if (ec.category() == evh::error_category()) {
    switch (static_cast<Errc>(ec.value())) {
      case Errc::ok:
        return EVH_OK;
      case Errc::port_closed:
        return EVH_EPORTCLOSED;
      case Errc::unknown_port:
        return EVH_EUNKNOWNPORT;
      case Errc::shutting_down:
        return EVH_ESHUTTINGDOWN;
      case Errc::invalid_argument:
        return EVH_EINVAL;
      case Errc::timed_out:
        return EVH_ETIMEDOUT;
      case Errc::isolate_dead:
        return EVH_EDEAD;
      case Errc::wrong_thread:
        return EVH_EWRONGTHREAD;
      case Errc::owner_died:
        return EVH_EOWNERDEAD;
      case Errc::not_recoverable:
        return EVH_ENOTRECOVERABLE;
      case Errc::not_owner:
        return EVH_EPERM;
      case Errc::would_deadlock:
        return EVH_EDEADLK;
      case Errc::busy:
        return EVH_EBUSY;
    }
    return EVH_EUNKNOWN;
  }
  if ((ec.category() == std::generic_category() || ec.category() == std::system_category()) &&
      ec.value() > 0) {
    return -ec.value();
  }
  return EVH_EUNKNOWN;
}

Turn& current_turn() noexcept {
  thread_local Turn turn;
  return turn;
}

namespace {
// What evh_isolate_report_error raises when the callback returns.
class ReportedError final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
}  // namespace

void TurnScope::raise_reported(evh_isolate* handle) {
  if (!handle->error_pending) return;
  handle->error_pending = false;
  throw ReportedError(std::move(handle->error));
}

}  // namespace evh::capi

using namespace evh::capi;

extern "C" {

unsigned evh_version(void) {
  return EVH_VERSION_HEX;
}

const char* evh_version_string(void) {
  return EVH_VERSION_STRING;
}

const char* evh_strerror(int error) {
  switch (error) {
    case EVH_OK:
      return "success";
    case EVH_EPORTCLOSED:
      return "port closed";
    case EVH_EUNKNOWNPORT:
      return "unknown port";
    case EVH_ESHUTTINGDOWN:
      return "runtime shutting down";
    case EVH_EDEAD:
      return "isolate dead";
    case EVH_EWRONGTHREAD:
      return "not on the isolate's own turn";
    case EVH_EFOREIGN:
      return "handle of another runtime";
    case EVH_EUNKNOWN:
      return "unexpected internal error";
    case EVH_EOPTIONS:
      return "options struct not initialised (size), or sets a field this evh does not know";
    default:
      break;
  }
  if (error < 0 && error > -4096) {
    // strerrordesc_np (glibc 2.32) returns a static string and is thread-safe, unlike strerror.
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    if (const char* s = strerrordesc_np(-error); s != nullptr) return s;
#else
    return strerror(-error);
#endif
  }
  return "unknown error";
}

int64_t evh_now(void) {
  return evh::MonotonicClock().now().count();
}

}  // extern "C"
